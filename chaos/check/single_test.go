package check

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/chaos/history"
)

const (
	claimA3 = "3/silo-a/pa" // silo A's claim at table version 3
	claimB5 = "5/silo-b/pb" // silo B's claim at version 5, after A lost the shard
	claimC5 = "5/silo-c/pc" // a second claim at version 5: never legitimate
)

func turn(actor, activation string, start, end int64) history.Turn {
	return history.Turn{Type: "Register", Actor: actor, Activation: activation, Method: "write", Start: start, End: end}
}

func committed(t history.Turn, at int64) history.Turn {
	t.Committed, t.CommitAt = true, at
	return t
}

func store(actor, claim string, at int64) history.StoreRecord {
	return history.StoreRecord{Type: "Register", Actor: actor, Key: "Register||" + actor + "||value", Claim: claim, CommitAt: at}
}

// Times in milliseconds: A holds the shard and a lease until 1000; B holds
// a lease from 900 and the shard from 1200.
var (
	handoverLeases = []history.Lease{
		{Silo: "silo-a", Incarnation: "pa", From: 0, Until: 600},
		{Silo: "silo-a", Incarnation: "pa", From: 500, Until: 1000},
		{Silo: "silo-b", Incarnation: "pb", From: 900, Until: 5000},
		{Silo: "silo-c", Incarnation: "pc", From: 0, Until: 5000},
	}
	handoverTurns = []history.Turn{
		committed(turn("x", claimA3, 100, 200), 150),
		committed(turn("x", claimA3, 300, 400), 350),
		committed(turn("x", claimB5, 1200, 1300), 1250),
		committed(turn("x", claimB5, 1400, 1500), 1450),
	}
	handoverWrites = []history.StoreRecord{
		store("x", claimA3, 150),
		store("x", claimA3, 350),
		store("x", claimB5, 1250),
		store("x", claimB5, 1450),
	}
)

// unitSlack is the admission slack for the tests' times, which are in
// plain units rather than nanoseconds.
var unitSlack = AdmitSlack(20 * time.Nanosecond)

func with[T any](base []T, extra ...T) []T { return append(append([]T{}, base...), extra...) }

func TestSingleActivation(t *testing.T) {
	tests := []struct {
		name   string
		turns  []history.Turn
		leases []history.Lease
		writes []history.StoreRecord
		want   []string // violations' What
		counts map[string]int
		notes  int
	}{
		{
			name:  "clean hand-over",
			turns: handoverTurns, leases: handoverLeases, writes: handoverWrites,
			counts: map[string]int{"turns": 4, "claims": 2, "commits_checked": 4, "writes_without_turn": 0, "in_flight_at_lease_loss": 0},
		},
		{
			name:  "a turn in flight when A lost the lease, committing nothing",
			turns: with(handoverTurns, turn("x", claimA3, 950, 1350)), leases: handoverLeases, writes: handoverWrites,
			counts: map[string]int{"in_flight_at_lease_loss": 1, "overlapping_turns": 0},
			notes:  1,
		},
		{
			name:   "a deactivation overlapping the new owner",
			turns:  with(handoverTurns, history.Turn{Type: "Register", Actor: "x", Activation: claimA3, Method: history.MethodDeactivate, Start: 1150, End: 1250}),
			leases: handoverLeases, writes: handoverWrites,
			counts: map[string]int{"in_flight_at_lease_loss": 1},
			notes:  1,
		},
		{
			name:  "the in-flight turn committed after the new claim",
			turns: with(handoverTurns, committed(turn("x", claimA3, 950, 1350), 1300)), leases: handoverLeases,
			writes: with(handoverWrites, store("x", claimA3, 1300)),
			want:   []string{"stale-claim commit", "stale-claim write committed", "overlapping turns"},
			counts: map[string]int{"stale_commits": 2, "overlapping_turns": 1, "in_flight_at_lease_loss": 0},
		},
		{
			name:  "overlapping turns on two silos under one version",
			turns: with(handoverTurns, turn("x", claimC5, 1250, 1350)), leases: handoverLeases, writes: handoverWrites,
			want:   []string{"two claims at one version", "overlapping turns"},
			counts: map[string]int{"conflicting_claims": 1, "overlapping_turns": 1},
		},
		{
			name:  "a turn under an older claim after a newer one",
			turns: with(handoverTurns, turn("x", claimA3, 2000, 2100)), leases: with(handoverLeases, history.Lease{Silo: "silo-a", Incarnation: "pa", From: 1900, Until: 3000}),
			writes: handoverWrites,
			want:   []string{"turn under an older claim"},
			counts: map[string]int{"stale_claim_turns": 1},
		},
		{
			name:  "a turn started after its silo's lease expired",
			turns: with(handoverTurns, turn("y", claimA3, 1100, 1150)), leases: handoverLeases, writes: handoverWrites,
			want:   []string{"turn without a lease"},
			counts: map[string]int{"turns_without_lease": 1},
		},
		{
			name:  "a turn logged within the admission slack after the lease ended",
			turns: with(handoverTurns, turn("y", claimA3, 1015, 1050)), leases: handoverLeases, writes: handoverWrites,
			counts: map[string]int{"turns_without_lease": 0},
		},
		{
			name:  "a lease of another incarnation does not count",
			turns: with(handoverTurns, turn("y", "3/silo-a/restarted", 500, 550)), leases: handoverLeases, writes: handoverWrites,
			want:   []string{"turn without a lease"},
			counts: map[string]int{"turns_without_lease": 1},
		},
		{
			name:  "a stale-claim write committed",
			turns: handoverTurns, leases: handoverLeases, writes: with(handoverWrites, store("x", claimA3, 1210)),
			want:   []string{"stale-claim write committed"},
			counts: map[string]int{"stale_commits": 1},
		},
		{
			name:  "a write committed under the old claim before the new one appeared",
			turns: handoverTurns, leases: handoverLeases, writes: with(handoverWrites, store("x", claimA3, 990)),
			counts: map[string]int{"stale_commits": 0},
		},
		{
			name:  "no lease data: leases are not checked",
			turns: with(handoverTurns, turn("y", claimA3, 1100, 1150)), writes: handoverWrites,
			counts: map[string]int{"turns_lease_unchecked": 5, "turns_without_lease": 0},
		},
		{
			name:   "a turn on the wrong silo's app",
			turns:  with(handoverTurns, func() history.Turn { t := turn("y", claimB5, 1600, 1700); t.Silo = "silo-a"; return t }()),
			leases: handoverLeases, writes: handoverWrites,
			want:   []string{"turn on another silo"},
			counts: map[string]int{"misplaced_turns": 1},
		},
		{
			name:  "reentrant turns of one activation overlap",
			turns: with(handoverTurns, turn("x", claimB5, 1210, 1290)), leases: handoverLeases, writes: handoverWrites,
			counts: map[string]int{"overlaps_same_activation": 1},
		},
		{
			name:  "a malformed turn",
			turns: with(handoverTurns, history.Turn{Actor: "x", Activation: "garbage", Start: 1, End: 2}), leases: handoverLeases, writes: handoverWrites,
			want: []string{"malformed turn"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := SingleActivation(tt.turns, tt.leases, tt.writes, unitSlack)
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
			if len(res.Notes) != tt.notes {
				t.Fatalf("%d notes, want %d\n%s", len(res.Notes), tt.notes, res)
			}
			for k, v := range tt.counts {
				if res.Counts[k] != v {
					t.Errorf("Counts[%q] = %d, want %d\n%s", k, res.Counts[k], v, res)
				}
			}
		})
	}
}

func confirmedAt(t history.Turn, at int64) history.Turn {
	t.Confirmed = at
	return t
}

// TestSingleActivationLateDelivery: a call the silo confirmed under its
// lease and claim, then held while the harness froze its process, reaches
// the app after the lease and the claim passed to another silo. It is a
// note when a freeze of that silo lies between the confirmation and the
// turn's start and the turn commits nothing after the newer claim; without
// that freeze, or confirmed without a lease, it is a violation.
func TestSingleActivationLateDelivery(t *testing.T) {
	late := confirmedAt(turn("x", claimA3, 1350, 1390), 950)
	freezeA := Freezes([]Freeze{{Silo: "silo-a", From: 960, Until: 1340}})
	tests := []struct {
		name   string
		turn   history.Turn
		opts   []Option
		want   []string
		counts map[string]int
		notes  int
	}{
		{name: "frozen between confirmation and delivery", turn: late, opts: []Option{freezeA},
			counts: map[string]int{"late_after_freeze": 1, "turns_without_lease": 0, "stale_claim_turns": 0}, notes: 1},
		{name: "no freeze recorded", turn: late,
			want: []string{"turn under an older claim", "turn without a lease"}, counts: map[string]int{"late_after_freeze": 0}},
		{name: "another silo was frozen", turn: late, opts: []Option{Freezes([]Freeze{{Silo: "silo-b", From: 960, Until: 1340}})},
			want: []string{"turn under an older claim", "turn without a lease"}},
		{name: "no confirmation sent", turn: turn("x", claimA3, 1350, 1390), opts: []Option{freezeA},
			want: []string{"turn under an older claim", "turn without a lease"}},
		{name: "the freeze ended long before the turn started", turn: late,
			opts: []Option{Freezes([]Freeze{{Silo: "silo-a", From: 960, Until: 1100}})},
			want: []string{"turn under an older claim", "turn without a lease"}},
		{name: "confirmed after the lease ran out", turn: confirmedAt(turn("x", claimA3, 1350, 1390), 1100),
			opts: []Option{Freezes([]Freeze{{Silo: "silo-a", From: 1110, Until: 1340}})},
			want: []string{"turn under an older claim", "turn without a lease"}},
		{name: "delivered late and committed", turn: committed(late, 1360), opts: []Option{freezeA},
			want: []string{"stale-claim commit"}, notes: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := SingleActivation(with(handoverTurns, tt.turn), handoverLeases, handoverWrites, append([]Option{unitSlack, ResumeSlack(50)}, tt.opts...)...)
			var got []string
			for _, v := range res.Violations {
				got = append(got, v.What)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("violations %q, want %q\n%s", got, tt.want, res)
			}
			if len(res.Notes) != tt.notes {
				t.Fatalf("%d notes, want %d\n%s", len(res.Notes), tt.notes, res)
			}
			for k, v := range tt.counts {
				if res.Counts[k] != v {
					t.Errorf("Counts[%q] = %d, want %d\n%s", k, res.Counts[k], v, res)
				}
			}
		})
	}
}

func TestSingleActivationInFlightNoteSaysWhy(t *testing.T) {
	res := SingleActivation(with(handoverTurns, turn("x", claimA3, 950, 1350)), handoverLeases, handoverWrites, unitSlack)
	if len(res.Notes) != 1 {
		t.Fatalf("want one note:\n%s", res)
	}
	n := res.Notes[0]
	if n.What != "in-flight at lease loss" || n.Key != "Register/x" || n.At != 950 || !strings.Contains(n.Detail, "lease ran until 1000") {
		t.Fatalf("note %+v", n)
	}
}

// sameShard returns two actor ids of type typ on one shard.
func sameShard(t *testing.T, typ string) (string, string) {
	seen := map[int]string{}
	for i := range 10000 {
		id := "id" + strconv.Itoa(i)
		if other, ok := seen[ShardOf(typ, id)]; ok {
			return other, id
		}
		seen[ShardOf(typ, id)] = id
	}
	t.Fatal("no two ids share a shard")
	return "", ""
}

func TestSingleActivationClaimsAreShardWide(t *testing.T) {
	x, y := sameShard(t, "Register")
	turns := []history.Turn{
		turn(x, claimB5, 1200, 1300),
		turn(y, claimA3, 2000, 2100), // another actor of the shard, under the older claim
	}
	res := SingleActivation(turns, nil, nil, unitSlack)
	if res.Counts["stale_claim_turns"] != 1 || res.Counts["shards"] != 1 {
		t.Fatalf("a turn under an older claim of the shard went unnoticed:\n%s", res)
	}
	// Without the actor type the shard is unknown, and each actor stands alone.
	for i := range turns {
		turns[i].Type = ""
	}
	res = SingleActivation(turns, nil, nil, unitSlack)
	if !res.Valid || res.Counts["shards"] != 2 {
		t.Fatalf("without types, actors should be judged apart:\n%s", res)
	}
}

func TestShardOf(t *testing.T) {
	// Values the runtime's own shard function gives; the checker computes
	// them independently from the design's definition.
	for _, tt := range []struct {
		typ, id string
		want    int
	}{
		{"Counter", "1", 2823},
		{"Counter", "abc", 252},
		{"Register", "k7", 2554},
		{"T", "", 3114},
	} {
		if got := ShardOf(tt.typ, tt.id); got != tt.want {
			t.Errorf("ShardOf(%q, %q) = %d, want %d", tt.typ, tt.id, got, tt.want)
		}
	}
}

func TestResultString(t *testing.T) {
	res := SingleActivation(with(handoverTurns, turn("x", claimA3, 2000, 2100)), nil, nil, unitSlack)
	s := res.String()
	if !strings.HasPrefix(s, "single-activation: INVALID") || !strings.Contains(s, "violation: turn under an older claim [Register/x at 2000]") {
		t.Fatalf("String() = %q", s)
	}
}

// TestSingleActivationLeaseHorizon: past the moment the harness last read
// the leases, a turn without a recorded lease proves nothing and is only
// counted; before it, it is a violation.
func TestSingleActivationLeaseHorizon(t *testing.T) {
	turns := with(handoverTurns, turn("y", claimA3, 1100, 1150))
	after := SingleActivation(turns, handoverLeases, handoverWrites, unitSlack, LeaseHorizon(1050))
	if !after.Valid || after.Counts["turns_without_lease"] != 0 || after.Counts["turns_lease_unchecked"] == 0 {
		t.Fatalf("a turn past the horizon was judged: %s", after)
	}
	before := SingleActivation(turns, handoverLeases, handoverWrites, unitSlack, LeaseHorizon(1200))
	if before.Valid || before.Counts["turns_without_lease"] != 1 {
		t.Fatalf("a turn without a lease before the horizon was not flagged: %s", before)
	}
}
