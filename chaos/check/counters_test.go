package check

import (
	"strings"
	"testing"

	"github.com/granaryhq/granary/chaos/history"
)

func incr(p int, key, req string, invoke, complete int64, outcome history.Outcome, result *int64) history.Op {
	o := op(p, history.KindIncr, key, invoke, complete, outcome)
	o.RequestID, o.Result = req, result
	return o
}

func get(p int, key string, result *int64, invoke, complete int64) history.Op {
	o := op(p, history.KindGet, key, invoke, complete, history.OK)
	o.Result = result
	return o
}

func TestCounters(t *testing.T) {
	base := []history.Op{
		incr(0, "c", "r1", 0, 10, history.OK, i64(1)),
		incr(1, "c", "r2", 5, 15, history.OK, i64(2)),
		incr(2, "c", "r3", 20, 30, history.Info, nil),
		incr(0, "c", "r4", 20, 30, history.Fail, nil),
		incr(1, "c", "r5", 40, 50, history.OK, i64(3)),
	}
	with := func(extra ...history.Op) []history.Op { return append(append([]history.Op{}, base...), extra...) }
	tests := []struct {
		name   string
		ops    []history.Op
		finals map[string]int64
		want   []string // the violations' What, in order; none for valid
	}{
		{name: "every acknowledged increment is there", ops: base, finals: map[string]int64{"c": 3}},
		{name: "the indeterminate one may be there too", ops: base, finals: map[string]int64{"c": 4}},
		{name: "lost write", ops: base, finals: map[string]int64{"c": 2}, want: []string{"lost increment"}},
		{name: "phantom increment", ops: base, finals: map[string]int64{"c": 5}, want: []string{"phantom increment"}},
		{name: "no final read", ops: base, finals: map[string]int64{}, want: []string{"no final read"}},
		{name: "final of a counter never incremented", finals: map[string]int64{"x": 1}, want: []string{"phantom increment"}},
		{
			name:   "a retried request counts once",
			ops:    with(incr(3, "c", "r1", 12, 18, history.OK, i64(1))),
			finals: map[string]int64{"c": 3},
		},
		{
			name:   "a retry applied twice",
			ops:    with(incr(3, "c", "r1", 12, 18, history.OK, i64(4))),
			finals: map[string]int64{"c": 5},
			want:   []string{"request applied twice", "phantom increment"},
		},
		{
			name:   "two requests returned one value",
			ops:    with(incr(3, "c", "r6", 60, 70, history.OK, i64(3))),
			finals: map[string]int64{"c": 4},
			want:   []string{"duplicate result"},
		},
		{
			name:   "a get sees what was acknowledged before it",
			ops:    with(get(4, "c", i64(2), 16, 19), get(4, "c", i64(3), 25, 35)),
			finals: map[string]int64{"c": 3},
		},
		{
			name:   "stale get",
			ops:    with(get(4, "c", i64(1), 16, 19)),
			finals: map[string]int64{"c": 3},
			want:   []string{"stale read"},
		},
		{
			name:   "get of increments not yet invoked",
			ops:    with(get(4, "c", i64(3), 16, 19)),
			finals: map[string]int64{"c": 3},
			want:   []string{"read ahead"},
		},
		{
			name: "increments without request IDs each count",
			ops: []history.Op{
				incr(0, "d", "", 0, 1, history.OK, nil),
				incr(0, "d", "", 2, 3, history.OK, nil),
			},
			finals: map[string]int64{"d": 1},
			want:   []string{"lost increment"},
		},
		{
			name: "amounts",
			ops: []history.Op{
				func() history.Op { o := incr(0, "e", "a", 0, 1, history.OK, nil); o.Value = 5; return o }(),
				func() history.Op { o := incr(0, "e", "b", 2, 3, history.Info, nil); o.Value = 3; return o }(),
			},
			finals: map[string]int64{"e": 8},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Counters(tt.ops, tt.finals)
			var got []string
			for _, v := range res.Violations {
				got = append(got, v.What)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("violations %q, want %q\n%s", got, tt.want, res)
			}
			if res.Valid != (len(tt.want) == 0) {
				t.Fatalf("Valid = %v with violations %q", res.Valid, got)
			}
		})
	}
}

func TestCountersCounts(t *testing.T) {
	ops := []history.Op{
		incr(0, "c", "r1", 0, 10, history.Info, nil),
		incr(0, "c", "r1", 11, 20, history.OK, i64(1)),
		incr(1, "c", "r2", 5, 15, history.Fail, nil),
		incr(1, "c", "r3", 5, 15, history.Info, nil),
	}
	res := Counters(ops, map[string]int64{"c": 0})
	want := map[string]int{"keys": 1, "requests": 3, "incr_ok": 1, "incr_info": 1, "incr_fail": 1, "retries": 1, "lost": 1}
	for k, v := range want {
		if res.Counts[k] != v {
			t.Errorf("Counts[%q] = %d, want %d (%v)", k, res.Counts[k], v, res.Counts)
		}
	}
}
