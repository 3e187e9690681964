package reminders

import (
	"context"
	"errors"
	"strings"
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
		queued := 0
		for len(s.due) > 0 && s.due[0].next <= now {
			e := s.due.pop()
			if !s.claimLocked(e) {
				// Queued behind its type's fires in flight. Many may be due
				// at once: let the workers and writers in now and then.
				if queued++; queued%256 == 0 {
					s.mu.Unlock()
					s.mu.Lock()
				}
				continue
			}
			s.mu.Unlock()
			select {
			case s.work <- e:
			case <-s.stop:
				s.mu.Lock()
				s.handOnLocked(e)
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

// claimLocked takes a worker for e within its type's bound, or queues e
// behind the type's fires in flight and reports false. The scheduler thus
// never waits on a type at its bound: the due entries of other types are
// handed out meanwhile.
func (s *Service) claimLocked(e *entry) bool {
	typ := e.actorType()
	tw := s.busy[typ]
	if tw == nil {
		tw = &typeWorkers{}
		s.busy[strings.Clone(typ)] = tw // not a slice of e's key, which it would keep
	}
	if tw.held < s.cfg.WorkersPerType {
		tw.held++
		return true
	}
	tw.waiting = append(tw.waiting, e)
	return false
}

// handOnLocked ends a worker's fire of e: the worker stays with e's type
// and fires the type's next waiting entry, returned, or it is given back
// (nil). Waiting entries deleted or replaced meanwhile are skipped; when the
// service stops, the waiting ones stay as stored and fire after restart.
func (s *Service) handOnLocked(e *entry) *entry {
	tw := s.busy[e.actorType()]
	for len(tw.waiting) > 0 && !s.stopped {
		next := tw.waiting[0]
		tw.waiting[0] = nil
		tw.waiting = tw.waiting[1:]
		if !next.gone {
			return next
		}
	}
	tw.held--
	return nil
}

func (s *Service) worker() {
	defer s.workers.Done()
	for e := range s.work {
		for e != nil {
			e = s.fire(e)
		}
	}
}

// fire delivers one fire of e as a turn on its actor, then schedules what
// comes next: the next due time after a delivery, a retry after a failure.
// It returns the entry of e's type that the worker fires next, if any (see
// handOnLocked).
func (s *Service) fire(e *entry) *entry {
	s.mu.Lock()
	if e.gone {
		next := s.handOnLocked(e)
		s.mu.Unlock()
		return next
	}
	id, name := e.id(), e.name()
	due, fired, dataKey := e.due, e.fired, e.dataKey
	call := &actor.ReminderCall{Name: name, Data: e.data, DueTime: e.text.DueTime, Period: e.text.Period}
	s.mu.Unlock()
	owned, err := s.owned(s.ctx, id)
	if !owned && err == nil {
		s.mu.Lock()
		s.dropLocked(e)
		next := s.handOnLocked(e)
		s.mu.Unlock()
		return next
	}
	started := s.clock.Now()
	var cancel bool
	// A placement that cannot tell whether the silo owns the actor fails
	// the fire, which is retried like a failed delivery.
	if err == nil && dataKey {
		call.Data, err = s.readData(e, id, name)
		if errors.Is(err, errGone) {
			s.mu.Lock()
			next := s.handOnLocked(e)
			s.mu.Unlock()
			return next
		}
	}
	if err == nil {
		cancel, err = s.actors.Remind(s.ctx, id, call)
	}
	finished := s.clock.Now()
	if s.cfg.Observe != nil {
		s.cfg.Observe(Fire{ID: id, Name: name, Due: time.Unix(0, due), Started: started, Finished: finished, Err: err})
	}

	s.mu.Lock()
	s.firedLocked(e, id, name, due, fired, cancel, err, finished)
	next := s.handOnLocked(e)
	s.mu.Unlock()
	return next
}

// errGone is readData's answer for an entry replaced or deleted meanwhile.
var errGone = errors.New("reminder replaced or deleted")

// readData reads the data e keeps apart from its record. It holds the
// key's write lock, so the data is that of e's registration: a replacement
// or deletion commits either before the read, and then e is gone, or after.
// A failed read fails the fire, which is retried like a failed delivery.
func (s *Service) readData(e *entry, id actor.ID, name string) ([]byte, error) {
	lk := s.writeLock(e.key)
	lk.Lock()
	defer lk.Unlock()
	s.mu.Lock()
	gone := e.gone
	s.mu.Unlock()
	if gone {
		return nil, errGone
	}
	item, err := s.store.Get(s.ctx, e.dataKeyName())
	if err != nil {
		return nil, storeError("reading the data of", id, name, err)
	}
	return item.Value, nil
}

// firedLocked schedules what follows a fire of e that was due at due, after
// fired earlier deliveries, and returned cancel and err at finished.
func (s *Service) firedLocked(e *entry, id actor.ID, name string, due int64, fired int32, cancel bool, err error, finished time.Time) {
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
	case errors.Is(err, actor.ErrSuspended):
		// The silo may not run turns for a moment (a lapsed lease, a shard
		// locked for a table change) but still owns the actor: retry below.
		// Checked before ErrNotOwner, which a suspension also wraps.
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
// dropped from memory (it stays stored) and reported. A record registered
// before schedule.MinPeriod was enforced fires at that minimum (the load
// warned about it).
func (s *Service) specLocked(e *entry, id actor.ID) (schedule.Spec, bool) {
	t := e.text
	sp, err := schedule.ParseStored(time.Unix(0, e.registered), t.DueTime, t.Period, t.TTL)
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
