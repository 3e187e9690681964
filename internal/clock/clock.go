// Package clock puts time behind a small interface so that schedulers, idle
// collection and timeouts can be tested by moving a fake clock instead of sleeping.
package clock

import (
	"context"
	"time"
)

// Clock tells the time and schedules callbacks.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has elapsed.
	AfterFunc(d time.Duration, f func()) Timer
	// NewTimer returns a timer that sends on C() once d has elapsed.
	NewTimer(d time.Duration) Timer
}

// Timer is a pending AfterFunc or NewTimer.
type Timer interface {
	// C is the channel a NewTimer timer sends on; nil for AfterFunc timers.
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether it was still pending.
	Stop() bool
	// Reset makes the timer fire after d. It reports whether it was still pending.
	Reset(d time.Duration) bool
}

// Real is the wall clock. Inside a testing/synctest bubble it is the bubble's fake time.
var Real Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) Timer {
	return realTimer{t: time.AfterFunc(d, f)}
}

func (realClock) NewTimer(d time.Duration) Timer {
	return realTimer{t: time.NewTimer(d)}
}

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

// Sleep waits d on the real clock, or until ctx ends; it reports whether
// the whole of d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
