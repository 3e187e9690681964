package nemesis

import (
	"slices"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	all, err := Parse("all")
	if err != nil || !slices.Equal(all, All) {
		t.Fatalf("all: %v %v", all, err)
	}
	got, err := Parse("kill-silo, pause-silo,kill-silo")
	if err != nil || !slices.Equal(got, []string{KillSilo, PauseSilo}) {
		t.Fatalf("a list with a repeat: %v %v", got, err)
	}
	for _, bad := range []string{"", "kill", "kill-silo,,pause-silo", "all,kill-silo"} {
		if got, err := Parse(bad); err == nil {
			t.Errorf("%q accepted as %v", bad, got)
		}
	}
}

// TestScheduleFollowsTheSeed: two nemeses with one seed draw the same
// lengths and choices; another seed draws others.
func TestScheduleFollowsTheSeed(t *testing.T) {
	draw := func(seed uint64) []time.Duration {
		n := New(nil, Config{Kinds: All, Seed: seed})
		var out []time.Duration
		for range 20 {
			out = append(out, n.between(n.cfg.Calm), n.between(n.cfg.Hold), time.Duration(n.rnd.IntN(len(All))))
		}
		return out
	}
	if a, b := draw(5), draw(5); !slices.Equal(a, b) {
		t.Fatal("one seed gave two schedules")
	}
	if a, b := draw(5), draw(6); slices.Equal(a, b) {
		t.Fatal("two seeds gave one schedule")
	}
	for _, d := range draw(7) {
		if d < 0 || d > DefaultHold[1] {
			t.Fatalf("drew %v, outside every range", d)
		}
	}
}
