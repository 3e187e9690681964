package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/actor/callback"
	"github.com/granaryhq/granary/reminders"
)

// Actors is the runtime's observer (actor.Config.Observer).
func (r *Registry) Actors() actor.Observer { return actorObserver{r} }

type actorObserver struct{ r *Registry }

func (o actorObserver) Type(actorType string) actor.TypeObserver {
	r := o.r
	return &typeSeries{
		duration:      r.turnDuration.WithLabelValues(actorType),
		wait:          r.turnWait.WithLabelValues(actorType),
		inFlight:      r.turnsInFlight.WithLabelValues(actorType),
		errors:        r.turnErrors.WithLabelValues(actorType),
		activations:   r.activations.WithLabelValues(actorType),
		deactivations: r.deactivations.WithLabelValues(actorType),
	}
}

// typeSeries are the series of one actor type.
type typeSeries struct {
	duration, wait             prometheus.Observer
	inFlight                   prometheus.Gauge
	errors                     prometheus.Counter
	activations, deactivations prometheus.Counter
}

func (t *typeSeries) TurnStarted(wait time.Duration) {
	t.wait.Observe(wait.Seconds())
	t.inFlight.Inc()
}

func (t *typeSeries) TurnEnded(run time.Duration, err error) {
	t.inFlight.Dec()
	t.duration.Observe(run.Seconds())
	if err != nil {
		t.errors.Inc()
	}
}

func (t *typeSeries) Activated()   { t.activations.Inc() }
func (t *typeSeries) Deactivated() { t.deactivations.Inc() }

// Apps gives the observer of an app's actor calls (callback.Options.Observer).
func (r *Registry) Apps(appID string) callback.AppObserver {
	return &appSeries{duration: r.appCallDuration.WithLabelValues(appID), errors: r.appCallErrors.WithLabelValues(appID)}
}

type appSeries struct {
	duration prometheus.Observer
	errors   prometheus.Counter
}

func (a *appSeries) Called(d time.Duration, status int, err error) {
	a.duration.Observe(d.Seconds())
	if err != nil || status >= 500 {
		a.errors.Inc()
	}
}

// reminderSeries are the reminder series of one actor type.
type reminderSeries struct {
	scheduled, fired, failed prometheus.Counter
	lateness                 prometheus.Observer
}

func (r *Registry) reminderSeriesOf(actorType string) *reminderSeries {
	r.mu.RLock()
	s := r.reminders[actorType]
	r.mu.RUnlock()
	if s != nil {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s = r.reminders[actorType]; s == nil {
		s = &reminderSeries{
			scheduled: r.remindersScheduled.WithLabelValues(actorType),
			fired:     r.remindersFired.WithLabelValues(actorType),
			failed:    r.remindersFailed.WithLabelValues(actorType),
			lateness:  r.reminderLateness.WithLabelValues(actorType),
		}
		r.reminders[actorType] = s
	}
	return s
}

// ReminderFired records a fire attempt (reminders.Config.Observe).
func (r *Registry) ReminderFired(f reminders.Fire) {
	s := r.reminderSeriesOf(f.ID.Type)
	s.lateness.Observe(max(f.Started.Sub(f.Due), 0).Seconds())
	if f.Err != nil {
		s.failed.Inc()
	} else {
		s.fired.Inc()
	}
}

// ReminderCreated records a reminder created (reminders.Config.ObserveCreate).
func (r *Registry) ReminderCreated(id actor.ID) { r.reminderSeriesOf(id.Type).scheduled.Inc() }

// StoreOp records one operation of the store named store.
func (r *Registry) StoreOp(store, op string, d time.Duration, failed bool) {
	r.storeDuration.WithLabelValues(store, op).Observe(d.Seconds())
	if failed {
		r.storeErrors.WithLabelValues(store, op).Inc()
	}
}
