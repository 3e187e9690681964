package placement

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/granaryhq/granary/placement/table"
)

// FSM is the replicated placement state: the cluster ID, the table version
// and members, and each placement node's gRPC address. Raft calls Apply,
// Snapshot and Restore; Table, ClusterID and NodeAddr may be called from any
// goroutine at any time.
type FSM struct {
	logger *slog.Logger
	// onClusterID, when set, is called with the cluster ID each time Apply
	// or Restore leaves one set. It runs on Raft's FSM goroutine and must
	// not block on Raft.
	onClusterID func(id string)

	mu    sync.Mutex
	state fsmState
	// table is the state as an immutable table, rebuilt on each change.
	table atomic.Pointer[table.Table]
}

type fsmState struct {
	clusterID string
	version   uint64
	members   map[string]table.Member
	nodeAddrs map[string]string
}

// Result is what FSM.Apply returns for each command: the table after it,
// or why the command was refused (then nothing changed).
type Result struct {
	Table *table.Table
	Err   error
}

// NewFSM returns an empty FSM; logger may be nil.
func NewFSM(logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.Default()
	}
	f := &FSM{logger: logger}
	f.state = emptyState()
	f.publishLocked()
	return f
}

func emptyState() fsmState {
	return fsmState{members: map[string]table.Member{}, nodeAddrs: map[string]string{}}
}

// Table returns the current table. It is immutable; a change makes a new one.
func (f *FSM) Table() *table.Table { return f.table.Load() }

// ClusterID returns the cluster ID, "" until one is set.
func (f *FSM) ClusterID() string { return f.Table().ClusterID }

// NodeAddr returns the gRPC address recorded for the placement node with
// the given Raft server ID, "" when none is.
func (f *FSM) NodeAddr(raftID string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.nodeAddrs[raftID]
}

// Apply applies one committed log entry and returns a Result.
func (f *FSM) Apply(l *raft.Log) any {
	cmd, err := DecodeCommand(l.Data)
	if err != nil {
		// Every node fails alike on the same entry, so the state stays the
		// same everywhere; the entry is skipped.
		f.logger.Error("placement: skipping a log entry that cannot be decoded", "index", l.Index, "term", l.Term, "error", err)
		return Result{Err: err}
	}
	res, clusterID := f.execute(cmd)
	if res.Err != nil {
		f.logger.Debug("placement: command refused", "index", l.Index, "op", cmd.op(), "error", res.Err)
	}
	if clusterID != "" && f.onClusterID != nil {
		f.onClusterID(clusterID)
	}
	return res
}

// execute applies cmd and returns the result and, when the command was
// SetClusterID and succeeded, the cluster ID.
func (f *FSM) execute(cmd Command) (Result, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	changed := false
	clusterID := ""
	switch c := cmd.(type) {
	case SetClusterID:
		changed, err = f.setClusterIDLocked(c)
		if err == nil {
			clusterID = c.ID
		}
	case Batch:
		changed, err = f.applyBatchLocked(c)
	case JumpVersion:
		changed, err = f.jumpVersionLocked(c)
	case SetNodeAddr:
		changed, err = f.setNodeAddrLocked(c)
	default:
		err = fmt.Errorf("unknown command type %T", cmd)
	}
	if err != nil {
		return Result{Err: err}, ""
	}
	if changed {
		f.publishLocked()
	}
	return Result{Table: f.table.Load()}, clusterID
}

func (f *FSM) setClusterIDLocked(c SetClusterID) (bool, error) {
	if c.ID == "" {
		return false, errors.New("set cluster ID: empty ID")
	}
	switch f.state.clusterID {
	case "":
		f.state.clusterID = c.ID
		return true, nil
	case c.ID:
		return false, nil
	default:
		return false, fmt.Errorf("set cluster ID %q: this cluster's ID is already %q", c.ID, f.state.clusterID)
	}
}

// applyBatchLocked checks the whole batch before it changes anything, so a
// refused batch leaves the state as it was.
func (f *FSM) applyBatchLocked(b Batch) (bool, error) {
	joins := make([]table.Member, len(b.Joins))
	seen := make(map[string]bool, len(b.Joins))
	for i, m := range b.Joins {
		m = m.Normalize()
		if err := m.Validate(); err != nil {
			return false, fmt.Errorf("batch: join: %w", err)
		}
		if seen[m.ID] {
			return false, fmt.Errorf("batch: member %q joins twice", m.ID)
		}
		seen[m.ID] = true
		joins[i] = m
	}
	for _, r := range b.Removes {
		if r.ID == "" || r.Incarnation == "" {
			return false, fmt.Errorf("batch: remove of %q/%q needs both an ID and an incarnation", r.ID, r.Incarnation)
		}
	}
	changed := false
	for _, r := range b.Removes {
		if m, ok := f.state.members[r.ID]; ok && m.Incarnation == r.Incarnation {
			delete(f.state.members, r.ID)
			changed = true
		}
	}
	for _, m := range joins {
		if old, ok := f.state.members[m.ID]; ok && old.Equal(m) {
			continue
		}
		f.state.members[m.ID] = m
		changed = true
	}
	if changed {
		if f.state.version == math.MaxUint64 {
			return false, errors.New("batch: the table version cannot go higher")
		}
		f.state.version++
	}
	return changed, nil
}

func (f *FSM) jumpVersionLocked(c JumpVersion) (bool, error) {
	if c.Past == math.MaxUint64 {
		return false, errors.New("jump version: no version follows the largest one")
	}
	if f.state.version > c.Past {
		return false, nil
	}
	f.state.version = c.Past + 1
	return true, nil
}

func (f *FSM) setNodeAddrLocked(c SetNodeAddr) (bool, error) {
	if c.RaftID == "" || c.GRPCAddr == "" {
		return false, fmt.Errorf("set node address: needs both a Raft ID (%q) and a gRPC address (%q)", c.RaftID, c.GRPCAddr)
	}
	if f.state.nodeAddrs[c.RaftID] == c.GRPCAddr {
		return false, nil
	}
	f.state.nodeAddrs[c.RaftID] = c.GRPCAddr
	return true, nil
}

// publishLocked rebuilds the cached table from the state.
func (f *FSM) publishLocked() {
	members := slices.Collect(maps.Values(f.state.members))
	t, err := table.New(f.state.clusterID, f.state.version, members, 0)
	if err != nil {
		// Members are keyed by ID, so table.New has nothing to refuse.
		panic(fmt.Sprintf("placement: building the table: %v", err))
	}
	f.table.Store(t)
}

// snapshotVersion is the version of the snapshot encoding.
const snapshotVersion = 1

// snapshotData is the encoding of the whole state.
type snapshotData struct {
	V         int               `json:"v"`
	ClusterID string            `json:"clusterId"`
	Version   uint64            `json:"version"`
	Members   []table.Member    `json:"members"`
	NodeAddrs map[string]string `json:"nodeAddrs"`
}

// Snapshot captures the state for Raft to persist.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	members := slices.Collect(maps.Values(f.state.members))
	slices.SortFunc(members, func(a, b table.Member) int { return strings.Compare(a.ID, b.ID) })
	return &fsmSnapshot{data: snapshotData{
		V:         snapshotVersion,
		ClusterID: f.state.clusterID,
		Version:   f.state.version,
		Members:   members,
		NodeAddrs: maps.Clone(f.state.nodeAddrs),
	}}, nil
}

// Restore replaces the whole state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("restore placement snapshot: %w", err)
	}
	var snap snapshotData
	if err := decodeStrict(data, &snap); err != nil {
		return fmt.Errorf("restore placement snapshot: %w", err)
	}
	if snap.V != snapshotVersion {
		return fmt.Errorf("restore placement snapshot: version %d is not known (this node knows version %d)", snap.V, snapshotVersion)
	}
	st := emptyState()
	st.clusterID = snap.ClusterID
	st.version = snap.Version
	for _, m := range snap.Members {
		m = m.Normalize()
		if err := m.Validate(); err != nil {
			return fmt.Errorf("restore placement snapshot: %w", err)
		}
		if _, dup := st.members[m.ID]; dup {
			return fmt.Errorf("restore placement snapshot: member %q listed twice", m.ID)
		}
		st.members[m.ID] = m
	}
	maps.Copy(st.nodeAddrs, snap.NodeAddrs)

	f.mu.Lock()
	f.state = st
	f.publishLocked()
	f.mu.Unlock()
	if st.clusterID != "" && f.onClusterID != nil {
		f.onClusterID(st.clusterID)
	}
	return nil
}

type fsmSnapshot struct {
	data snapshotData
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.data); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist placement snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
