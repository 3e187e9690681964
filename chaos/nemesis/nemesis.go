// Package nemesis injects the chaos suite's faults into a running cluster
// on a seeded schedule: kills, pauses, partitions, bridges, same-ID
// restarts, slow links and scale-out and scale-in, one at a time with calm
// between them, each recorded as a history.Fault with its start and end.
package nemesis

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/granaryhq/granary/chaos/cluster"
	"github.com/granaryhq/granary/chaos/history"
	"github.com/granaryhq/granary/internal/clock"
)

// The nemeses.
const (
	KillSilo           = "kill-silo"           // kill -9 a silo, restart it
	KillLeader         = "kill-leader"         // kill -9 the placement leader, restart it
	PauseSilo          = "pause-silo"          // SIGSTOP a silo past the faulty-host timeout
	PauseLeader        = "pause-leader"        // SIGSTOP the placement leader
	PartitionPlacement = "partition-placement" // one silo from every placement node
	PartitionSilos     = "partition-silos"     // one silo from the other silos
	PartitionMinority  = "partition-minority"  // a placement minority from its majority
	PartitionStore     = "partition-store"     // one silo from the store
	Bridge             = "bridge"              // a silo reaches one placement node, which is then paused or cut off
	SameIDRestart      = "same-id-restart"     // a silo restarted with its ID while the old process is frozen
	SlowLink           = "slow-link"           // latency or a bandwidth limit on a link
	Scale              = "scale"               // a silo joins, and later leaves
)

// All is every nemesis, in the order the docs list them.
var All = []string{KillSilo, KillLeader, PauseSilo, PauseLeader, PartitionPlacement, PartitionSilos,
	PartitionMinority, PartitionStore, Bridge, SameIDRestart, SlowLink, Scale}

// Parse reads a comma-separated list of nemeses; "all" is every one.
func Parse(list string) ([]string, error) {
	if strings.TrimSpace(list) == "all" {
		return slices.Clone(All), nil
	}
	var kinds []string
	for k := range strings.SplitSeq(list, ",") {
		k = strings.TrimSpace(k)
		if !slices.Contains(All, k) {
			return nil, fmt.Errorf("unknown nemesis %q (want all or some of %s)", k, strings.Join(All, ","))
		}
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		return nil, fmt.Errorf("no nemesis in %q", list)
	}
	return kinds, nil
}

// Config configures a schedule.
type Config struct {
	Kinds []string
	Seed  uint64
	// Calm is the range of the pause between two faults; Hold the range of
	// a fault's length. Pauses of processes hold at least PauseAtLeast (the
	// faulty-host timeout and some) so the silo is removed meanwhile.
	Calm, Hold   [2]time.Duration
	PauseAtLeast time.Duration
	// Record receives every fault once it ended (or, for the one in force
	// when the schedule stops, with End 0).
	Record func(history.Fault)
	Log    *slog.Logger
}

// Defaults for Config.
var (
	DefaultCalm         = [2]time.Duration{2 * time.Second, 5 * time.Second}
	DefaultHold         = [2]time.Duration{3 * time.Second, 8 * time.Second}
	DefaultPauseAtLeast = 4500 * time.Millisecond
)

// Nemesis runs a schedule against one cluster.
type Nemesis struct {
	cfg Config
	c   *cluster.Cluster
	rnd *rand.Rand
	log *slog.Logger
}

// New returns the nemesis of c.
func New(c *cluster.Cluster, cfg Config) *Nemesis {
	if cfg.Calm == [2]time.Duration{} {
		cfg.Calm = DefaultCalm
	}
	if cfg.Hold == [2]time.Duration{} {
		cfg.Hold = DefaultHold
	}
	if cfg.PauseAtLeast == 0 {
		cfg.PauseAtLeast = DefaultPauseAtLeast
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Nemesis{cfg: cfg, c: c, rnd: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), log: cfg.Log}
}

func (n *Nemesis) between(r [2]time.Duration) time.Duration {
	if r[1] <= r[0] {
		return r[0]
	}
	return r[0] + time.Duration(n.rnd.Int64N(int64(r[1]-r[0])))
}

// Run injects faults until ctx ends, then heals the last one and returns.
// Every fault is healed before Run returns; a process the fault stopped is
// running again.
func (n *Nemesis) Run(ctx context.Context) {
	for clock.Sleep(ctx, n.between(n.cfg.Calm)) {
		kind := n.cfg.Kinds[n.rnd.IntN(len(n.cfg.Kinds))]
		f, heal, err := n.inject(ctx, kind)
		if err != nil {
			n.log.Warn("nemesis: fault not injected", "kind", kind, "err", err)
			continue
		}
		n.log.Info("nemesis: fault", "kind", f.Kind, "target", f.Target, "detail", f.Detail)
		hold := n.between(n.cfg.Hold)
		if kind == PauseSilo || kind == SameIDRestart {
			hold = max(hold, n.cfg.PauseAtLeast)
		}
		clock.Sleep(ctx, hold)
		// Healing must finish even when the run's time is up: the final
		// reads need every process back.
		detail := heal(context.WithoutCancel(ctx))
		f.End = time.Now().UnixNano()
		if detail != "" {
			f.Detail = strings.TrimSpace(f.Detail + "; " + detail)
		}
		n.cfg.Record(f)
		n.log.Info("nemesis: healed", "kind", f.Kind, "target", f.Target, "detail", f.Detail)
	}
}

// healFunc ends a fault; what it returns is added to the fault's detail.
type healFunc func(ctx context.Context) string

func (n *Nemesis) runningSilos() []*cluster.Silo {
	var out []*cluster.Silo
	for _, s := range n.c.Silos() {
		if s.Running() {
			out = append(out, s)
		}
	}
	return out
}

func (n *Nemesis) pickSilo() (*cluster.Silo, error) {
	silos := n.runningSilos()
	if len(silos) == 0 {
		return nil, fmt.Errorf("no silo running")
	}
	return silos[n.rnd.IntN(len(silos))], nil
}

func (n *Nemesis) leader(ctx context.Context) (*cluster.Node, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if l := n.c.Leader(ctx); l != nil {
			return l, nil
		}
		if time.Now().After(deadline) || !clock.Sleep(ctx, 100*time.Millisecond) {
			return nil, fmt.Errorf("no placement leader")
		}
	}
}

func fault(kind, target, detail string) history.Fault {
	return history.Fault{Kind: kind, Target: target, Start: time.Now().UnixNano(), Detail: detail}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return "restart: " + err.Error()
}
