package check

import (
	"bytes"
	"testing"

	"github.com/granaryhq/granary/chaos/history"
)

// TestCheckersOnAWrittenHistory writes a small run as the harness would,
// reads it back and runs every checker on it.
func TestCheckersOnAWrittenHistory(t *testing.T) {
	var buf bytes.Buffer
	w := history.NewWriter(&buf)
	recs := []history.Record{
		write(0, "reg", 1, 10, 20, history.OK),
		read(1, "reg", i64(1), 30, 40),
		incr(2, "ctr", "r1", 10, 20, history.OK, i64(1)),
		incr(2, "ctr", "r2", 30, 40, history.Info, nil),
		history.Turn{Type: "Register", Actor: "reg", Activation: "3/silo-a/pa", Method: "write", Start: 12, End: 18, Committed: true, CommitAt: 15},
		history.Turn{Type: "Register", Actor: "reg", Activation: "3/silo-a/pa", Method: "read", Start: 32, End: 38},
		history.Lease{Silo: "silo-a", Incarnation: "pa", From: 0, Until: 100},
		history.StoreRecord{Type: "Register", Actor: "reg", Claim: "3/silo-a/pa", CommitAt: 15},
		history.Tick{Actor: "reg", Reminder: "r", At: 50},
		history.Fault{Kind: "partition", Target: "silo-a", Start: 60, End: 70},
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	run, err := history.Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	results := []Result{
		Register(run.Ops),
		Counters(run.Ops, map[string]int64{"ctr": 2}),
		Reminders(run.Ticks, map[ReminderKey]Spec{{"reg", "r"}: {First: 50}}, 100, Grace(0)),
		SingleActivation(run.Turns, run.Leases, run.Writes, unitSlack),
	}
	for _, res := range results {
		if !res.Valid {
			t.Errorf("%s", res)
		}
	}
	if results[0].Counts["ok"] != 2 || results[1].Counts["incr_info"] != 1 || results[2].Counts["fired"] != 1 || results[3].Counts["commits_checked"] != 1 {
		t.Fatalf("the checkers did not see the run: %v %v %v %v", results[0].Counts, results[1].Counts, results[2].Counts, results[3].Counts)
	}
}
