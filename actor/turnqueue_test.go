package actor

import (
	"strings"
	"testing"
)

// The turn queue's rules, step by step, without goroutines: each step is an
// event and the decision it must produce.
func TestTurnQueueDecisions(t *testing.T) {
	plain := &TypeConfig{MaxStackDepth: 2}
	reentrant := &TypeConfig{Reentrancy: true, MaxStackDepth: 2}
	var q turnQueue
	must := func(step string, got, want verdict) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: verdict %d, want %d", step, got, want)
		}
		if err := q.check(); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	v, _ := q.admit(active, "c1", plain, false)
	must("first call runs", v, runNow)
	v, w2 := q.admit(active, "", plain, false)
	must("second call waits", v, mustWait)
	v, w3 := q.admit(active, "c3", plain, false)
	must("third call waits", v, mustWait)
	v, _ = q.admit(active, "c1", plain, false)
	must("own chain without reentrancy", v, refusedDeadlock)
	v, _ = q.admit(active, "c9", plain, true)
	must("draining: a new chain", v, refusedClosed)
	if q.ahead(w3) != 1 || q.ahead(w2) != 0 {
		t.Fatalf("ahead: w2 %d, w3 %d", q.ahead(w2), q.ahead(w3))
	}
	if got := q.release(); got != w2 || !w2.granted || q.holder != "" || q.started != 2 {
		t.Fatalf("release handed the turn to %+v (holder %q, started %d), want the first waiter", got, q.holder, q.started)
	}
	must("after hand-over", runNow, runNow)
	if q.leave(w3) {
		t.Fatal("a waiter still queued reported granted")
	}
	must("after the third gave up", runNow, runNow)
	if got := q.release(); got != nil || q.running {
		t.Fatalf("last release woke %+v, running %v", got, q.running)
	}
	must("idle", runNow, runNow)

	// Reentrancy: the holder's chain enters one level deeper, up to the depth.
	v, _ = q.admit(active, "r", reentrant, false)
	must("reentrant type, first", v, runNow)
	v, _ = q.admit(active, "r", reentrant, false)
	must("nested", v, runNested)
	v, _ = q.admit(active, "r", reentrant, false)
	must("deeper than the bound", v, refusedDepth)
	v, _ = q.admit(deactivating, "r", reentrant, true)
	if v != refusedDepth {
		t.Fatalf("nested call at the bound while deactivating: %d", v)
	}
	q.release()
	v, _ = q.admit(deactivating, "r", reentrant, true)
	must("nested call while deactivating and draining", v, runNested)
	v, _ = q.admit(deactivating, "other", reentrant, false)
	must("other chain while deactivating", v, refusedGone)
	q.release()
	q.release()
	must("idle again", runNow, runNow)

	// Deactivation turns every waiter away.
	q.admit(active, "a", plain, false)
	_, wa := q.admit(active, "b", plain, false)
	_, wb := q.admit(active, "c", plain, false)
	var woken []*waiter
	q.turnAway(func(w *waiter) { woken = append(woken, w) })
	if len(woken) != 2 || woken[0] != wa || woken[1] != wb || !wa.turnedAway || q.waiters.len() != 0 {
		t.Fatalf("turned away %v", woken)
	}
	if q.leave(wa) {
		t.Fatal("a turned-away waiter reported granted")
	}
	must("after turning away", runNow, runNow)
	q.release()
	if q.pending != 0 || q.running {
		t.Fatalf("pending %d running %v at the end", q.pending, q.running)
	}
}

// A waiter that gives up just after the turn was handed to it holds the turn.
func TestTurnQueueLeaveAfterGrant(t *testing.T) {
	var q turnQueue
	cfg := &TypeConfig{MaxStackDepth: 1}
	q.admit(active, "", cfg, false)
	_, w := q.admit(active, "", cfg, false)
	q.release()
	if !q.leave(w) {
		t.Fatal("leave after the grant must report that the caller holds the turn")
	}
	q.release()
	if err := q.check(); err != nil || q.running {
		t.Fatalf("%v, running %v", err, q.running)
	}
}

func TestTurnQueueCheckCatchesBrokenBookkeeping(t *testing.T) {
	q := turnQueue{running: true, depth: 1, pending: 3}
	if err := q.check(); err == nil || !strings.Contains(err.Error(), "pending") {
		t.Fatalf("check = %v", err)
	}
}
