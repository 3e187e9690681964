package reminders

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore"
)

// flushLoop writes the records of fired reminders every FlushInterval.
func (s *Service) flushLoop() {
	defer s.sched.Done()
	t := s.clock.NewTimer(s.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C():
		}
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		s.flush(ctx)
		cancel()
		t.Reset(s.cfg.FlushInterval)
	}
}

// flush writes every pending record: the next due time of a fired reminder,
// or the deletion of one whose schedule is over. The records of one actor
// go in one transaction under its fence. Writes that fail for a reason
// other than fencing are kept for the next flush.
func (s *Service) flush(ctx context.Context) {
	s.mu.Lock()
	if len(s.dirty) == 0 {
		s.mu.Unlock()
		return
	}
	batch := s.dirty
	s.dirty = make(map[string]pendingWrite, len(batch))
	groups := map[string][]string{} // actor key prefix → keys
	for key, w := range batch {
		prefix := key[:w.e.idEnd+1]
		groups[prefix] = append(groups[prefix], key)
	}
	s.mu.Unlock()

	sem := make(chan struct{}, s.cfg.FlushConcurrency)
	var wg sync.WaitGroup
	var failed sync.Once
	for _, keys := range groups {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.write(ctx, keys, batch); err != nil {
				failed.Do(func() {
					s.log.Warn("writing reminder due times failed; will retry", "pending", len(batch), "err", err)
				})
			}
		}()
	}
	wg.Wait()
}

// write stores the pending records of one actor that are still current.
func (s *Service) write(ctx context.Context, keys []string, batch map[string]pendingWrite) error {
	defer s.lockKeys(keys)()
	s.mu.Lock()
	var (
		ops     []statestore.Op
		written []string
		puts    []*entry
		id      actor.ID
		now     = s.clock.Now()
	)
	for _, key := range keys {
		w := batch[key]
		cur := s.entries[key]
		if w.delete && cur != nil || !w.delete && (w.e.gone || cur != w.e) {
			continue // re-registered, deleted or dropped since: obsolete
		}
		id = w.e.id()
		op := statestore.Op{Kind: statestore.Delete, Key: key, Index: indexOf(id)}
		if !w.delete {
			rec := w.e.record()
			var err error
			if op, err = s.putOp(id, key, &rec, now); err != nil {
				s.mu.Unlock()
				return err
			}
			puts = append(puts, w.e)
		}
		ops = append(ops, op)
		written = append(written, key)
	}
	s.mu.Unlock()
	if len(ops) == 0 {
		return nil
	}
	tok, err := s.token(id)
	if err == nil {
		err = s.store.Transact(ctx, statestore.Txn{Fence: fenceOf(id, tok), Ops: ops})
	}
	if err == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(err, statestore.ErrFenced) || errors.Is(err, actor.ErrNotOwner) {
		// Another silo owns the actor now, and its reminders.
		for _, e := range puts {
			s.dropLocked(e)
		}
		return nil
	}
	for _, key := range written {
		if _, newer := s.dirty[key]; !newer {
			s.dirty[key] = batch[key]
		}
	}
	return fmt.Errorf("writing %d reminder records of %s: %w", len(written), id, err)
}

// lockKeys takes the write locks of keys in a fixed order (several keys may
// share one) and returns the function that releases them.
func (s *Service) lockKeys(keys []string) func() {
	idx := make([]int, 0, len(keys))
	for _, k := range keys {
		idx = append(idx, s.writeLockIndex(k))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		s.writeLocks[i].Lock()
	}
	return func() {
		for _, i := range idx {
			s.writeLocks[i].Unlock()
		}
	}
}
