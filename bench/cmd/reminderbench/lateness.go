package main

// The lateness scenario: a steady rate of fires and how late each one is.

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/bench/loadgen"
)

func (b *bench) lateness(ctx context.Context) (r result) {
	n, period := b.o.latenessN, b.o.latenessPeriod
	offered := perSecond(n, period)
	r.Title = "lateness at a steady rate"
	r.Setup = fmt.Sprintf("%s; %d reminders of period %v on %d active Echo actors, due times spread evenly over one period "+
		"(%.0f fires/s); measured for %v after %v warm-up", storeLabel(b.o.store), n, period, b.o.latenessActors,
		offered, b.o.latenessDuration, b.o.latenessWarmup)
	h, err := b.openHarness(ctx, b.o.store)
	if err != nil {
		r.fail(err)
		return r
	}
	defer h.closeInto(&r)
	ids := actorIDs("late-", b.o.latenessActors)
	b.progress("activating %d actors", len(ids))
	if _, err := b.activate(ctx, h, ids); err != nil {
		r.fail(err)
		return r
	}
	c := newCollector(0)
	// Nothing is measured until the window is set after registration: the
	// fires due while registration runs share the CPU with it.
	c.from.Store(math.MaxInt64)
	obs := c.observe
	h.observe.Store(&obs)

	// Reminder i is first due at base + i·period/n. Those whose first due
	// time passes while registration runs fire at once when registered and
	// then keep to the same grid, so once registration is over the fires
	// come at the offered rate.
	base := time.Now().Add(2 * time.Second).UTC()
	b.progress("registering %d reminders of period %v (%.0f fires/s once all are registered)", n, period, offered)
	reg, err := b.registerAll(ctx, h, ids, 0, n, func(i int) actor.ReminderSpec {
		return actor.ReminderSpec{DueTime: phase(base, period, n, i).Format(time.RFC3339Nano), Period: period.String()}
	})
	if err != nil {
		r.fail(err)
		return r
	}
	// The steady rate starts once every reminder is registered and the
	// first due times have begun.
	from := time.Now()
	if from.Before(base) {
		from = base
	}
	from = from.Add(b.o.latenessWarmup)
	to := from.Add(b.o.latenessDuration)
	c.setWindow(from, to)
	expected := expectedFires(base, period, n, from, to)
	b.progress("registered in %v (%.0f/s); measuring fires due from %s to %s (%d expected)",
		reg.elapsed.Round(time.Millisecond), reg.rate(), from.Format("15:04:05.000"), to.Format("15:04:05.000"), expected)
	err = b.waitFires(ctx, c.past, "measuring", func() string {
		lat := c.lateness.merged()
		return fmt.Sprintf("%d fires in the window so far, p50 %s p99 %s max %s, %d failed", c.inWindow.Load(),
			loadgen.FormatDuration(lat.Quantile(0.5)), loadgen.FormatDuration(lat.Quantile(0.99)),
			loadgen.FormatDuration(lat.Max()), c.failed.Load())
	})
	if err != nil {
		r.fail(err)
		return r
	}
	// The scheduler hands fires out in due order, so every fire due in the
	// window has started by now; give their reports a moment to arrive.
	pause := time.NewTimer(200 * time.Millisecond)
	select {
	case <-pause.C:
	case <-ctx.Done():
		pause.Stop()
		r.fail(ctx.Err())
		return r
	}
	got := c.inWindow.Load()
	lat := c.lateness.merged()
	r.add(
		durationMetric("lateness p50", lat.Quantile(0.50)),
		durationMetric("lateness p90", lat.Quantile(0.90)),
		durationMetric("lateness p99", lat.Quantile(0.99)).atMost(float64(latenessTarget)/float64(time.Millisecond), loadgen.FormatDuration(latenessTarget)),
		durationMetric("lateness max", lat.Max()),
		rateMetric("fires/s measured", perSecond(int(got), b.o.latenessDuration)),
		countMetric("fires due in the window", got).atLeast(float64(expected), strconv.FormatInt(expected, 10)+" (all)"),
		countMetric("failed fire attempts", c.failed.Load()),
		rateMetric("registrations/s (while firing)", reg.rate()))
	if offered < latenessRate {
		r.note("offered rate %.0f fires/s is below the %d/s the target is stated for", offered, latenessRate)
	}
	if c.failed.Load() > 0 {
		r.note("first failed fire: %s", c.firstError())
	}
	return r
}

// phase is the first due time of reminder i of n spread evenly over period from base.
func phase(base time.Time, period time.Duration, n, i int) time.Time {
	return base.Add(time.Duration(int64(period) * int64(i) / int64(n)))
}

// expectedFires counts the fires due in [from, to) of n reminders of the
// given period, reminder i due first at phase(base, period, n, i).
func expectedFires(base time.Time, period time.Duration, n int, from, to time.Time) int64 {
	var total int64
	for i := range n {
		first := phase(base, period, n, i)
		// Fires are due at first + k·period for k ≥ 0.
		total += firesBefore(first, period, to) - firesBefore(first, period, from)
	}
	return total
}

// firesBefore counts the k ≥ 0 with first + k·period < t.
func firesBefore(first time.Time, period time.Duration, t time.Time) int64 {
	if !first.Before(t) {
		return 0
	}
	d := t.Sub(first)
	return int64((d-1)/period) + 1
}
