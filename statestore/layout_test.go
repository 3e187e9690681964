package statestore

import (
	"strings"
	"testing"
)

func TestLayout(t *testing.T) {
	tests := []struct{ got, want string }{
		{FenceKey("Counter", "a"), "actor{Counter/a}/fence"},
		{ActorStateKey("Counter", "a", "count"), "actor{Counter/a}/state/count"},
		{ActorStateKey("Counter", "a", ""), "actor{Counter/a}/state/"},
		{ReminderKey("Counter", "a", "tick"), "actor{Counter/a}/reminder/tick"},
		{ReminderIndex("Counter", 0), "reminders{Counter/000}"},
		{ReminderIndex("Counter", 0xabc), "reminders{Counter/abc}"},
		{ReminderIndex("Counter", ReminderBuckets-1), "reminders{Counter/fff}"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
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
	// The hash is the ring's: xxhash64 of "type/id", top 12 bits.
	if got, want := ReminderBucket("Counter", "a"), int(ActorHash("Counter", "a")>>52); got != want {
		t.Fatalf("bucket %d, want %d", got, want)
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
	}
	for i, txn := range bad {
		if err := txn.Validate(); err == nil {
			t.Errorf("case %d: invalid transaction accepted", i)
		}
	}
	good := Txn{Fence: &FenceCheck{Key: "f", Token: 1}, Ops: []Op{{Kind: Put, Key: "k", Value: []byte{}}, {Kind: Delete, Key: "k"}}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
}
