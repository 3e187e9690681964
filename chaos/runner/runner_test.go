package runner

import (
	"slices"
	"testing"

	"github.com/granaryhq/granary/chaos/check"
	"github.com/granaryhq/granary/chaos/history"
	"github.com/granaryhq/granary/chaos/nemesis"
)

// Only the faults that stop a silo's process are freezes; one still open at
// the end runs until then.
func TestFreezesAreTheSiloStops(t *testing.T) {
	faults := []history.Fault{
		{Kind: nemesis.PauseSilo, Target: "s1", Start: 10, End: 20},
		{Kind: nemesis.PauseLeader, Target: "p1", Start: 30, End: 40},
		{Kind: nemesis.KillSilo, Target: "s2", Start: 50, End: 60},
		{Kind: nemesis.SameIDRestart, Target: "s3", Start: 70},
	}
	got := freezes(faults, 100)
	want := []check.Freeze{{Silo: "s1", From: 10, Until: 20}, {Silo: "s3", From: 70, Until: 100}}
	if !slices.Equal(got, want) {
		t.Fatalf("freezes = %+v, want %+v", got, want)
	}
}
