// Package ring is Granary's consistent-hash ring: it assigns the 4096 shards of
// an actor type to the silos that host the type, the same way on every silo
// and in every run.
//
// Each member is placed at Points virtual points, at xxhash64("<member>#<i>")
// for i in [0, Points). An actor belongs to the shard given by the top
// ShardBits bits of xxhash64("<type>/<id>"); a shard's position is the first
// hash of its range, and its owner is the member of the first point at or
// after that position, wrapping around.
package ring

import (
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// ShardBits is the number of top hash bits that name a shard.
const ShardBits = 12

// Shards is the number of shards per actor type.
const Shards = 1 << ShardBits

// DefaultPoints is the number of virtual points per member when New is
// given none.
const DefaultPoints = 128

const shardShift = 64 - ShardBits

// Shard is one of the Shards slices of an actor type's hash space.
type Shard uint16

// ShardOf is the shard of actor (actorType, actorID).
func ShardOf(actorType, actorID string) Shard {
	d := xxhash.New()
	d.WriteString(actorType)
	d.WriteString("/")
	d.WriteString(actorID)
	return ShardOfHash(d.Sum64())
}

// ShardOfHash is the shard of a point of the hash space.
func ShardOfHash(h uint64) Shard { return Shard(h >> shardShift) }

// Position is the first hash of the shard's range, the point whose successor
// on the ring owns it.
func (s Shard) Position() uint64 { return uint64(s) << shardShift }

// Ring is an immutable assignment of shards to members. The zero Ring, and a
// Ring made from no members, owns nothing.
type Ring struct {
	members []string
	// owner[s] indexes members; it is computed once in New so that a lookup
	// is one array read.
	owner []int32
}

type point struct {
	hash   uint64
	member int32
}

// New builds the ring of members with points virtual points each (points <= 0
// means DefaultPoints). The order of members does not matter and duplicates
// count once.
func New(members []string, points int) *Ring {
	if points <= 0 {
		points = DefaultPoints
	}
	ms := slices.Clone(members)
	slices.Sort(ms)
	ms = slices.Compact(ms)
	r := &Ring{members: ms}
	if len(ms) == 0 {
		return r
	}
	pts := make([]point, 0, len(ms)*points)
	buf := make([]byte, 0, 64)
	for mi, m := range ms {
		for i := range points {
			buf = append(buf[:0], m...)
			buf = append(buf, '#')
			buf = strconv.AppendInt(buf, int64(i), 10)
			pts = append(pts, point{hash: xxhash.Sum64(buf), member: int32(mi)})
		}
	}
	// Ties (two points at one hash) go to the member that sorts first, so the
	// answer does not depend on the order points were made in.
	slices.SortFunc(pts, func(a, b point) int {
		if a.hash != b.hash {
			if a.hash < b.hash {
				return -1
			}
			return 1
		}
		return int(a.member - b.member)
	})
	r.owner = make([]int32, Shards)
	p := 0
	for s := range Shards {
		pos := Shard(s).Position()
		for p < len(pts) && pts[p].hash < pos {
			p++
		}
		if p == len(pts) {
			r.owner[s] = pts[0].member // wrap around
		} else {
			r.owner[s] = pts[p].member
		}
	}
	return r
}

// Owner is the member that owns shard s; ok is false when the ring is empty.
func (r *Ring) Owner(s Shard) (member string, ok bool) {
	if r == nil || len(r.owner) == 0 {
		return "", false
	}
	return r.members[r.owner[s&(Shards-1)]], true
}

// OwnerOf is the member that owns the shard of actor (actorType, actorID).
func (r *Ring) OwnerOf(actorType, actorID string) (member string, ok bool) {
	return r.Owner(ShardOf(actorType, actorID))
}

// Members returns the ring's members, sorted. The caller must not modify it.
func (r *Ring) Members() []string {
	if r == nil {
		return nil
	}
	return r.members
}

// Len is the number of members.
func (r *Ring) Len() int { return len(r.Members()) }
