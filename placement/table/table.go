// Package table is the placement table: the versioned list of silos of a
// cluster and, per actor type, the ring that assigns the type's shards to the
// silos that host it. The placement service commits tables through Raft and
// disseminates them; every silo derives the same owners from the same table.
package table

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/granaryhq/granary/placement/ring"
)

// Member is one silo of the cluster, as placement knows it.
type Member struct {
	// ID names the silo; it is stable across restarts of one silo.
	ID string `json:"id"`
	// Incarnation is a random nonce per process: a restarted silo keeps its
	// ID but not its incarnation, so it never inherits its predecessor's claims.
	Incarnation string `json:"incarnation"`
	// InternalAddr is the silo↔silo gRPC address.
	InternalAddr string `json:"internalAddr"`
	// HTTPAddr is the gateway's address.
	HTTPAddr string `json:"httpAddr"`
	// Types are the actor types the silo hosts, sorted.
	Types []string `json:"types"`
	// AppIDs are the IDs of the apps registered with the silo, sorted.
	AppIDs []string `json:"appIds,omitempty"`
}

// Equal reports whether m and o describe the same process identically.
func (m Member) Equal(o Member) bool {
	return m.ID == o.ID && m.Incarnation == o.Incarnation && m.InternalAddr == o.InternalAddr &&
		m.HTTPAddr == o.HTTPAddr && slices.Equal(m.Types, o.Types) && slices.Equal(m.AppIDs, o.AppIDs)
}

// Normalize returns m with its lists sorted and deduplicated.
func (m Member) Normalize() Member {
	m.Types = sortedSet(m.Types)
	m.AppIDs = sortedSet(m.AppIDs)
	return m
}

// Validate checks the fields every member must have.
func (m Member) Validate() error {
	switch {
	case m.ID == "":
		return fmt.Errorf("member: empty ID")
	case strings.ContainsAny(m.ID, "/# \t\n"):
		return fmt.Errorf("member %q: ID contains '/', '#' or whitespace", m.ID)
	case m.Incarnation == "":
		return fmt.Errorf("member %q: empty incarnation", m.ID)
	case m.InternalAddr == "":
		return fmt.Errorf("member %q: empty internal address", m.ID)
	}
	for _, t := range m.Types {
		if t == "" || strings.Contains(t, "/") {
			return fmt.Errorf("member %q: bad actor type %q", m.ID, t)
		}
	}
	return nil
}

func sortedSet(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// Table is one version of the cluster's membership. A Table is immutable once
// made by New (its rings are built on first use) and safe for concurrent use.
type Table struct {
	ClusterID string
	Version   uint64
	// Members are sorted by ID; IDs are unique.
	Members []Member

	points int
	byID   map[string]int
	// hosts lists, per type, the IDs of the members hosting it. Rings are
	// built from it on first use: the placement leader, which only relays
	// tables, never pays for them.
	hosts map[string][]string
	rings sync.Map // type -> *lazyRing
}

type lazyRing struct {
	once sync.Once
	r    *ring.Ring
}

// New makes a table; points is the number of virtual points per silo
// (<= 0 means ring.DefaultPoints). Members are normalized and sorted; a
// duplicate ID is an error.
func New(clusterID string, version uint64, members []Member, points int) (*Table, error) {
	ms := make([]Member, len(members))
	for i, m := range members {
		ms[i] = m.Normalize()
	}
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	t := &Table{ClusterID: clusterID, Version: version, Members: ms, points: points,
		byID: make(map[string]int, len(ms)), hosts: map[string][]string{}}
	hosts := t.hosts
	for i, m := range ms {
		if _, dup := t.byID[m.ID]; dup {
			return nil, fmt.Errorf("table v%d: member %q listed twice", version, m.ID)
		}
		t.byID[m.ID] = i
		for _, typ := range m.Types {
			hosts[typ] = append(hosts[typ], m.ID)
		}
	}
	return t, nil
}

// Member returns the member with the given ID.
func (t *Table) Member(id string) (Member, bool) {
	if t == nil {
		return Member{}, false
	}
	i, ok := t.byID[id]
	if !ok {
		return Member{}, false
	}
	return t.Members[i], true
}

// Types returns every actor type some member hosts, sorted.
func (t *Table) Types() []string {
	if t == nil {
		return nil
	}
	out := make([]string, 0, len(t.hosts))
	for typ := range t.hosts {
		out = append(out, typ)
	}
	slices.Sort(out)
	return out
}

// Hosted reports whether some member hosts actorType.
func (t *Table) Hosted(actorType string) bool {
	if t == nil {
		return false
	}
	_, ok := t.hosts[actorType]
	return ok
}

// Ring is the ring of actorType; nil when no member hosts it.
func (t *Table) Ring(actorType string) *ring.Ring {
	if t == nil {
		return nil
	}
	ids, ok := t.hosts[actorType]
	if !ok {
		return nil
	}
	v, _ := t.rings.LoadOrStore(actorType, &lazyRing{})
	lr := v.(*lazyRing)
	lr.once.Do(func() { lr.r = ring.New(ids, t.points) })
	return lr.r
}

// ShardOwner is the member that owns shard s of actorType.
func (t *Table) ShardOwner(actorType string, s ring.Shard) (Member, bool) {
	id, ok := t.Ring(actorType).Owner(s)
	if !ok {
		return Member{}, false
	}
	return t.Member(id)
}

// Owner is the member that owns actor (actorType, actorID).
func (t *Table) Owner(actorType, actorID string) (Member, bool) {
	return t.ShardOwner(actorType, ring.ShardOf(actorType, actorID))
}

// Move is a shard whose owner differs between two tables. From or To is
// empty when no silo owned the shard on that side.
type Move struct {
	Type  string
	Shard ring.Shard
	// From and To are the owning processes, as member ID and incarnation.
	From, To Owner
}

// Owner names one process of one silo.
type Owner struct {
	ID, Incarnation string
}

func (o Owner) String() string {
	if o.ID == "" {
		return "nobody"
	}
	return o.ID + "/" + o.Incarnation
}

// Moves lists the shards whose owning process differs between old and new,
// by type then shard. A silo restarted under the same ID is a different
// process, so all of its shards move. old may be nil (nothing owned).
func Moves(old, new *Table) []Move {
	types := map[string]bool{}
	for _, typ := range old.Types() {
		types[typ] = true
	}
	for _, typ := range new.Types() {
		types[typ] = true
	}
	sorted := make([]string, 0, len(types))
	for typ := range types {
		sorted = append(sorted, typ)
	}
	slices.Sort(sorted)
	var moves []Move
	for _, typ := range sorted {
		for s := range ring.Shards {
			from := ownerOf(old, typ, ring.Shard(s))
			to := ownerOf(new, typ, ring.Shard(s))
			if from != to {
				moves = append(moves, Move{Type: typ, Shard: ring.Shard(s), From: from, To: to})
			}
		}
	}
	return moves
}

func ownerOf(t *Table, typ string, s ring.Shard) Owner {
	m, ok := t.ShardOwner(typ, s)
	if !ok {
		return Owner{}
	}
	return Owner{ID: m.ID, Incarnation: m.Incarnation}
}
