package redisstore

// Commit deadlines. A transaction whose bytes the network holds (a
// partition TCP survives) can reach Redis after its caller has given up on
// it and gone on: a failed turn's write would then land in the middle of
// the actor's next turn. So every transaction carries a deadline in the
// server's clock, no later than the moment its caller can give up, and the
// script refuses to commit past it: once Transact has returned an error, the
// transaction has either committed already or never will.
//
// The server's clock is read off the replies: a reply stamped S by the
// server and received at local time b says the offset server − local is at
// least S − b. Deadline = (send + read timeout) + that lower bound, so a
// script that runs before it ran, in local time, before the caller could
// have given up. A step of either wall clock between a reply and a
// transaction breaks the bound by the step's size.

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// deadlineMargin is taken off every deadline for the servers' millisecond
// stamps.
const deadlineMargin = 2 * time.Millisecond

// serverClock keeps the latest lower bound of the server's clock offset.
type serverClock struct {
	mu     sync.Mutex
	offset int64 // server ms − local ms, a lower bound
	known  bool
}

// observe records a reply stamped serverMs (the server's Unix ms) that
// arrived at local time received.
func (c *serverClock) observe(serverMs int64, received time.Time) {
	c.mu.Lock()
	c.offset, c.known = serverMs-received.UnixMilli(), true
	c.mu.Unlock()
}

func (c *serverClock) lowerBound() (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset, c.known
}

// sampleClock reads the server's clock with TIME.
func (s *Store) sampleClock(ctx context.Context) error {
	t, err := s.client.Time(ctx).Result()
	if err != nil {
		return err
	}
	s.clock.observe(t.UnixMilli(), time.Now())
	return nil
}

// commitDeadline returns the deadline, in the server's Unix ms, of a
// transaction sent now, and the local time it corresponds to: the earliest
// moment the caller can give up on it (its read timeout, or ctx's deadline
// when sooner). ok is false when there is no bound to set (no read timeout)
// or the server's clock could not be read.
func (s *Store) commitDeadline(ctx context.Context, sent time.Time) (serverMs int64, local time.Time, ok bool) {
	if s.readTimeout <= 0 {
		return 0, time.Time{}, false
	}
	offset, known := s.clock.lowerBound()
	if !known {
		if s.sampleClock(ctx) != nil {
			return 0, time.Time{}, false
		}
		offset, _ = s.clock.lowerBound()
	}
	local = sent.Add(s.readTimeout)
	if d, has := ctx.Deadline(); has && d.Before(local) {
		local = d
	}
	local = local.Add(-deadlineMargin)
	return local.UnixMilli() + offset, local, true
}

// awaitDeadline waits until local has passed, or ctx ends: after a failed
// call, the transaction it carried can no longer commit then.
func awaitDeadline(ctx context.Context, local time.Time) {
	d := time.Until(local)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		// Given up early: wait out the rest regardless, so that the
		// caller does not go on while the write may still commit.
		<-t.C
	}
}

// maybeSent reports whether a call that failed with err may have reached
// the server: not when no connection could be had (refused, the pool
// exhausted, the client closed).
func maybeSent(err error) bool {
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return false
	case errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed):
		return false
	}
	return true
}
