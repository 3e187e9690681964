package main

// The fire-throughput scenario.

import (
	"context"
	"fmt"
	"time"

	"github.com/granaryhq/granary/actor"
)

func (b *bench) fire(ctx context.Context) (r result) {
	n := b.o.fireActors * b.o.firePerActor
	r.Title = "fire throughput"
	r.Setup = fmt.Sprintf("%s; %d active Echo actors × %d reminders = %d, all due at one instant (RFC 3339 dueTime, period 1h)",
		storeLabel(b.o.store), b.o.fireActors, b.o.firePerActor, n)
	h, err := b.openHarness(ctx, b.o.store)
	if err != nil {
		r.fail(err)
		return r
	}
	defer h.closeInto(&r)
	ids := actorIDs("fire-", b.o.fireActors)
	b.progress("activating %d actors", len(ids))
	if _, err := b.activate(ctx, h, ids); err != nil {
		r.fail(err)
		return r
	}
	c := newCollector(int64(n))
	obs := c.observe
	h.observe.Store(&obs)

	lead := b.lead(b.o.fireLead, n, 5000)
	due := time.Now().Add(lead).UTC().Truncate(time.Millisecond)
	dueTime := due.Format(time.RFC3339Nano)
	b.progress("registering %d reminders due at %s (in %v)", n, dueTime, lead.Round(time.Millisecond))
	reg, err := b.registerAll(ctx, h, ids, 0, n, func(int) actor.ReminderSpec {
		return actor.ReminderSpec{DueTime: dueTime, Period: "1h"}
	})
	if err != nil {
		r.fail(err)
		return r
	}
	if late := time.Since(due); late > 0 {
		r.failf("registration ended %v after the due time, so fires overlapped registration; raise --fire-lead", late.Round(time.Millisecond))
	} else {
		b.progress("registered in %v (%.0f/s); waiting %v for the due time", reg.elapsed.Round(time.Millisecond), reg.rate(), -late.Round(time.Millisecond))
	}
	err = b.waitFires(ctx, c.done, "fired", func() string {
		return fmt.Sprintf("%d/%d", c.fired.Load(), n)
	})
	if err != nil {
		r.fail(err)
		return r
	}
	span := time.Unix(0, c.lastFinished.Load()).Sub(due)
	// The next due times are written behind the fires; stopping the
	// service writes what is still pending.
	stored := span + h.stop()
	rate := rateMetric("fires/s", perSecond(n, span)).atLeast(fireTarget, fmt.Sprintf("%d/s", fireTarget))
	lat := c.lateness.merged()
	r.add(rate,
		durationMetric("due time to last fire done", span),
		rateMetric("fires/s including the store writes after them", perSecond(n, stored)),
		durationMetric("lateness p50", lat.Quantile(0.50)),
		durationMetric("lateness p99", lat.Quantile(0.99)),
		durationMetric("lateness max", lat.Max()),
		rateMetric("registrations/s (all due at once)", reg.rate()),
		countMetric("failed fire attempts", c.failed.Load()))
	if c.failed.Load() > 0 {
		r.note("first failed fire: %s", c.firstError())
	}
	if got := h.delivered.Load(); got != int64(n) {
		r.note("the actors received %d reminder calls for %d reminders", got, n)
	}
	return r
}
