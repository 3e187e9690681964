package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/granaryhq/granary/statestore"
)

// Transact applies txn atomically in a commit shared with concurrent calls.
// It returns once that commit is fsynced; the context is not consulted after
// the transaction has been queued.
func (s *Store) Transact(ctx context.Context, txn statestore.Txn) error {
	if err := txn.Validate(); err != nil {
		return s.fail("transact", err)
	}
	if err := checkSizes(txn); err != nil {
		return s.fail("transact", err)
	}
	if err := s.enter(ctx, "transact"); err != nil {
		return err
	}
	defer s.life.RUnlock()

	if len(txn.Ops) == 0 {
		if txn.Fence == nil {
			return nil
		}
		// Nothing to write: the fence check alone needs no commit.
		now := s.clock.Now().UnixNano()
		if err := s.db.View(func(tx *bolt.Tx) error { return checkFence(tx, txn.Fence, now) }); err != nil {
			return s.fail("transact", err)
		}
		return nil
	}

	if hasConditions(txn) {
		// A condition that fails against the latest committed state fails
		// now; refusing it here spares the shared commit.
		err := s.db.View(func(tx *bolt.Tx) error { return s.check(tx, txn) })
		if err != nil {
			return s.fail("transact", err)
		}
	}

	// The committer may run the function more than once (it re-runs a batch
	// when another write of it fails); every run starts from the state of
	// its own transaction and sets outcome afresh, so only the committed run
	// counts.
	var outcome error
	err := s.commits.do(func(tx *bolt.Tx) error {
		outcome = nil
		if hasConditions(txn) {
			if err := s.check(tx, txn); err != nil {
				if isRefusal(err) {
					// A refused caller must not fail the batch, which
					// would roll back and re-run everyone else.
					outcome = err
					return nil
				}
				return err
			}
		}
		return s.apply(tx, txn.Ops)
	})
	if err != nil {
		return s.fail("transact", err)
	}
	if outcome != nil {
		return s.fail("transact", outcome)
	}
	return nil
}

// hasConditions reports whether txn can be refused by the stored data.
func hasConditions(txn statestore.Txn) bool {
	if txn.Fence != nil {
		return true
	}
	for _, op := range txn.Ops {
		if op.ETag != "" || op.IfAbsent {
			return true
		}
	}
	return false
}

// isRefusal reports whether err is a failed condition or fence check rather than a
// failure of the store.
func isRefusal(err error) bool {
	return errors.Is(err, statestore.ErrETagMismatch) || errors.Is(err, statestore.ErrFenced)
}

func checkSizes(txn statestore.Txn) error {
	if txn.Fence != nil && len(txn.Fence.Key) > maxKeySize {
		return fmt.Errorf("fence key of %d bytes exceeds the limit of %d", len(txn.Fence.Key), maxKeySize)
	}
	for i, op := range txn.Ops {
		if len(op.Key) > maxKeySize {
			return fmt.Errorf("operation %d: key of %d bytes exceeds the limit of %d", i, len(op.Key), maxKeySize)
		}
		if len(op.Index) > bolt.MaxKeySize {
			return fmt.Errorf("operation %d: index name of %d bytes exceeds the limit of %d", i, len(op.Index), bolt.MaxKeySize)
		}
		if int64(len(op.Value))+int64(len(op.Index))+recordHeaderSize+16 > bolt.MaxValueSize {
			return fmt.Errorf("operation %d: value of %d bytes is too large", i, len(op.Value))
		}
	}
	return nil
}

// checkFence requires the live record at f.Key to hold exactly f.Record.
func checkFence(tx *bolt.Tx, f *statestore.FenceCheck, now int64) error {
	var found []byte
	if v := tx.Bucket(kvBucket).Get([]byte(f.Key)); v != nil {
		r, err := decodeRecord(v)
		if err != nil {
			return fmt.Errorf("fence %q: %w", f.Key, err)
		}
		if r.live(now) {
			found = r.value
		}
	}
	if found != nil && bytes.Equal(found, f.Record) {
		return nil
	}
	fe := &statestore.FencedError{Key: f.Key, Want: bytes.Clone(f.Record)}
	if found != nil {
		fe.Found = bytes.Clone(found)
	}
	return fe
}

// check evaluates the fence and the conditions of txn in tx without changing
// anything: each operation's condition against the state the earlier
// operations of txn leave, as apply will make it.
func (s *Store) check(tx *bolt.Tx, txn statestore.Txn) error {
	now := s.clock.Now().UnixNano()
	if txn.Fence != nil {
		if err := checkFence(tx, txn.Fence, now); err != nil {
			return err
		}
	}
	kv := tx.Bucket(kvBucket)
	next := kv.Sequence()
	// pending holds the ETag each key has after the operations so far, ""
	// for absent; it is needed only when a key occurs twice.
	var pending map[string]string
	if len(txn.Ops) > 1 {
		pending = make(map[string]string, len(txn.Ops))
	}
	for _, op := range txn.Ops {
		conditional := op.ETag != "" || op.IfAbsent
		have, seen := pending[op.Key]
		if !seen && conditional {
			if v := kv.Get([]byte(op.Key)); v != nil {
				r, err := decodeRecord(v)
				if err != nil {
					return fmt.Errorf("key %q: %w", op.Key, err)
				}
				if r.live(now) {
					have = formatETag(r.seq)
				}
			}
		}
		switch {
		case op.ETag != "" && op.ETag != have:
			return &statestore.ConditionError{Key: op.Key, Want: op.ETag, Have: orAbsent(have)}
		case op.ETag == "" && op.IfAbsent && have != "":
			return &statestore.ConditionError{Key: op.Key, Want: "absent", Have: have}
		}
		if pending != nil {
			if op.Kind == statestore.Put {
				next++
				pending[op.Key] = formatETag(next)
			} else {
				pending[op.Key] = ""
			}
		}
	}
	return nil
}

func orAbsent(etag string) string {
	if etag == "" {
		return "absent"
	}
	return etag
}

// apply performs checked operations in order.
func (s *Store) apply(tx *bolt.Tx, ops []statestore.Op) error {
	kv := tx.Bucket(kvBucket)
	now := s.clock.Now()
	for _, op := range ops {
		if s.applyHook != nil {
			if err := s.applyHook(op); err != nil {
				return err
			}
		}
		key := []byte(op.Key)
		var oldIndex []byte
		v := kv.Get(key)
		if v != nil {
			old, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("key %q: %w", op.Key, err)
			}
			oldIndex = bytes.Clone(old.index)
			if old.expires != 0 {
				if err := tx.Bucket(expBucket).Delete(expiryKey(old.expires, key)); err != nil {
					return err
				}
			}
			// The index entry stays when the put keeps the key in the same index.
			if len(oldIndex) > 0 && (op.Kind == statestore.Delete || string(oldIndex) != op.Index) {
				if err := leaveIndex(tx, oldIndex, key); err != nil {
					return err
				}
			}
		}
		if op.Kind == statestore.Delete {
			if v != nil {
				if err := kv.Delete(key); err != nil {
					return err
				}
			}
			continue
		}
		if len(oldIndex) == 0 || string(oldIndex) != op.Index {
			// A member under its index's key prefix needs no entry: the
			// record names its index, and Scan walks the prefix.
			if op.Index != "" && !statestore.UnderIndexPrefix(op.Index, op.Key) {
				if err := joinIndex(tx, []byte(op.Index), key); err != nil {
					return err
				}
			}
		}
		seq, err := kv.NextSequence()
		if err != nil {
			return err
		}
		r := record{seq: seq, index: []byte(op.Index), value: op.Value}
		if op.TTL > 0 {
			r.expires = now.Add(op.TTL).UnixNano()
			if err := tx.Bucket(expBucket).Put(expiryKey(r.expires, key), []byte{}); err != nil {
				return err
			}
		}
		if err := kv.Put(key, encodeRecord(r)); err != nil {
			return err
		}
	}
	return nil
}

func joinIndex(tx *bolt.Tx, index, key []byte) error {
	b, err := tx.Bucket(idxBucket).CreateBucketIfNotExists(index)
	if err != nil {
		return fmt.Errorf("index %q: %w", index, err)
	}
	return b.Put(key, []byte{})
}

// leaveIndex removes key from index, and the index when it is left empty.
func leaveIndex(tx *bolt.Tx, index, key []byte) error {
	idx := tx.Bucket(idxBucket)
	b := idx.Bucket(index)
	if b == nil {
		return nil
	}
	if err := b.Delete(key); err != nil {
		return err
	}
	if k, _ := b.Cursor().First(); k == nil {
		return idx.DeleteBucket(index)
	}
	return nil
}

var _ statestore.MultiTransactor = (*Store)(nil)

// TransactMany applies the transactions in one commit, in order: each sees
// the writes of those before it. It returns once that commit is fsynced.
func (s *Store) TransactMany(ctx context.Context, txns []statestore.Txn) []error {
	errs := make([]error, len(txns))
	invalid := make([]bool, len(txns))
	valid := 0
	for i, txn := range txns {
		if err := txn.Validate(); err != nil {
			errs[i], invalid[i] = s.fail("transact", err), true
		} else if err := checkSizes(txn); err != nil {
			errs[i], invalid[i] = s.fail("transact", err), true
		} else {
			valid++
		}
	}
	if valid == 0 {
		return errs
	}
	if err := s.enter(ctx, "transact"); err != nil {
		return failRest(errs, err)
	}
	defer s.life.RUnlock()
	// The function may run more than once (see Transact); each run records
	// its refusals afresh.
	err := s.commits.do(func(tx *bolt.Tx) error {
		for i, txn := range txns {
			if invalid[i] {
				continue
			}
			errs[i] = nil
			if hasConditions(txn) {
				if err := s.check(tx, txn); err != nil {
					if !isRefusal(err) {
						return err
					}
					errs[i] = s.fail("transact", err)
					continue
				}
			}
			if err := s.apply(tx, txn.Ops); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Nothing was committed: refusals recorded during the failed
		// attempt are replaced by the store's failure.
		for i := range txns {
			if !invalid[i] {
				errs[i] = s.fail("transact", err)
			}
		}
	}
	return errs
}

func failRest(errs []error, err error) []error {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
	return errs
}
