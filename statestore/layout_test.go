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
		{ReminderDataKey("Counter", "a", "tick"), "actor{Counter/a}/reminderdata/tick"},
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
	for _, bad := range []string{
		"", "actor{", "actor{T/I}/state/k", "actor{T/I}/reminder/", "actor{/I}/reminder/n",
		"actor{T/I/reminder/n", "actor{T/}/reminder/n", FenceKey("T", "I"), "reminders{T/000}",
		ReminderDataKey("T", "I", "n"),
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
