package boltstore

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/granaryhq/granary/internal/clock"
)

// sweepLoop deletes expired keys every SweepInterval until Close.
func (s *Store) sweepLoop(timer clock.Timer) {
	defer close(s.sweepDone)
	for {
		select {
		case <-s.stopSweep:
			timer.Stop()
			return
		case <-timer.C():
		}
		n, err := s.sweep()
		if err != nil {
			s.log.Warn("boltstore: deleting expired keys failed", "path", s.path, "err", err)
		}
		timer.Reset(s.opts.SweepInterval)
		if s.swept != nil {
			select {
			case s.swept <- n:
			case <-s.stopSweep:
				timer.Stop()
				return
			}
		}
	}
}

// sweep deletes every key expired by now, with its index entry, in
// transactions of at most sweepChunk keys, and returns how many it deleted.
func (s *Store) sweep() (int, error) {
	total := 0
	for {
		now := s.clock.Now().UnixNano()
		due := false
		err := s.db.View(func(tx *bolt.Tx) error {
			k, _ := tx.Bucket(expBucket).Cursor().First()
			due = k != nil && expiryDue(k, now)
			return nil
		})
		if err != nil || !due {
			return total, err
		}
		var n int
		var more bool
		err = s.commits.do(func(tx *bolt.Tx) error {
			var err error
			n, more, err = sweepChunkOf(tx, now)
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		select {
		case <-s.stopSweep:
			return total, nil
		default:
		}
		if !more {
			return total, nil
		}
	}
}

// expiryDue reports whether the exp bucket key k is due at now. Malformed
// keys count as due, so that the sweeper removes them.
func expiryDue(k []byte, now int64) bool {
	expires, _, ok := splitExpiryKey(k)
	return !ok || expires <= now
}

// sweepChunkOf deletes up to sweepChunk keys expired at now and reports
// whether more remain. It re-reads everything from tx, so bbolt may run it
// more than once.
func sweepChunkOf(tx *bolt.Tx, now int64) (n int, more bool, err error) {
	exp := tx.Bucket(expBucket)
	var due [][]byte
	c := exp.Cursor()
	for k, _ := c.First(); k != nil && expiryDue(k, now); k, _ = c.Next() {
		if len(due) == sweepChunk {
			more = true
			break
		}
		due = append(due, bytes.Clone(k))
	}
	kv := tx.Bucket(kvBucket)
	for _, k := range due {
		if err := exp.Delete(k); err != nil {
			return 0, false, err
		}
		expires, key, ok := splitExpiryKey(k)
		if !ok {
			continue
		}
		v := kv.Get(key)
		if v == nil {
			continue
		}
		r, err := decodeRecord(v)
		if err != nil {
			return 0, false, fmt.Errorf("key %q: %w", key, err)
		}
		// Only the version this entry was made for; a later put without
		// TTL has no entry and stays.
		if r.expires != expires || r.live(now) {
			continue
		}
		if len(r.index) > 0 {
			if err := leaveIndex(tx, bytes.Clone(r.index), key); err != nil {
				return 0, false, err
			}
		}
		if err := kv.Delete(key); err != nil {
			return 0, false, err
		}
		n++
	}
	return n, more, nil
}
