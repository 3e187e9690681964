package statestore

import (
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Key layout. Every key of one actor starts with "actor{" + type + "/" + id + "}",
// so on Redis Cluster they share a hash slot (the braces are a hash tag) and a
// transaction on one actor touches one slot. Actor types and IDs never contain
// "/", so the layout is unambiguous.
//
//	actor{T/I}/fence            the activation fence of actor T/I
//	actor{T/I}/state/<key>      actor state
//	actor{T/I}/reminder/<name>  a reminder record
//	actor{T/I}/reminderdata/<name>  the data of a reminder, when too large to keep in its record
//
// Reminders are indexed per actor type in ReminderBuckets buckets chosen by the
// top bits of xxhash64("T/I"), the same hash the placement ring uses, so a silo
// that owns a range of the ring loads only the buckets that overlap it:
//
//	reminders{T/<bucket>}       the index of reminder keys in that bucket

// ReminderBuckets is the number of reminder index buckets per actor type.
const ReminderBuckets = 4096

const reminderBucketShift = 64 - 12 // log2(ReminderBuckets) == 12

func actorPrefix(b *strings.Builder, actorType, actorID string) {
	b.WriteString("actor{")
	b.WriteString(actorType)
	b.WriteByte('/')
	b.WriteString(actorID)
	b.WriteByte('}')
}

func actorKey(actorType, actorID, kind, name string) string {
	var b strings.Builder
	b.Grow(len("actor{/}") + len(actorType) + len(actorID) + len(kind) + len(name) + 2)
	actorPrefix(&b, actorType, actorID)
	b.WriteByte('/')
	b.WriteString(kind)
	if kind != "fence" {
		b.WriteByte('/')
		b.WriteString(name)
	}
	return b.String()
}

// FenceKey is the key of an actor's activation fence record.
func FenceKey(actorType, actorID string) string {
	return actorKey(actorType, actorID, "fence", "")
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

// ActorHash is xxhash64 of "type/id", the point of an actor on the ring.
func ActorHash(actorType, actorID string) uint64 {
	d := xxhash.New()
	d.WriteString(actorType)
	d.WriteString("/")
	d.WriteString(actorID)
	return d.Sum64()
}

// ReminderBucket is the index bucket of an actor's reminders.
func ReminderBucket(actorType, actorID string) int {
	return int(ActorHash(actorType, actorID) >> reminderBucketShift)
}

// ReminderIndex is the name of the scan index holding the reminders of one
// bucket of an actor type.
func ReminderIndex(actorType string, bucket int) string {
	var b strings.Builder
	b.Grow(len("reminders{/000}") + len(actorType))
	b.WriteString("reminders{")
	b.WriteString(actorType)
	b.WriteByte('/')
	h := strconv.FormatUint(uint64(bucket), 16)
	for range 3 - len(h) {
		b.WriteByte('0')
	}
	b.WriteString(h)
	b.WriteByte('}')
	return b.String()
}

// ParseReminderKey splits a key made by ReminderKey into its parts; ok is
// false for any other key.
func ParseReminderKey(key string) (actorType, actorID, name string, ok bool) {
	rest, found := strings.CutPrefix(key, "actor{")
	if !found {
		return "", "", "", false
	}
	actorType, rest, found = strings.Cut(rest, "/")
	if !found || actorType == "" {
		return "", "", "", false
	}
	// The ID cannot hold "/", so the next one ends "}" + ID.
	actorID, rest, found = strings.Cut(rest, "/")
	if !found || !strings.HasSuffix(actorID, "}") || len(actorID) < 2 {
		return "", "", "", false
	}
	actorID = actorID[:len(actorID)-1]
	name, found = strings.CutPrefix(rest, "reminder/")
	if !found || name == "" {
		return "", "", "", false
	}
	return actorType, actorID, name, true
}
