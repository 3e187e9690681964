package silo

import (
	"sync"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/reminders/schedule"
)

// timerSpec turns a timer request into the runtime's timer description. The
// schedule grammar and its limits are the reminders' ones (durations, ISO
// 8601, R<n>/, cron, ttl; a period of at least schedule.MinPeriod, since a
// timer firing every nanosecond would spin a core even though it is not
// stored); a periodic timer counts its period from the last scheduled fire, and
// a fire that overran its period is followed by the next one due after it
// completed rather than by a burst of catch-up fires.
func timerSpec(req TimerRequest, now time.Time) (actor.TimerSpec, error) {
	spec, err := schedule.Parse(now, req.DueTime, req.Period, req.TTL)
	if err != nil {
		return actor.TimerSpec{}, err
	}
	var (
		mu   sync.Mutex
		last = spec.First
	)
	next := func(completed time.Time, fires int) (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		t, _, ok := spec.NextFire(fires, last, completed)
		if ok {
			last = t
		}
		return t, ok
	}
	return actor.TimerSpec{
		Name:     req.Name,
		Callback: req.Callback,
		Data:     req.Data,
		DueTime:  req.DueTime,
		Period:   req.Period,
		First:    spec.First,
		Next:     next,
	}, nil
}
