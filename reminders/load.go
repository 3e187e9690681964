package reminders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/granaryhq/granary/reminders/schedule"
	"github.com/granaryhq/granary/statestore"
)

// scanPage is how many records one index scan returns.
const scanPage = 1000

// typeChanged is the runtime's type watcher: it queues the change for the
// loader, in order, without blocking.
func (s *Service) typeChanged(name string, hosted bool) {
	kind := typeUnhosted
	if hosted {
		kind = typeHosted
	}
	s.queue(typeEvent{kind: kind, name: name})
}

// PlacementChanged tells the service that the placement table changed: it
// stops firing the reminders of actors this silo no longer owns and loads
// those of actors it now owns. It returns at once; the work is done in the
// background, in order with type changes.
func (s *Service) PlacementChanged() {
	s.queue(typeEvent{kind: placementChanged})
}

func (s *Service) queue(ev typeEvent) {
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.mu.Unlock()
	select {
	case s.loadWake <- struct{}{}:
	default:
	}
}

// loadLoop loads the reminders of types as they become hosted and forgets
// them when they stop being hosted.
func (s *Service) loadLoop() {
	defer s.sched.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.loadWake:
		}
		for {
			s.mu.Lock()
			if len(s.events) == 0 {
				s.mu.Unlock()
				break
			}
			ev := s.events[0]
			s.events = s.events[1:]
			s.mu.Unlock()
			switch ev.kind {
			case placementChanged:
				s.rebalance()
			case typeHosted:
				s.hosted[ev.name] = true
				if !s.cfg.ByShard {
					s.load(ev.name)
				}
			case typeUnhosted:
				delete(s.hosted, ev.name)
				s.forget(ev.name)
			}
		}
	}
}

// forget drops the scheduled reminders of a type that is no longer hosted.
// Their records stay stored.
func (s *Service) forget(actorType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.entries {
		if e.key[len("actor{"):e.typeEnd] == actorType {
			s.dropLocked(e)
			n++
		}
	}
	if n > 0 {
		s.log.Info("reminders of an unhosted type unscheduled", "type", actorType, "reminders", n)
	}
}

// rebalance drops the reminders of actors this silo no longer owns, then
// loads every hosted type again: the load skips what is already scheduled
// and picks up the reminders of actors that moved here.
func (s *Service) rebalance() {
	s.mu.Lock()
	all := make([]*entry, 0, len(s.entries))
	for _, e := range s.entries {
		all = append(all, e)
	}
	s.mu.Unlock()
	var lost []*entry
	for _, e := range all {
		// A shard the placement cannot tell about now keeps its
		// reminders until it can.
		if owned, err := s.owned(s.ctx, e.id()); !owned && err == nil {
			lost = append(lost, e)
		}
	}
	dropped := 0
	s.mu.Lock()
	for _, e := range lost {
		if !e.gone {
			s.dropLocked(e)
			dropped++
		}
	}
	s.mu.Unlock()
	if dropped > 0 {
		s.log.Info("placement changed: reminders of actors owned elsewhere unscheduled", "reminders", dropped)
	}
	for name := range s.hosted {
		if s.actors.Hosts(name) {
			s.load(name)
		}
	}
}

// load schedules the stored reminders of a type that this silo owns. It
// scans the type's index buckets; a key created, replaced or deleted while
// the load runs keeps what that call did. It retries a failing store until
// it succeeds, the type is no longer hosted, or the service stops.
func (s *Service) load(actorType string) {
	start := s.clock.Now()
	s.mu.Lock()
	s.loading[actorType] = map[string]bool{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.loading, actorType)
		s.mu.Unlock()
	}()
	backoff := s.cfg.RetryBackoff
	for {
		loaded, overdue, err := s.loadOnce(actorType)
		if err == nil {
			// A type without reminders is logged at debug level: an app
			// may host many types, most of them without any.
			level := slog.LevelInfo
			if loaded == 0 {
				level = slog.LevelDebug
			}
			s.log.Log(s.ctx, level, "reminders loaded", "type", actorType, "reminders", loaded, "overdue", overdue,
				"took", s.clock.Now().Sub(start).Round(time.Millisecond))
			return
		}
		if errors.Is(err, errLoadAbandoned) {
			return
		}
		s.log.Warn("loading reminders failed; retrying", "type", actorType, "retryIn", backoff, "err", err)
		t := s.clock.NewTimer(backoff)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C():
		}
		backoff = min(2*backoff, s.cfg.MaxRetryBackoff)
	}
}

var errLoadAbandoned = errors.New("reminder load abandoned")

func (s *Service) loadOnce(actorType string) (loaded, overdue int64, err error) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var (
		next, nLoaded, nOverdue atomic.Int64
		wg                      sync.WaitGroup
		errOnce                 sync.Once
		firstErr                error
	)
	now := s.clock.Now().UnixNano()
	for range s.cfg.LoadConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && s.actors.Hosts(actorType) {
				b := int(next.Add(1) - 1)
				if b >= statestore.ReminderBuckets {
					return
				}
				n, late, err := s.loadBucket(ctx, actorType, b, now)
				nLoaded.Add(n)
				nOverdue.Add(late)
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-s.stop:
		return 0, 0, errLoadAbandoned
	default:
	}
	if !s.actors.Hosts(actorType) {
		return 0, 0, errLoadAbandoned
	}
	return nLoaded.Load(), nOverdue.Load(), firstErr
}

// loadBucket schedules the reminders of one index bucket of a type.
func (s *Service) loadBucket(ctx context.Context, actorType string, bucket int, now int64) (loaded, overdue int64, err error) {
	index := statestore.ReminderIndex(actorType, bucket)
	after := ""
	for {
		items, err := s.store.Scan(ctx, index, after, scanPage)
		if err != nil {
			return loaded, overdue, fmt.Errorf("scanning %s: %w", index, err)
		}
		for _, it := range items {
			rec, err := decodeRecord(it.Value)
			var e *entry
			if err == nil {
				e, err = newEntry(it.Key, &rec)
			}
			if err != nil || e.id().Type != actorType {
				s.log.Error("unreadable reminder record skipped", "key", it.Key, "err", err)
				continue
			}
			owned, err := s.owned(ctx, e.id())
			if err != nil {
				return loaded, overdue, fmt.Errorf("claiming the shard of %s: %w", e.id(), err)
			}
			if !owned {
				continue
			}
			if belowMinimum(rec.Registered, rec.Period) {
				s.log.Warn("stored reminder has a period below the minimum; it fires at the minimum instead",
					"actor", e.id().String(), "reminder", e.name(), "period", rec.Period, "minimum", schedule.MinPeriod)
			}
			s.mu.Lock()
			if s.loading[actorType][it.Key] || s.entries[it.Key] != nil || s.stopped {
				s.mu.Unlock()
				continue
			}
			s.entries[it.Key] = e
			s.pushLocked(e)
			s.mu.Unlock()
			loaded++
			if rec.Next < now {
				overdue++
			}
		}
		if len(items) < scanPage {
			return loaded, overdue, nil
		}
		after = items[len(items)-1].Key
	}
}
