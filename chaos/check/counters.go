package check

import (
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/granaryhq/granary/chaos/history"
)

// incrRequest is one logical increment: every attempt sent with one request
// ID, which the app applies at most once.
type incrRequest struct {
	id       string
	delta    int64
	outcome  history.Outcome // OK if any attempt was, else Info if any was, else Fail
	invoke   int64           // earliest invocation of an attempt that may have applied it
	acked    int64           // earliest completion of an OK attempt
	results  []int64         // what OK attempts returned
	mismatch bool            // attempts disagreed on the amount
}

// Counters checks the counter workload. Increments are grouped by request
// ID (an increment without one stands alone); a request is acknowledged
// when any attempt was OK, may have happened when one was Info, and did not
// happen when every attempt failed. finals holds each counter's value read
// at the end of the run, with every fault healed; counters start at 0.
//
// Rules, per key: the final value is at least the sum of the acknowledged
// increments (plus any negative indeterminate ones) and at most that sum
// plus the positive indeterminate ones; a request's OK attempts all returned
// the same value; with positive amounts, two requests never returned the
// same value; and an OK get during the run saw at least every increment
// acknowledged before it was invoked and at most every increment invoked
// before it completed.
//
// Counts: keys, requests, incr_ok, incr_info, incr_fail, retries,
// gets_checked, lost (increments missing from finals), phantom (increments
// in finals that no request accounts for).
func Counters(ops []history.Op, finals map[string]int64) Result {
	res := newResult("counters")
	requests := map[string]map[string]*incrRequest{} // key → request id → request
	gets := map[string][]history.Op{}
	for i, op := range ops {
		switch op.Kind {
		case history.KindIncr:
		case history.KindGet:
			if op.Outcome == history.OK {
				gets[op.Key] = append(gets[op.Key], op)
			}
			continue
		default:
			continue
		}
		if requests[op.Key] == nil {
			requests[op.Key] = map[string]*incrRequest{}
		}
		id := op.RequestID
		if id == "" {
			id = "#" + strconv.Itoa(i) // no request ID: an increment of its own
		}
		r := requests[op.Key][id]
		if r == nil {
			r = &incrRequest{id: op.RequestID, delta: op.Delta(), outcome: history.Fail, invoke: math.MaxInt64, acked: math.MaxInt64}
			requests[op.Key][id] = r
		} else {
			res.Counts["retries"]++
			if r.delta != op.Delta() {
				r.mismatch = true
			}
		}
		switch op.Outcome {
		case history.OK:
			r.outcome = history.OK
			r.invoke = min(r.invoke, op.Invoke)
			r.acked = min(r.acked, op.Complete)
			if op.Result != nil {
				r.results = append(r.results, *op.Result)
			}
		case history.Info:
			if r.outcome == history.Fail {
				r.outcome = history.Info
			}
			r.invoke = min(r.invoke, op.Invoke)
		}
	}

	keys := map[string]bool{}
	for k := range requests {
		keys[k] = true
	}
	for k := range finals {
		keys[k] = true
	}
	res.Counts["keys"] = len(keys)
	for _, key := range slices.Sorted(maps.Keys(keys)) {
		checkCounter(&res, key, requests[key], gets[key], finals)
	}
	return res
}

func checkCounter(res *Result, key string, reqs map[string]*incrRequest, gets []history.Op, finals map[string]int64) {
	var acked, lower, upper int64
	positive := true
	for _, id := range slices.Sorted(maps.Keys(reqs)) {
		r := reqs[id]
		res.Counts["requests"]++
		if r.delta <= 0 {
			positive = false
		}
		if r.mismatch {
			res.violate("request reused", key, r.invoke, "request %q was sent with different amounts", r.id)
		}
		switch r.outcome {
		case history.OK:
			res.Counts["incr_ok"]++
			acked += r.delta
		case history.Info:
			res.Counts["incr_info"]++
			lower += min(0, r.delta)
			upper += max(0, r.delta)
		default:
			res.Counts["incr_fail"]++
		}
		if len(r.results) > 1 && slices.Min(r.results) != slices.Max(r.results) {
			res.violate("request applied twice", key, r.acked, "request %q returned %v on its acknowledged attempts", r.id, r.results)
		}
	}
	lower += acked
	upper += acked

	if positive {
		returned := map[int64]string{}
		for _, id := range slices.Sorted(maps.Keys(reqs)) {
			r := reqs[id]
			if len(r.results) == 0 {
				continue
			}
			v := r.results[0]
			if other, dup := returned[v]; dup {
				res.violate("duplicate result", key, r.acked, "requests %q and %q both returned %d", other, r.id, v)
				continue
			}
			returned[v] = r.id
		}
	}

	final, ok := finals[key]
	switch {
	case !ok && (acked != 0 || upper != 0):
		res.violate("no final read", key, 0, "%d acknowledged, but no final value was read", acked)
	case ok && final < lower:
		res.Counts["lost"] += int(lower - final)
		res.violate("lost increment", key, 0, "final value %d, but %d was acknowledged (at least %d must be there)", final, acked, lower)
	case ok && final > upper:
		res.Counts["phantom"] += int(final - upper)
		res.violate("phantom increment", key, 0, "final value %d, but acknowledged and indeterminate increments add up to at most %d", final, upper)
	}

	if !positive {
		return
	}
	for _, g := range gets {
		var seen int64
		if g.Result != nil {
			seen = *g.Result
		}
		var before, possible int64
		for _, r := range reqs {
			if r.outcome == history.OK && r.acked < g.Invoke {
				before += r.delta
			}
			if r.outcome != history.Fail && r.invoke <= g.Complete {
				possible += r.delta
			}
		}
		res.Counts["gets_checked"]++
		switch {
		case seen < before:
			res.violate("stale read", key, g.Invoke, "get by process %d over [%d, %d] saw %d, but %d had been acknowledged before it began", g.Process, g.Invoke, g.Complete, seen, before)
		case seen > possible:
			res.violate("read ahead", key, g.Invoke, "get by process %d over [%d, %d] saw %d, but increments invoked before it ended add up to %d", g.Process, g.Invoke, g.Complete, seen, possible)
		}
	}
}
