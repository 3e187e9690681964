package boltstore

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/granaryhq/granary/statestore"
)

// Get returns the live item stored under key.
func (s *Store) Get(ctx context.Context, key string) (statestore.Item, error) {
	if err := s.enter(ctx, "get"); err != nil {
		return statestore.Item{}, err
	}
	defer s.life.RUnlock()
	var item statestore.Item
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		item, err = s.read(tx, key, s.clock.Now().UnixNano())
		return err
	})
	if err != nil {
		return statestore.Item{}, s.failKey("get", key, err)
	}
	if !item.Exists() {
		return statestore.Item{}, s.failKey("get", key, statestore.ErrNotFound)
	}
	return item, nil
}

// BulkGet returns one item per key, in the order of keys, all read from one
// snapshot.
func (s *Store) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	if err := s.enter(ctx, "bulk get"); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	items := make([]statestore.Item, len(keys))
	if len(keys) == 0 {
		return items, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		now := s.clock.Now().UnixNano()
		for i, key := range keys {
			var err error
			if items[i], err = s.read(tx, key, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.fail("bulk get", err)
	}
	return items, nil
}

// read returns the item of key, or an item with only Key set when the key is
// absent or expired.
func (s *Store) read(tx *bolt.Tx, key string, now int64) (statestore.Item, error) {
	v := tx.Bucket(kvBucket).Get([]byte(key))
	if v == nil {
		return statestore.Item{Key: key}, nil
	}
	r, err := decodeRecord(v)
	if err != nil {
		return statestore.Item{}, fmt.Errorf("key %q: %w", key, err)
	}
	if !r.live(now) {
		return statestore.Item{Key: key}, nil
	}
	return r.item(key), nil
}

// Scan returns up to limit live items of index whose keys sort after the key
// after, in key order. It seeks in the index's own bucket, so it costs the
// items it returns (plus expired ones not yet swept), not the size of the
// index. The members an index keeps under its key prefix
// (statestore.IndexKeyPrefix) have no entry there: Scan walks that prefix of
// the records and merges what it finds with the index's bucket, so those
// also cost the other records under the prefix (an actor's state beside its
// reminders).
func (s *Store) Scan(ctx context.Context, index, after string, limit int) ([]statestore.Item, error) {
	if limit < 0 {
		return nil, s.fail("scan", fmt.Errorf("index %q: negative limit %d", index, limit))
	}
	if err := s.enter(ctx, "scan"); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	items := []statestore.Item{}
	if limit == 0 || index == "" {
		return items, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		now := s.clock.Now().UnixNano()
		kv := tx.Bucket(kvBucket)
		byEntry := entryMembers{kv: kv}
		if b := tx.Bucket(idxBucket).Bucket([]byte(index)); b != nil {
			byEntry.c = b.Cursor()
		}
		byPrefix := keyOrderMembers{index: []byte(index)}
		if prefix, ok := statestore.IndexKeyPrefix(index); ok {
			byPrefix.c, byPrefix.prefix = kv.Cursor(), []byte(prefix)
			// Entries of members under the prefix, left by files written
			// before such members went without one, are found by the walk.
			byEntry.skip = byPrefix.prefix
		}
		ek, ev, err := byEntry.first([]byte(after))
		if err != nil {
			return err
		}
		pk, pv, err := byPrefix.first([]byte(after))
		if err != nil {
			return err
		}
		for len(items) < limit && (ek != nil || pk != nil) {
			var k, v []byte
			switch {
			case pk == nil || (ek != nil && bytes.Compare(ek, pk) < 0):
				k, v = ek, ev
				ek, ev, err = byEntry.next()
			default:
				k, v = pk, pv
				pk, pv, err = byPrefix.next()
			}
			if err != nil {
				return err
			}
			r, derr := decodeRecord(v)
			if derr != nil {
				return fmt.Errorf("key %q: %w", k, derr)
			}
			if r.live(now) {
				items = append(items, r.item(string(k)))
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.fail("scan", fmt.Errorf("index %q: %w", index, err))
	}
	return items, nil
}

// entryMembers walks the members an index's bucket holds, in key order,
// yielding each with its record. Keys under skip are passed over, as are
// entries whose record is gone.
type entryMembers struct {
	c    *bolt.Cursor // nil: the index has no bucket
	kv   *bolt.Bucket
	skip []byte
}

func (m *entryMembers) first(after []byte) (k, v []byte, err error) {
	if m.c == nil {
		return nil, nil, nil
	}
	k, _ = seekPast(m.c, after, after)
	return m.from(k)
}

func (m *entryMembers) next() (k, v []byte, err error) {
	k, _ = m.c.Next()
	return m.from(k)
}

func (m *entryMembers) from(k []byte) ([]byte, []byte, error) {
	for ; k != nil; k, _ = m.c.Next() {
		if m.skip != nil && bytes.HasPrefix(k, m.skip) {
			continue
		}
		if v := m.kv.Get(k); v != nil {
			return k, v, nil
		}
	}
	return nil, nil, nil
}

// keyOrderMembers walks the records under prefix, in key order, yielding
// those whose record names index.
type keyOrderMembers struct {
	c      *bolt.Cursor // nil: the index keeps no members under a prefix
	prefix []byte
	index  []byte
}

func (m *keyOrderMembers) first(after []byte) (k, v []byte, err error) {
	if m.c == nil {
		return nil, nil, nil
	}
	from := m.prefix
	if bytes.Compare(after, from) > 0 {
		from = after
	}
	k, v = seekPast(m.c, from, after)
	return m.from(k, v)
}

func (m *keyOrderMembers) next() (k, v []byte, err error) {
	k, v = m.c.Next()
	return m.from(k, v)
}

func (m *keyOrderMembers) from(k, v []byte) ([]byte, []byte, error) {
	for ; k != nil && bytes.HasPrefix(k, m.prefix); k, v = m.c.Next() {
		r, err := decodeRecord(v)
		if err != nil {
			return nil, nil, fmt.Errorf("key %q: %w", k, err)
		}
		if bytes.Equal(r.index, m.index) {
			return k, v, nil
		}
	}
	return nil, nil, nil
}

// seekPast moves c to the first key at or after from, passing over after
// itself: a scan page resumes strictly after the last key it returned.
func seekPast(c *bolt.Cursor, from, after []byte) (k, v []byte) {
	k, v = c.Seek(from)
	if k != nil && bytes.Equal(k, after) {
		k, v = c.Next()
	}
	return k, v
}
