package reminders

import (
	"context"
	"errors"
	"sync"
	"time"

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
// or the deletion of one whose schedule is over. Writes that fail for a
// reason other than fencing are kept for the next flush.
func (s *Service) flush(ctx context.Context) {
	s.mu.Lock()
	if len(s.dirty) == 0 {
		s.mu.Unlock()
		return
	}
	batch := s.dirty
	s.dirty = make(map[string]pendingWrite, len(batch))
	s.mu.Unlock()

	sem := make(chan struct{}, s.cfg.FlushConcurrency)
	var wg sync.WaitGroup
	var failed sync.Once
	for key, w := range batch {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.write(ctx, key, w); err != nil {
				failed.Do(func() {
					s.log.Warn("writing reminder due times failed; will retry", "pending", len(batch), "err", err)
				})
			}
		}()
	}
	wg.Wait()
}

// write stores one pending record if it is still current.
func (s *Service) write(ctx context.Context, key string, w pendingWrite) error {
	lk := s.writeLock(key)
	lk.Lock()
	defer lk.Unlock()
	s.mu.Lock()
	cur := s.entries[key]
	if w.delete && cur != nil || !w.delete && (w.e.gone || cur != w.e) {
		// Re-registered, deleted or dropped since: the write is obsolete.
		s.mu.Unlock()
		return nil
	}
	rec := w.e.rec
	s.mu.Unlock()

	id := rec.id()
	tok, err := s.token(id)
	if err != nil {
		s.mu.Lock()
		if !w.delete {
			s.dropLocked(w.e)
		}
		s.mu.Unlock()
		return nil
	}
	op := statestore.Op{Kind: statestore.Delete, Key: key, Index: indexOf(id)}
	if !w.delete {
		if op, err = s.putOp(key, &rec, s.clock.Now()); err != nil {
			return err
		}
	}
	err = s.store.Transact(ctx, statestore.Txn{Fence: fenceOf(id, tok), Ops: []statestore.Op{op}})
	if err == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(err, statestore.ErrFenced) {
		// A newer activation elsewhere owns the actor and its reminders.
		if !w.delete {
			s.dropLocked(w.e)
		}
		return nil
	}
	if _, newer := s.dirty[key]; !newer {
		s.dirty[key] = w
	}
	return storeError("writing", id, rec.Name, err)
}
