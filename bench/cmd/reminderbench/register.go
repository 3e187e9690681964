package main

// The registration scenarios, on the embedded store and on Redis.

import (
	"context"
	"fmt"
	"time"

	"github.com/granaryhq/granary/actor"
)

func (b *bench) register(ctx context.Context) result {
	return b.registerScenario(ctx, b.o.store, b.o.registerN, b.o.registerActors, true)
}

func (b *bench) redis(ctx context.Context) result {
	return b.registerScenario(ctx, b.o.redisURL, b.o.redisN, b.o.redisActors, false)
}

// registerScenario measures how fast reminders are registered (due in an
// hour, so none fires meanwhile), with the target when withTarget.
func (b *bench) registerScenario(ctx context.Context, storeURL string, n, actors int, withTarget bool) (r result) {
	r.Title = "registration rate"
	r.Setup = fmt.Sprintf("%s; %d reminders (dueTime 1h, period 1h) on %d inactive Echo actors, %d registering goroutines",
		storeLabel(storeURL), n, actors, b.o.concurrency)
	h, err := b.openHarness(ctx, storeURL)
	if err != nil {
		r.fail(err)
		return r
	}
	defer h.closeInto(&r)
	ids := actorIDs("reg-", actors)
	b.progress("registering %d reminders (%s)", n, h.where)
	reg, err := b.registerAll(ctx, h, ids, 0, n, func(int) actor.ReminderSpec {
		return actor.ReminderSpec{DueTime: "1h", Period: "1h"}
	})
	if err != nil {
		r.fail(err)
		return r
	}
	rate := rateMetric("registrations/s", reg.rate())
	if withTarget {
		rate = rate.atLeast(registerTarget, fmt.Sprintf("%d/s", registerTarget))
	}
	r.add(rate,
		durationMetric("time for all", reg.elapsed),
		durationMetric("Create latency p50", reg.latency.Quantile(0.50)),
		durationMetric("Create latency p99", reg.latency.Quantile(0.99)),
		durationMetric("Create latency max", reg.latency.Max()))
	return r
}

// autoLead is how far ahead reminders are made due when no lead is given:
// time to register n at rate, doubled, plus a margin.
func autoLead(n int, rate float64) time.Duration {
	return 3*time.Second + time.Duration(2*float64(n)/rate*float64(time.Second))
}
