package reminders

import (
	"context"
	"errors"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/reminders/schedule"
)

// schedule hands due entries to the workers. An entry being fired is out of
// the heap; the worker puts it back with its next due time.
func (s *Service) schedule() {
	defer s.sched.Done()
	var t interface {
		C() <-chan time.Time
		Stop() bool
		Reset(time.Duration) bool
	}
	for {
		now := s.clock.Now().UnixNano()
		s.mu.Lock()
		for len(s.due) > 0 && s.due[0].next <= now {
			e := s.due.pop()
			s.mu.Unlock()
			select {
			case s.work <- e:
			case <-s.stop:
				s.mu.Lock()
				if !e.gone {
					s.due.push(e)
				}
				s.mu.Unlock()
				return
			}
			s.mu.Lock()
		}
		wait := time.Duration(-1)
		if len(s.due) > 0 {
			wait = time.Duration(s.due[0].next - now)
		}
		s.mu.Unlock()

		var timeout <-chan time.Time
		if wait >= 0 {
			if t == nil {
				t = s.clock.NewTimer(wait)
			} else {
				t.Reset(wait)
			}
			timeout = t.C()
		}
		select {
		case <-timeout:
		case <-s.wake:
		case <-s.stop:
			if t != nil {
				t.Stop()
			}
			return
		}
		if t != nil && timeout != nil && !t.Stop() {
			// The timer fired while we were woken otherwise: drain it so the
			// next Reset starts clean.
			select {
			case <-t.C():
			default:
			}
		}
	}
}

func (s *Service) worker() {
	defer s.workers.Done()
	for e := range s.work {
		s.fire(e)
	}
}

// fire delivers one fire of e as a turn on its actor, then schedules what
// comes next: the next due time after a delivery, a retry after a failure.
func (s *Service) fire(e *entry) {
	s.mu.Lock()
	if e.gone {
		s.mu.Unlock()
		return
	}
	id, name := e.id(), e.name()
	due, fired := e.due, e.fired
	call := &actor.ReminderCall{Name: name, Data: e.data, DueTime: e.text.DueTime, Period: e.text.Period}
	s.mu.Unlock()
	if _, owned := s.cfg.Placement.Owns(id); !owned {
		s.mu.Lock()
		s.dropLocked(e)
		s.mu.Unlock()
		return
	}
	started := s.clock.Now()
	cancel, err := s.rt.Remind(s.ctx, id, call)
	finished := s.clock.Now()
	if s.cfg.Observe != nil {
		s.cfg.Observe(Fire{ID: id, Name: name, Due: time.Unix(0, due), Started: started, Finished: finished, Err: err})
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if e.gone {
		return
	}
	if err != nil {
		s.failedLocked(e, id, err, finished)
		return
	}
	e.tries = 0
	if cancel {
		s.log.Info("reminder cancelled by its actor", "actor", id.String(), "reminder", name)
		s.finishLocked(e)
		return
	}
	sp, ok := s.specLocked(e, id)
	if !ok {
		return
	}
	fired++
	next, skipped, more := sp.NextFire(int(fired), time.Unix(0, due), finished)
	if skipped > 0 {
		s.log.Info("reminder caught up: missed fires were delivered as one",
			"actor", id.String(), "reminder", name, "missed", skipped, "due", time.Unix(0, due).UTC())
	}
	if !more {
		s.finishLocked(e)
		return
	}
	e.fired = fired
	e.due = next.UnixNano()
	e.next = e.due
	s.dirty[e.key] = pendingWrite{e: e}
	if !s.stopped {
		s.pushLocked(e)
	}
}

// failedLocked schedules a retry of a failed fire, or after MaxRetries moves
// a periodic reminder on to its next due time. A one-shot reminder is never
// given up: it is retried every MaxRetryBackoff.
func (s *Service) failedLocked(e *entry, id actor.ID, err error, now time.Time) {
	switch {
	case errors.Is(err, actor.ErrTypeNotHosted):
		// The type went away; its reminders stay stored for whoever hosts it.
		s.dropLocked(e)
		return
	case errors.Is(err, actor.ErrClosed), errors.Is(err, context.Canceled) && s.stopped:
		// Shutting down: the stored due time stands and fires after restart.
		return
	case errors.Is(err, actor.ErrFenced), errors.Is(err, actor.ErrNotOwner):
		// Another silo owns the actor now and fires its reminders.
		s.dropLocked(e)
		return
	}
	if s.stopped {
		return
	}
	name := e.name()
	e.tries++
	if int(e.tries) <= s.cfg.MaxRetries {
		delay := s.cfg.RetryBackoff << (e.tries - 1)
		if delay > s.cfg.MaxRetryBackoff || delay <= 0 {
			delay = s.cfg.MaxRetryBackoff
		}
		s.log.Warn("reminder fire failed; retrying", "actor", id.String(), "reminder", name,
			"attempt", e.tries, "retryIn", delay, "err", err)
		e.next = now.Add(delay).UnixNano()
		s.pushLocked(e)
		return
	}
	e.tries = 0
	sp, ok := s.specLocked(e, id)
	if !ok {
		return
	}
	if sp.Every.IsZero() {
		s.log.Error("one-shot reminder keeps failing; it stays registered and is retried",
			"actor", id.String(), "reminder", name, "retryIn", s.cfg.MaxRetryBackoff, "err", err)
		e.next = now.Add(s.cfg.MaxRetryBackoff).UnixNano()
		s.pushLocked(e)
		return
	}
	next, _ := sp.Every.NextAfter(time.Unix(0, e.due), now)
	if next.IsZero() || sp.Expired(next) {
		s.log.Error("reminder failed and its schedule has ended; deleting it", "actor", id.String(), "reminder", name, "err", err)
		s.finishLocked(e)
		return
	}
	s.log.Error("reminder fire failed after retries; it stays registered and fires at its next due time",
		"actor", id.String(), "reminder", name, "retries", s.cfg.MaxRetries, "next", next.UTC(), "err", err)
	e.due = next.UnixNano()
	e.next = e.due
	s.dirty[e.key] = pendingWrite{e: e}
	s.pushLocked(e)
}

// specLocked rebuilds e's schedule; a record that no longer parses is
// dropped from memory (it stays stored) and reported.
func (s *Service) specLocked(e *entry, id actor.ID) (schedule.Spec, bool) {
	t := e.text
	sp, err := schedule.Parse(time.Unix(0, e.registered), t.DueTime, t.Period, t.TTL)
	if err != nil {
		s.log.Error("stored reminder has a schedule that does not parse; not firing it", "actor", id.String(), "reminder", e.name(), "err", err)
		s.dropLocked(e)
		return schedule.Spec{}, false
	}
	return sp, true
}

// finishLocked ends a reminder whose schedule is over (or that its actor
// cancelled): it is forgotten now and its record deleted by the next flush.
func (s *Service) finishLocked(e *entry) {
	s.dropLocked(e)
	s.dirty[e.key] = pendingWrite{e: e, delete: true}
}
