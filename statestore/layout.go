package statestore

import (
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Key layout. An actor T/I belongs to shard S of its type: the top 12 bits
// of xxhash64("T/I") (ShardOf), written as three lowercase hex digits "sss".
// Every key of one actor, and the fence record of its shard, carry the hash
// tag "{T/sss}", so on Redis Cluster they share a hash slot and a fenced
// transaction on one actor touches one slot. Actor types and IDs never
// contain "/", so the layout is unambiguous.
//
//	fence{T/sss}                       the fence record of shard sss of type T
//	actor{T/sss}/I/state/<key>         actor state
//	actor{T/sss}/I/reminder/<name>     a reminder record
//	actor{T/sss}/I/reminderdata/<name> the data of a reminder, when too large to keep in its record
//	reminders{T/sss}                   the index of the reminder records of shard sss (see IndexKeyPrefix)
//	placement{<cluster>}/version       a cluster's counter of claim versions (NextVersion)
//
// Keys written before shards carried fences (actor{T/I}/…) are not read.

// ShardCount is the number of shards of each actor type.
const ShardCount = 4096

// ReminderBuckets is the number of reminder index buckets per actor type:
// one per shard.
const ReminderBuckets = ShardCount

const shardShift = 64 - 12 // log2(ShardCount) == 12

// ActorHash is xxhash64 of "type/id", the point of an actor on the ring.
func ActorHash(actorType, actorID string) uint64 {
	d := xxhash.New()
	d.WriteString(actorType)
	d.WriteString("/")
	d.WriteString(actorID)
	return d.Sum64()
}

// ShardOf is the shard an actor belongs to: the top 12 bits of its ActorHash.
func ShardOf(actorType, actorID string) int {
	return int(ActorHash(actorType, actorID) >> shardShift)
}

// ReminderBucket is the index bucket of an actor's reminders: its shard.
func ReminderBucket(actorType, actorID string) int { return ShardOf(actorType, actorID) }

// shardHex is shard as three lowercase hex digits.
func shardHex(shard int) string {
	h := strconv.FormatUint(uint64(shard), 16)
	return "000"[:max(0, 3-len(h))] + h
}

// writeShardTag writes "{T/sss}".
func writeShardTag(b *strings.Builder, actorType string, shard int) {
	b.WriteByte('{')
	b.WriteString(actorType)
	b.WriteByte('/')
	b.WriteString(shardHex(shard))
	b.WriteByte('}')
}

// shardTagLen is len("{/sss}").
const shardTagLen = len("{/000}")

func shardKey(kind, actorType string, shard int) string {
	var b strings.Builder
	b.Grow(len(kind) + len(actorType) + shardTagLen)
	b.WriteString(kind)
	writeShardTag(&b, actorType, shard)
	return b.String()
}

// ShardFenceKey is the key of the fence record of one shard of an actor type.
func ShardFenceKey(actorType string, shard int) string { return shardKey("fence", actorType, shard) }

// ReminderIndex is the name of the scan index holding the reminders of one
// bucket (shard) of an actor type.
func ReminderIndex(actorType string, bucket int) string {
	return shardKey("reminders", actorType, bucket)
}

// IndexKeyPrefix returns the key prefix shared by the members of index, for
// the indexes whose members the layout keeps under one prefix: every record
// of ReminderIndex(T, s) is a ReminderKey of an actor of shard s of type T,
// so its key begins with "actor{T/sss}/". A store that keeps its keys in
// order can then find those members by walking the prefix, instead of
// writing an index entry beside each of them (on the embedded store that
// entry costs the commit more pages than the record itself). Other keys
// under the prefix (actor state, reminder data) are not members; such a
// store tells them apart by the index it records with every key. ok is
// false for any other index.
func IndexKeyPrefix(index string) (prefix string, ok bool) {
	tag, ok := reminderIndexTag(index)
	if !ok {
		return "", false
	}
	return "actor" + tag + "/", true
}

// UnderIndexPrefix reports whether key lies under IndexKeyPrefix(index),
// without allocating.
func UnderIndexPrefix(index, key string) bool {
	tag, ok := reminderIndexTag(index)
	if !ok {
		return false
	}
	rest, ok := strings.CutPrefix(key, "actor")
	return ok && len(rest) > len(tag) && rest[:len(tag)] == tag && rest[len(tag)] == '/'
}

// reminderIndexTag returns the "{T/sss}" of a ReminderIndex name.
func reminderIndexTag(index string) (string, bool) {
	tag, ok := strings.CutPrefix(index, "reminders")
	if !ok || len(tag) < len("{T/000}") || tag[0] != '{' || tag[len(tag)-1] != '}' {
		return "", false
	}
	typ, shard := tag[1:len(tag)-len("/000}")], tag[len(tag)-len("/000}"):]
	if typ == "" || strings.ContainsAny(typ, "/{}") || shard[0] != '/' {
		return "", false
	}
	for _, c := range shard[1:4] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return tag, true
}

// ClusterVersionKey is the key of a cluster's counter of claim versions.
func ClusterVersionKey(cluster string) string { return "placement{" + cluster + "}/version" }

func actorKey(actorType, actorID, kind, name string) string {
	var b strings.Builder
	b.Grow(len("actor") + shardTagLen + len(actorType) + len(actorID) + len(kind) + len(name) + 3)
	b.WriteString("actor")
	writeShardTag(&b, actorType, ShardOf(actorType, actorID))
	b.WriteByte('/')
	b.WriteString(actorID)
	b.WriteByte('/')
	b.WriteString(kind)
	b.WriteByte('/')
	b.WriteString(name)
	return b.String()
}

// ActorStateKey is the key of one state entry of an actor.
func ActorStateKey(actorType, actorID, key string) string {
	return actorKey(actorType, actorID, "state", key)
}

// ReminderKey is the key of one reminder record of an actor.
func ReminderKey(actorType, actorID, name string) string {
	return actorKey(actorType, actorID, "reminder", name)
}

// ReminderDataKey is the key that holds the data of a reminder apart from
// its record. It is never indexed, so index scans read only the records.
func ReminderDataKey(actorType, actorID, name string) string {
	return actorKey(actorType, actorID, "reminderdata", name)
}

// ParseReminderKey splits a key made by ReminderKey into its parts; ok is
// false for any other key, including one whose shard is not its actor's.
func ParseReminderKey(key string) (actorType, actorID, name string, ok bool) {
	rest, found := strings.CutPrefix(key, "actor{")
	if !found {
		return "", "", "", false
	}
	actorType, rest, found = strings.Cut(rest, "/")
	if !found || actorType == "" || len(rest) < len("sss}/") || rest[3:5] != "}/" {
		return "", "", "", false
	}
	shard, rest := rest[:3], rest[5:]
	actorID, rest, found = strings.Cut(rest, "/")
	if !found || actorID == "" {
		return "", "", "", false
	}
	name, found = strings.CutPrefix(rest, "reminder/")
	if !found || name == "" {
		return "", "", "", false
	}
	if shard != shardHex(ShardOf(actorType, actorID)) {
		return "", "", "", false
	}
	return actorType, actorID, name, true
}
