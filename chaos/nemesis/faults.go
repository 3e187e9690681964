package nemesis

// Each nemesis: how it breaks the cluster and how it heals it.

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/granaryhq/granary/chaos/cluster"
	"github.com/granaryhq/granary/chaos/history"
	"github.com/granaryhq/granary/chaos/proxy"
	"github.com/granaryhq/granary/internal/clock"
)

// thawWait is how long a superseded silo process may take to leave on its
// own once thawed.
const thawWait = 10 * time.Second

// gracefulStop bounds a leaving silo's drain.
const gracefulStop = 20 * time.Second

func (n *Nemesis) inject(ctx context.Context, kind string) (history.Fault, healFunc, error) {
	switch kind {
	case KillSilo:
		s, err := n.pickSilo()
		if err != nil {
			return history.Fault{}, nil, err
		}
		f := fault(kind, s.Name, "SIGKILL")
		s.Kill()
		return f, func(ctx context.Context) string { return errText(n.c.StartSilo(ctx, s)) }, nil

	case KillLeader:
		l, err := n.leader(ctx)
		if err != nil {
			return history.Fault{}, nil, err
		}
		f := fault(kind, l.Name, "SIGKILL of the leader")
		l.Kill()
		return f, func(ctx context.Context) string { return errText(n.c.StartNode(ctx, l, false)) }, nil

	case PauseSilo:
		s, err := n.pickSilo()
		if err != nil {
			return history.Fault{}, nil, err
		}
		f := fault(kind, s.Name, "SIGSTOP")
		if err := s.Signal(syscall.SIGSTOP); err != nil {
			return history.Fault{}, nil, err
		}
		return f, func(context.Context) string { return signalText(s.Signal(syscall.SIGCONT)) }, nil

	case PauseLeader:
		l, err := n.leader(ctx)
		if err != nil {
			return history.Fault{}, nil, err
		}
		f := fault(kind, l.Name, "SIGSTOP of the leader")
		if err := l.Signal(syscall.SIGSTOP); err != nil {
			return history.Fault{}, nil, err
		}
		return f, func(context.Context) string { return signalText(l.Signal(syscall.SIGCONT)) }, nil

	case PartitionPlacement:
		s, err := n.pickSilo()
		if err != nil {
			return history.Fault{}, nil, err
		}
		return n.cut(kind, s.Name, "from every placement node", n.c.SiloToPlacement(s))

	case PartitionSilos:
		s, err := n.pickSilo()
		if err != nil {
			return history.Fault{}, nil, err
		}
		return n.cut(kind, s.Name, "from the other silos", n.c.SiloToSilos(s))

	case PartitionStore:
		s, err := n.pickSilo()
		if err != nil {
			return history.Fault{}, nil, err
		}
		return n.cut(kind, s.Name, "from the store", n.c.SiloToStore(s))

	case PartitionMinority:
		return n.minority(ctx, kind)

	case Bridge:
		return n.bridge(ctx, kind)

	case SameIDRestart:
		s, err := n.pickSilo()
		if err != nil {
			return history.Fault{}, nil, err
		}
		f := fault(kind, s.Name, "old process frozen, a new one started with the same --id")
		if err := n.c.FreezeAndReplace(ctx, s); err != nil {
			// The new process may not have started: thaw the old one.
			s.ThawReplaced(0)
			return history.Fault{}, nil, fmt.Errorf("same-ID restart of %s: %w", s.Name, err)
		}
		return f, func(context.Context) string {
			if stayed := s.ThawReplaced(thawWait); len(stayed) > 0 {
				return fmt.Sprintf("thawed; pids %v did not leave within %v and were killed", stayed, thawWait)
			}
			return "thawed; the old process left"
		}, nil

	case SlowLink:
		return n.slow()

	case Scale:
		return n.scale(ctx, kind)
	}
	return history.Fault{}, nil, fmt.Errorf("unknown nemesis %q", kind)
}

func signalText(err error) string {
	if err == nil {
		return ""
	}
	return "SIGCONT: " + err.Error()
}

// cut partitions link in a mode chosen at random: held bytes (a partition
// TCP survives), dropped connections, or a black hole.
func (n *Nemesis) cut(kind, target, what string, link cluster.Link) (history.Fault, healFunc, error) {
	modes := []proxy.CutMode{proxy.Hold, proxy.Drop, proxy.Blackhole}
	mode := modes[n.rnd.IntN(len(modes))]
	f := fault(kind, target, fmt.Sprintf("%s (%s)", what, mode))
	link.CutWith(mode, proxy.Both)
	return f, func(context.Context) string { link.Heal(); return "" }, nil
}

// minority cuts one placement node (the leader half the time) from the
// others: a minority of 3 or 5.
func (n *Nemesis) minority(ctx context.Context, kind string) (history.Fault, healFunc, error) {
	nodes := n.c.Nodes()
	pick := n.rnd.IntN(len(nodes))
	what := "a follower"
	if n.rnd.IntN(2) == 0 {
		if l, err := n.leader(ctx); err == nil {
			pick, what = l.Index, "the leader"
		}
	}
	target := nodes[pick]
	return n.cut(kind, target.Name, "placement node cut from the majority ("+what+")", n.c.RaftBetween([]int{pick}))
}

// bridge leaves a silo reaching one placement node only (the leader half
// the time), then, after a while, pauses that node or cuts it from the
// majority.
func (n *Nemesis) bridge(ctx context.Context, kind string) (history.Fault, healFunc, error) {
	s, err := n.pickSilo()
	if err != nil {
		return history.Fault{}, nil, err
	}
	nodes := n.c.Nodes()
	keep := n.rnd.IntN(len(nodes))
	if n.rnd.IntN(2) == 0 {
		if l, err := n.leader(ctx); err == nil {
			keep = l.Index
		}
	}
	var others []int
	for i := range nodes {
		if i != keep {
			others = append(others, i)
		}
	}
	link := n.c.SiloToPlacement(s, others...)
	link.Cut()
	bridgeNode := nodes[keep]
	pause := n.rnd.IntN(2) == 0
	second := "then cut from the majority"
	if pause {
		second = "then paused"
	}
	f := fault(kind, s.Name, fmt.Sprintf("reaches only %s, %s", bridgeNode.Name, second))
	var raft cluster.Link
	done := make(chan struct{})
	after := time.Duration(1000+n.rnd.IntN(1500)) * time.Millisecond
	go func() {
		defer close(done)
		if !clock.Sleep(ctx, after) {
			return
		}
		if pause {
			_ = bridgeNode.Signal(syscall.SIGSTOP)
			return
		}
		raft = n.c.RaftBetween([]int{keep})
		raft.Cut()
	}()
	return f, func(context.Context) string {
		<-done
		if pause {
			_ = bridgeNode.Signal(syscall.SIGCONT)
		}
		raft.Heal()
		link.Heal()
		return ""
	}, nil
}

// slow adds latency or a bandwidth limit to one kind of link of one silo.
func (n *Nemesis) slow() (history.Fault, healFunc, error) {
	s, err := n.pickSilo()
	if err != nil {
		return history.Fault{}, nil, err
	}
	links := []struct {
		name string
		link cluster.Link
	}{
		{"to placement", n.c.SiloToPlacement(s)},
		{"to the other silos", n.c.SiloToSilos(s)},
		{"to the store", n.c.SiloToStore(s)},
	}
	l := links[n.rnd.IntN(len(links))]
	var what string
	if n.rnd.IntN(3) == 0 {
		const rate = 64 << 10
		l.link.Throttle(rate)
		what = fmt.Sprintf("bandwidth %s limited to %d KiB/s", l.name, rate>>10)
	} else {
		d := time.Duration(20+n.rnd.IntN(180)) * time.Millisecond
		l.link.Slow(d, d/2)
		what = fmt.Sprintf("latency %s %v ± %v", l.name, d, d/2)
	}
	f := fault(SlowLink, s.Name, what)
	return f, func(context.Context) string { l.link.Heal(); return "" }, nil
}

// scale starts a silo in a free slot and stops it (gracefully) at the end;
// with no free slot it stops a running silo for the fault's length and
// starts it again.
func (n *Nemesis) scale(ctx context.Context, kind string) (history.Fault, healFunc, error) {
	var free []*cluster.Silo
	for _, s := range n.c.Silos() {
		if !s.Running() {
			free = append(free, s)
		}
	}
	if len(free) > 0 {
		s := free[n.rnd.IntN(len(free))]
		f := fault(kind, s.Name, "joins (scale out), leaves at the end (scale in)")
		if err := n.c.StartSilo(ctx, s); err != nil {
			return history.Fault{}, nil, fmt.Errorf("scale out with %s: %w", s.Name, err)
		}
		return f, func(context.Context) string { s.Stop(gracefulStop); return "" }, nil
	}
	s, err := n.pickSilo()
	if err != nil {
		return history.Fault{}, nil, err
	}
	f := fault(kind, s.Name, "leaves (scale in), joins again at the end")
	s.Stop(gracefulStop)
	return f, func(ctx context.Context) string { return errText(n.c.StartSilo(ctx, s)) }, nil
}
