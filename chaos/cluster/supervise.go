package cluster

// Processes that come back: a silo restarted with its ID while its old
// process is frozen, and any process that exits on its own.

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/granaryhq/granary/internal/launch"
)

// FreezeAndReplace freezes the silo's process with SIGSTOP and starts a
// new one with the same ID, as an operator restarting a silo that hangs
// would: the new process runs on the slot's other side, the other silos'
// links to the slot lead there from now on (their open connections, to
// the frozen process, are reset), and the old process is kept, frozen,
// until ThawReplaced.
func (c *Cluster) FreezeAndReplace(ctx context.Context, s *Silo) error {
	s.mu.Lock()
	old := s.proc
	if old == nil || old.Exited() {
		s.mu.Unlock()
		return fmt.Errorf("%s: %w", s.Name, errNotRunning)
	}
	if err := old.Signal(syscall.SIGSTOP); err != nil {
		s.mu.Unlock()
		return err
	}
	s.frozen = append(s.frozen, old)
	s.proc = nil
	s.cur = 1 - s.cur
	internal := s.sides[s.cur].internalAddr
	s.mu.Unlock()
	for _, t := range c.silos {
		if t != s {
			if err := t.toSilo[s.Index].Retarget(internal); err != nil {
				return err
			}
		}
	}
	// Placement refuses the new process while the old one counts as live
	// (until the faulty-host timeout after its last heartbeat), and a
	// refused silo exits: start it again, as a service manager would, until
	// it joins.
	deadline := time.Now().Add(replaceTimeout)
	for {
		err := c.StartSilo(ctx, s)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		c.log.Info("cluster: the replacement silo exited; starting it again", "silo", s.Name, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// replaceTimeout bounds FreezeAndReplace's attempts to start the new process.
const replaceTimeout = 20 * time.Second

// ThawReplaced resumes the silo's frozen earlier processes and waits up to
// wait for each to exit on its own (a superseded process must leave); it
// reports those that did not, and kills them.
func (s *Silo) ThawReplaced(wait time.Duration) (stayed []int) {
	s.mu.Lock()
	frozen := s.frozen
	s.frozen = nil
	s.mu.Unlock()
	for _, p := range frozen {
		_ = p.Signal(syscall.SIGCONT)
	}
	deadline := time.After(wait)
	for _, p := range frozen {
		select {
		case <-p.Done():
		case <-deadline:
		}
		if !p.Exited() {
			stayed = append(stayed, p.Pid())
			p.Kill()
		}
	}
	return stayed
}

// Supervise restarts, until ctx ends, every process that exited on its own
// while it should run, as a service manager would: a silo exits when
// placement removes it, and must come back as a new process. Each restart
// is reported to restarted.
func (c *Cluster) Supervise(ctx context.Context, restarted func(name, status string)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
		for _, n := range c.nodes {
			if status, dead := exitedUnwanted(&n.mu, &n.wanted, &n.proc); dead && c.StartNode(ctx, n, true) == nil {
				restarted(n.Name, status)
			}
		}
		for _, s := range c.silos {
			status, dead := exitedUnwanted(&s.mu, &s.wanted, &s.proc)
			if !dead {
				continue
			}
			if err := c.StartSilo(ctx, s); err != nil {
				c.log.Warn("cluster: restarting a silo that exited failed", "silo", s.Name, "err", err)
				continue
			}
			restarted(s.Name, status)
		}
	}
}

// exitedUnwanted reports, under mu, whether the process that should run
// has exited on its own, and how it ended.
func exitedUnwanted(mu *sync.Mutex, wanted *bool, proc **launch.Proc) (status string, dead bool) {
	mu.Lock()
	defer mu.Unlock()
	if !*wanted || *proc == nil || !(*proc).Exited() {
		return "", false
	}
	return (*proc).ExitStatus(), true
}
