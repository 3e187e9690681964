package statestore

import (
	"strings"
	"testing"
)

func TestLayout(t *testing.T) {
	// Counter/a is in shard 0x9b8, the top 12 bits of xxhash64("Counter/a").
	// Pinned: stored keys depend on it.
	if got := ShardOf("Counter", "a"); got != 0x9b8 {
		t.Fatalf("ShardOf(Counter, a) = %#x, want 0x9b8", got)
	}
	tests := []struct{ got, want string }{
		{ActorStateKey("Counter", "a", "count"), "actor{Counter/9b8}/a/state/count"},
		{ActorStateKey("Counter", "a", ""), "actor{Counter/9b8}/a/state/"},
		{ReminderKey("Counter", "a", "tick"), "actor{Counter/9b8}/a/reminder/tick"},
		{ReminderDataKey("Counter", "a", "tick"), "actor{Counter/9b8}/a/reminderdata/tick"},
		{ReminderIndex("Counter", 0), "reminders{Counter/000}"},
		{ReminderIndex("Counter", 0xabc), "reminders{Counter/abc}"},
		{ReminderIndex("Counter", ReminderBuckets-1), "reminders{Counter/fff}"},
		{ShardFenceKey("Counter", 0), "fence{Counter/000}"},
		{ShardFenceKey("Counter", 0x9b8), "fence{Counter/9b8}"},
		{ShardFenceKey("Counter", ShardCount-1), "fence{Counter/fff}"},
		{ClusterVersionKey("dev/h-3500"), "placement{dev/h-3500}/version"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// hashTag is what Redis Cluster hashes of a key: the part between the first
// "{" and the next "}", when it is not empty.
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return key
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return key
	}
	return key[i+1 : i+1+j]
}

// Every key of an actor shares its hash slot with its shard's fence record
// and reminder index, whatever the actor's ID holds.
func TestActorKeysShareTheShardFenceSlot(t *testing.T) {
	for _, id := range []string{"a", "x}y", "{", "}", "{z}", "with space", "é"} {
		shard := ShardOf("T", id)
		want := hashTag(ShardFenceKey("T", shard))
		for _, k := range []string{
			ActorStateKey("T", id, "k{1}"), ReminderKey("T", id, "n}"), ReminderDataKey("T", id, "{n"),
			ReminderIndex("T", shard),
		} {
			if got := hashTag(k); got != want {
				t.Errorf("key %q hashes on %q, the fence %q on %q", k, got, ShardFenceKey("T", shard), want)
			}
		}
	}
}

func TestReminderBucketRangeAndStability(t *testing.T) {
	seen := map[int]bool{}
	for i := range 20000 {
		id := strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('0'+i%10)) + strings.Repeat("y", i%13)
		b := ReminderBucket("T", id)
		if b < 0 || b >= ReminderBuckets {
			t.Fatalf("bucket %d out of range", b)
		}
		if b != ReminderBucket("T", id) {
			t.Fatal("bucket is not deterministic")
		}
		seen[b] = true
	}
	if len(seen) < 100 {
		t.Fatalf("only %d distinct buckets for 20000 actors: the hash does not spread", len(seen))
	}
	// The hash is the ring's: xxhash64 of "type/id", top 12 bits; the bucket
	// is the shard.
	if got, want := ReminderBucket("Counter", "a"), int(ActorHash("Counter", "a")>>52); got != want {
		t.Fatalf("bucket %d, want %d", got, want)
	}
	if ReminderBucket("Counter", "a") != ShardOf("Counter", "a") {
		t.Fatal("the reminder bucket is not the shard")
	}
}

func TestTxnValidate(t *testing.T) {
	bad := []Txn{
		{Ops: []Op{{Kind: Put}}},
		{Ops: []Op{{Kind: 9, Key: "k"}}},
		{Ops: []Op{{Kind: Delete, Key: "k", Value: []byte("v")}}},
		{Ops: []Op{{Kind: Put, Key: "k", TTL: -1}}},
		{Ops: []Op{{Kind: Put, Key: "k", ETag: "1", IfAbsent: true}}},
		{Fence: &FenceCheck{}, Ops: []Op{{Kind: Put, Key: "k"}}},
		{Fence: &FenceCheck{Key: "f"}, Ops: []Op{{Kind: Put, Key: "k"}}},
		{Fence: &FenceCheck{Record: []byte("r")}, Ops: []Op{{Kind: Put, Key: "k"}}},
	}
	for i, txn := range bad {
		if err := txn.Validate(); err == nil {
			t.Errorf("case %d: invalid transaction accepted", i)
		}
	}
	good := Txn{Fence: &FenceCheck{Key: "f", Record: []byte("r")}, Ops: []Op{{Kind: Put, Key: "k", Value: []byte{}}, {Kind: Delete, Key: "k"}}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParseReminderKey(t *testing.T) {
	for _, c := range []struct{ typ, id, name string }{
		{"Counter", "a", "tick"},
		{"T}x", "i}d", "n}/"[:2]},
		{"é", "}", "with space"},
	} {
		typ, id, name, ok := ParseReminderKey(ReminderKey(c.typ, c.id, c.name))
		if !ok || typ != c.typ || id != c.id || name != c.name {
			t.Errorf("ParseReminderKey(ReminderKey(%q, %q, %q)) = %q, %q, %q, %v", c.typ, c.id, c.name, typ, id, name, ok)
		}
	}
	good := ReminderKey("T", "I", "n") // actor{T/sss}/I/reminder/n
	tag := good[len("actor{T/") : len("actor{T/")+3]
	other := "000"
	if tag == other {
		other = "001"
	}
	for _, bad := range []string{
		"", "actor{", ActorStateKey("T", "I", "k"), "actor{T/" + tag + "}/I/reminder/",
		"actor{/" + tag + "}/I/reminder/n", "actor{T/" + tag + "/I/reminder/n", "actor{T/" + tag + "}//reminder/n",
		"actor{T/" + other + "}/I/reminder/n", // the shard is not the actor's
		"actor{T/" + strings.ToUpper(tag) + "x}/I/reminder/n", "actor{T}/I/reminder/n", "actor{T/I}/reminder/n",
		ShardFenceKey("T", 1), "reminders{T/000}", ReminderDataKey("T", "I", "n"),
		"actor{T/" + tag + "}/I/reminderx/n", "actor{T/" + tag + "}/I",
	} {
		if _, _, _, ok := ParseReminderKey(bad); ok {
			t.Errorf("ParseReminderKey(%q) accepted", bad)
		}
	}
}

func FuzzParseReminderKey(f *testing.F) {
	f.Add("Counter", "a", "tick")
	f.Fuzz(func(t *testing.T, typ, id, name string) {
		if strings.Contains(typ, "/") || strings.Contains(id, "/") || typ == "" || id == "" || name == "" {
			return
		}
		gt, gi, gn, ok := ParseReminderKey(ReminderKey(typ, id, name))
		if !ok || gt != typ || gi != id || gn != name {
			t.Fatalf("round trip of %q %q %q gave %q %q %q %v", typ, id, name, gt, gi, gn, ok)
		}
	})
}

func TestIndexKeyPrefix(t *testing.T) {
	for _, id := range []string{"a", "b", "counter-17", "x y"} {
		shard := ShardOf("Counter", id)
		index := ReminderIndex("Counter", shard)
		prefix, ok := IndexKeyPrefix(index)
		if !ok {
			t.Fatalf("IndexKeyPrefix(%q) not ok", index)
		}
		for _, key := range []string{ReminderKey("Counter", id, "r1"), ActorStateKey("Counter", id, "k"), ReminderDataKey("Counter", id, "r1")} {
			if !strings.HasPrefix(key, prefix) || !UnderIndexPrefix(index, key) {
				t.Errorf("key %q is not under %q of index %q", key, prefix, index)
			}
		}
		// Another shard's keys, or another type's, are not under it.
		other := ReminderIndex("Counter", (shard+1)%ShardCount)
		if UnderIndexPrefix(other, ReminderKey("Counter", id, "r1")) {
			t.Errorf("key of shard %d is under the index of shard %d", shard, (shard+1)%ShardCount)
		}
		if UnderIndexPrefix(ReminderIndex("Count", shard), ReminderKey("Counter", id, "r1")) {
			t.Error("a Counter key is under the index of type Count")
		}
	}
	for _, tc := range []struct{ index, key string }{
		{"", "actor{T/000}/a/reminder/r"},
		{"reminders", "actor/a"},
		{"reminders{}", "actor{}/a"},
		{"reminders{/000}", "actor{/000}/a"},
		{"reminders{T/00}", "actor{T/00}/a"},
		{"reminders{T/0g0}", "actor{T/0g0}/a"},
		{"reminders{T/0000}", "actor{T/0000}/a"},
		{"reminders{a/b/000}", "actor{a/b/000}/x"},
		{"reminders{T/000}x", "actor{T/000}x/a"},
		{"orders", "actor{T/000}/a"},
		{"fence{T/000}", "actor{T/000}/a"},
	} {
		if p, ok := IndexKeyPrefix(tc.index); ok {
			t.Errorf("IndexKeyPrefix(%q) = %q; want none", tc.index, p)
		}
		if UnderIndexPrefix(tc.index, tc.key) {
			t.Errorf("UnderIndexPrefix(%q, %q) = true", tc.index, tc.key)
		}
	}
	// The key must continue past the tag with "/".
	index := ReminderIndex("T", 0)
	for _, key := range []string{"actor{T/000}", "actor{T/000}x", "actors{T/000}/a", "xactor{T/000}/a"} {
		if UnderIndexPrefix(index, key) {
			t.Errorf("UnderIndexPrefix(%q, %q) = true", index, key)
		}
	}
}
