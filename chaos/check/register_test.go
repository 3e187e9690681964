package check

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/chaos/history"
)

func i64(v int64) *int64 { return &v }

// op builds a register or counter operation.
func op(process int, kind history.Kind, key string, invoke, complete int64, outcome history.Outcome) history.Op {
	return history.Op{Process: process, Kind: kind, Key: key, Invoke: invoke, Complete: complete, Outcome: outcome}
}

func write(p int, key string, v, invoke, complete int64, outcome history.Outcome) history.Op {
	o := op(p, history.KindWrite, key, invoke, complete, outcome)
	o.Value = v
	return o
}

func read(p int, key string, result *int64, invoke, complete int64) history.Op {
	o := op(p, history.KindRead, key, invoke, complete, history.OK)
	o.Result = result
	return o
}

func cas(p int, key string, expect, v, invoke, complete int64, outcome history.Outcome) history.Op {
	o := op(p, history.KindCAS, key, invoke, complete, outcome)
	o.Expect, o.Value = expect, v
	return o
}

func TestRegisterHistories(t *testing.T) {
	tests := []struct {
		name      string
		ops       []history.Op
		valid     bool
		violation string // key of the violation when invalid
	}{
		{name: "empty", valid: true},
		{name: "read of an unwritten register", ops: []history.Op{read(0, "a", nil, 0, 1)}, valid: true},
		{
			name: "sequential",
			ops: []history.Op{
				write(0, "a", 1, 0, 10, history.OK),
				read(1, "a", i64(1), 20, 30),
				cas(0, "a", 1, 2, 40, 50, history.OK),
				read(1, "a", i64(2), 60, 70),
			},
			valid: true,
		},
		{
			name: "concurrent read may see either value",
			ops: []history.Op{
				write(0, "a", 1, 0, 10, history.OK),
				write(0, "a", 2, 20, 40, history.OK),
				read(1, "a", i64(1), 25, 30),
				read(2, "a", i64(2), 26, 35),
			},
			valid: true,
		},
		{
			name: "stale read",
			ops: []history.Op{
				write(0, "a", 1, 0, 10, history.OK),
				write(0, "a", 2, 20, 30, history.OK),
				read(1, "a", i64(1), 40, 50),
			},
			violation: "a",
		},
		{
			name: "lost write: read of the initial value after an acknowledged write",
			ops: []history.Op{
				write(0, "a", 1, 0, 10, history.OK),
				read(1, "a", nil, 20, 30),
			},
			violation: "a",
		},
		{
			name: "reads going back in time",
			ops: []history.Op{
				write(0, "a", 1, 0, 10, history.OK),
				write(0, "a", 2, 20, 100, history.OK),
				read(1, "a", i64(2), 30, 40),
				read(2, "a", i64(1), 50, 60),
			},
			violation: "a",
		},
		{
			name: "failed write did not happen",
			ops: []history.Op{
				write(0, "a", 1, 0, 10, history.OK),
				write(0, "a", 9, 20, 30, history.Fail),
				read(1, "a", i64(9), 40, 50),
			},
			violation: "a",
		},
		{
			name: "failed write is dropped",
			ops: []history.Op{
				write(0, "a", 1, 0, 10, history.OK),
				write(0, "a", 9, 20, 30, history.Fail),
				read(1, "a", i64(1), 40, 50),
			},
			valid: true,
		},
		{
			name: "indeterminate write may take effect late",
			ops: []history.Op{
				write(0, "a", 1, 0, 10, history.OK),
				write(1, "a", 9, 20, 30, history.Info),
				read(2, "a", i64(1), 40, 50),
				read(2, "a", i64(9), 60, 70),
			},
			valid: true,
		},
		{
			name: "indeterminate write may never happen",
			ops: []history.Op{
				write(0, "a", 1, 0, 10, history.OK),
				write(1, "a", 9, 20, 0, history.Info),
				read(2, "a", i64(1), 40, 50),
			},
			valid: true,
		},
		{
			name: "indeterminate write cannot take effect before it was invoked",
			ops: []history.Op{
				write(0, "a", 1, 0, 10, history.OK),
				read(2, "a", i64(9), 20, 30),
				write(1, "a", 9, 40, 50, history.Info),
			},
			violation: "a",
		},
		{
			name: "indeterminate compare-and-set whose expectation fails",
			ops: []history.Op{
				write(0, "a", 1, 0, 10, history.OK),
				cas(1, "a", 5, 6, 20, 30, history.Info),
				read(2, "a", i64(1), 40, 50),
			},
			valid: true,
		},
		{
			name: "acknowledged compare-and-set on the wrong value",
			ops: []history.Op{
				write(0, "a", 1, 0, 10, history.OK),
				cas(1, "a", 5, 6, 20, 30, history.OK),
			},
			violation: "a",
		},
		{
			name: "violation on one key only",
			ops: []history.Op{
				write(0, "a", 1, 0, 10, history.OK),
				write(0, "b", 1, 0, 10, history.OK),
				read(1, "a", i64(1), 20, 30),
				read(1, "b", i64(7), 20, 30),
			},
			violation: "b",
		},
		{
			name: "keys do not see each other's writes",
			ops: []history.Op{
				write(0, "a", 1, 0, 10, history.OK),
				read(1, "b", i64(1), 20, 30),
			},
			violation: "b",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Register(tt.ops)
			if res.Valid != tt.valid {
				t.Fatalf("Valid = %v, want %v\n%s", res.Valid, tt.valid, res)
			}
			if tt.valid {
				if len(res.Violations) != 0 || res.Counts["keys_illegal"] != 0 {
					t.Fatalf("valid history reported violations:\n%s", res)
				}
				return
			}
			if len(res.Violations) != 1 || res.Violations[0].Key != tt.violation || res.Violations[0].What != "not linearizable" {
				t.Fatalf("want one violation on key %q, got:\n%s", tt.violation, res)
			}
		})
	}
}

func TestRegisterCounts(t *testing.T) {
	ops := []history.Op{
		write(0, "a", 1, 0, 10, history.OK),
		write(0, "a", 2, 20, 30, history.Fail),
		write(1, "a", 3, 20, 30, history.Info),
		op(2, history.KindRead, "a", 40, 50, history.Info),
		op(2, history.KindIncr, "c", 40, 50, history.OK),
	}
	res := Register(ops)
	want := map[string]int{"keys": 1, "ok": 1, "fail_dropped": 1, "info": 1, "info_reads_dropped": 1, "ignored": 1}
	for k, v := range want {
		if res.Counts[k] != v {
			t.Errorf("Counts[%q] = %d, want %d (%v)", k, res.Counts[k], v, res.Counts)
		}
	}
}

func TestRegisterViolationNamesTheOperation(t *testing.T) {
	res := Register([]history.Op{
		write(0, "a", 1, 0, 10, history.OK),
		write(0, "a", 2, 20, 30, history.OK),
		read(7, "a", i64(1), 40, 50),
	})
	if len(res.Violations) != 1 {
		t.Fatalf("want one violation:\n%s", res)
	}
	v := res.Violations[0]
	if v.At != 40 || !strings.Contains(v.Detail, "read() → 1") || !strings.Contains(v.Detail, "process 7") {
		t.Fatalf("violation does not point at the stale read: %+v", v)
	}
}

// simulateRegister runs a linearizable register under concurrent
// processes: every operation takes effect at one instant inside its
// interval (an indeterminate one possibly later, or never), and results
// are what the register held at that instant.
func simulateRegister(rng *rand.Rand, keys, processes, perProcess int) []history.Op {
	type pending struct {
		op      history.Op
		at      int64 // when it takes effect; -1: never
		seq     int
		ignored bool
	}
	var all []*pending
	for p := range processes {
		now := int64(rng.IntN(50))
		for range perProcess {
			key := fmt.Sprintf("k%d", rng.IntN(keys))
			dur := 1 + int64(rng.IntN(100))
			o := history.Op{Process: p, Key: key, Invoke: now, Complete: now + dur, Outcome: history.OK}
			switch r := rng.IntN(10); {
			case r < 4:
				o.Kind = history.KindRead
			case r < 7:
				o.Kind, o.Value = history.KindWrite, int64(rng.IntN(5))
			default:
				o.Kind, o.Expect, o.Value = history.KindCAS, int64(rng.IntN(5)), int64(rng.IntN(5))
			}
			at := now + int64(rng.IntN(int(dur)+1))
			switch r := rng.IntN(20); {
			case r == 0: // failed before it did anything
				if o.Kind != history.KindCAS {
					o.Outcome, at = history.Fail, -1
				}
			case r <= 2: // indeterminate: maybe later, maybe never
				o.Outcome = history.Info
				if rng.IntN(3) == 0 {
					at = -1
				} else {
					at = now + int64(rng.IntN(3*int(dur)+1))
				}
				if rng.IntN(2) == 0 {
					o.Complete = 0
				}
			}
			all = append(all, &pending{op: o, at: at, seq: len(all)})
			now += dur + int64(rng.IntN(20))
		}
	}
	order := slices.Clone(all)
	slices.SortFunc(order, func(a, b *pending) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.seq, b.seq)) })
	state := map[string]*int64{}
	for _, p := range order {
		if p.at < 0 {
			continue
		}
		cur := state[p.op.Key]
		switch p.op.Kind {
		case history.KindRead:
			if p.op.Outcome == history.OK && cur != nil {
				p.op.Result = i64(*cur)
			}
		case history.KindWrite:
			state[p.op.Key] = i64(p.op.Value)
		case history.KindCAS:
			if cur != nil && *cur == p.op.Expect {
				state[p.op.Key] = i64(p.op.Value)
			} else if p.op.Outcome == history.OK {
				p.op.Outcome = history.Fail // the expectation did not hold: it did not happen
			}
		}
	}
	ops := make([]history.Op, len(all))
	for i, p := range all {
		ops[i] = p.op
	}
	rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	return ops
}

func TestRegisterRandomLinearizableHistoriesPass(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		ops := simulateRegister(rng, 3, 6, 60)
		res := Register(ops)
		if !res.Valid || res.Counts["keys_unknown"] != 0 {
			t.Fatalf("seed %d: a linearizable history was not found valid:\n%s", seed, res)
		}
		if res.Counts["info"] == 0 || res.Counts["fail_dropped"] == 0 {
			t.Fatalf("seed %d: the simulation made no indeterminate or failed operations: %v", seed, res.Counts)
		}
	}
}

func TestRegisterRandomHistoriesWithACorruptReadFail(t *testing.T) {
	caught := 0
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 2))
		ops := simulateRegister(rng, 3, 6, 60)
		var reads []int
		for i, o := range ops {
			if o.Kind == history.KindRead && o.Outcome == history.OK {
				reads = append(reads, i)
			}
		}
		i := reads[rng.IntN(len(reads))]
		ops[i].Result = i64(1000) // never written
		res := Register(ops)
		if res.Valid || len(res.Violations) != 1 || res.Violations[0].Key != ops[i].Key {
			t.Fatalf("seed %d: a read of a value never written went unnoticed:\n%s", seed, res)
		}
		caught++
	}
	if caught != 20 {
		t.Fatalf("caught %d of 20", caught)
	}
}

func TestRegisterTimeoutIsUnknownNotIllegal(t *testing.T) {
	// Many concurrent writes and a final read of a value none wrote: the
	// search must try every order of the writes before it can say illegal.
	var ops []history.Op
	for p := range 60 {
		ops = append(ops, write(p, "hard", int64(p), 0, 1000, history.OK))
		ops = append(ops, read(100+p, "hard", i64(int64(p)), 1, 999))
	}
	ops = append(ops, read(999, "hard", i64(-1), 2000, 2001))
	ops = append(ops, write(0, "easy", 1, 0, 1, history.OK))
	res := Register(ops, KeyTimeout(50*time.Millisecond))
	if res.Counts["keys_unknown"] != 1 || res.Counts["keys_illegal"] != 0 {
		t.Fatalf("want the hard key unknown and nothing illegal:\n%s", res)
	}
	if len(res.Notes) != 1 || res.Notes[0].Key != "hard" {
		t.Fatalf("want a note on the hard key:\n%s", res)
	}
	if !res.Valid {
		t.Fatalf("an unknown key made the result invalid:\n%s", res)
	}
}

func TestRegisterVisualize(t *testing.T) {
	ops := []history.Op{
		write(0, "a", 1, 0, 10, history.OK),
		write(0, "a", 2, 20, 30, history.OK),
		read(1, "a", i64(1), 40, 50),
	}
	path := filepath.Join(t.TempDir(), "a.html")
	if err := RegisterVisualize(ops, "a", path); err != nil {
		t.Fatalf("RegisterVisualize: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "<html") || !strings.Contains(string(b), "read() → 1") {
		t.Fatalf("visualization lacks the history (%d bytes)", len(b))
	}
	if err := RegisterVisualize(ops, "missing", path); err == nil {
		t.Fatal("RegisterVisualize of a key without operations succeeded")
	}
}
