package reminders

import (
	"context"
	"encoding/json"
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
// go in one transaction under its fence; a store that commits many
// transactions together gets them in large groups. Writes that fail for a
// reason other than fencing are kept for the next flush.
func (s *Service) flush(ctx context.Context) {
	s.mu.Lock()
	if len(s.dirty) == 0 {
		s.mu.Unlock()
		return
	}
	batch := s.dirty
	s.dirty = make(map[string]pendingWrite, len(batch))
	byActor := map[string][]string{} // actor key prefix → keys
	for key, w := range batch {
		prefix := key[:w.e.idEnd+1]
		byActor[prefix] = append(byActor[prefix], key)
	}
	s.mu.Unlock()
	groups := make([][]string, 0, len(byActor))
	for _, keys := range byActor {
		groups = append(groups, keys)
	}
	var failed sync.Once
	report := func(err error) {
		failed.Do(func() {
			s.log.Warn("writing reminder due times failed; will retry", "pending", len(batch), "err", err)
		})
	}
	if m, ok := s.store.(statestore.MultiTransactor); ok {
		s.flushTogether(ctx, m, groups, batch, report)
		return
	}
	sem := make(chan struct{}, s.cfg.FlushConcurrency)
	var wg sync.WaitGroup
	for _, keys := range groups {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			defer s.lockKeys(keys)()
			p, err := s.prepare(keys, batch)
			if err == nil && p != nil {
				err = s.settle(p, batch, s.commit(ctx, p))
			}
			if err != nil {
				report(err)
			}
		}()
	}
	wg.Wait()
}

// flushGroup is how many actors' transactions one TransactMany carries.
const flushGroup = 1024

// flushTogether commits the groups' transactions flushGroup at a time.
func (s *Service) flushTogether(ctx context.Context, m statestore.MultiTransactor, groups [][]string, batch map[string]pendingWrite, report func(error)) {
	for len(groups) > 0 {
		part := groups[:min(flushGroup, len(groups))]
		groups = groups[len(part):]
		var keys []string
		for _, g := range part {
			keys = append(keys, g...)
		}
		unlock := s.lockKeys(keys)
		var (
			ps   []*pendingWrites
			txns []statestore.Txn
		)
		for _, g := range part {
			p, err := s.prepare(g, batch)
			if err != nil {
				report(err)
				continue
			}
			if p == nil {
				continue
			}
			if p.fenceErr != nil {
				if err := s.settle(p, batch, p.fenceErr); err != nil {
					report(err)
				}
				continue
			}
			ps = append(ps, p)
			txns = append(txns, p.txn)
		}
		if len(txns) > 0 {
			for i, err := range m.TransactMany(ctx, txns) {
				if err := s.settle(ps[i], batch, err); err != nil {
					report(err)
				}
			}
		}
		unlock()
	}
}

// pendingWrites is the transaction that writes one actor's pending records.
type pendingWrites struct {
	id       actor.ID
	keys     []string // the keys it writes
	puts     []*entry // the entries it stores
	moved    []*entry // those whose inline data it moves to their data key
	txn      statestore.Txn
	fenceErr error // no claim could be had to fence the writes with
}

// prepare builds the transaction for the pending records of one actor that
// are still current; nil when none is. The keys' write locks are held.
func (s *Service) prepare(keys []string, batch map[string]pendingWrite) (*pendingWrites, error) {
	s.mu.Lock()
	p := &pendingWrites{}
	now := s.clock.Now()
	for _, key := range keys {
		w := batch[key]
		cur := s.entries[key]
		if w.delete && cur != nil || !w.delete && (w.e.gone || cur != w.e) {
			continue // re-registered, deleted or dropped since: obsolete
		}
		p.id = w.e.id()
		op := statestore.Op{Kind: statestore.Delete, Key: key, Index: indexOf(p.id)}
		if w.delete {
			p.txn.Ops = append(p.txn.Ops, op)
			if w.e.dataKey {
				p.txn.Ops = append(p.txn.Ops, statestore.Op{Kind: statestore.Delete, Key: w.e.dataKeyName()})
			}
		} else {
			// The data key, when there is one, is left as it is.
			rec := w.e.record()
			var move json.RawMessage
			if !rec.DataKey && len(rec.Data) > inlineData {
				// Stored inline before data was kept apart: this write
				// moves it to its own key.
				move, rec.Data, rec.DataKey = rec.Data, nil, true
			}
			var err error
			if op, err = s.putOp(p.id, key, &rec, now); err != nil {
				s.mu.Unlock()
				return nil, err
			}
			p.txn.Ops = append(p.txn.Ops, op)
			if move != nil {
				p.txn.Ops = append(p.txn.Ops, statestore.Op{Kind: statestore.Put, Key: w.e.dataKeyName(), Value: move, TTL: op.TTL})
				p.moved = append(p.moved, w.e)
			}
			p.puts = append(p.puts, w.e)
		}
		p.keys = append(p.keys, key)
	}
	s.mu.Unlock()
	if len(p.keys) == 0 {
		return nil, nil
	}
	fence, err := s.flushFence(p.id)
	if err != nil {
		p.fenceErr = err
		return p, nil
	}
	p.txn.Fence = fence
	return p, nil
}

func (s *Service) commit(ctx context.Context, p *pendingWrites) error {
	if p.fenceErr != nil {
		return p.fenceErr
	}
	return s.store.Transact(ctx, p.txn)
}

// settle handles the outcome of writing p: a fenced write means another
// silo owns the actor now, and its reminders; any other failure keeps the
// records pending for the next flush.
func (s *Service) settle(p *pendingWrites, batch map[string]pendingWrite, err error) error {
	if err == nil {
		if len(p.moved) > 0 {
			// The write locks are still held: nothing replaced these
			// entries since their data was moved, and their fires now
			// read it from the store.
			s.mu.Lock()
			for _, e := range p.moved {
				e.data, e.dataKey = nil, true
			}
			s.mu.Unlock()
		}
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(err, statestore.ErrFenced) || errors.Is(err, actor.ErrNotOwner) {
		for _, e := range p.puts {
			s.dropLocked(e)
		}
		return nil
	}
	for _, key := range p.keys {
		if _, newer := s.dirty[key]; !newer {
			s.dirty[key] = batch[key]
		}
	}
	return fmt.Errorf("writing %d reminder records of %s: %w", len(p.keys), p.id, err)
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
