package boltstore

import (
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
// items it returns (plus expired ones not yet swept), not the size of the index.
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
		members := tx.Bucket(idxBucket).Bucket([]byte(index))
		if members == nil {
			return nil
		}
		now := s.clock.Now().UnixNano()
		kv := tx.Bucket(kvBucket)
		c := members.Cursor()
		k, _ := c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, _ = c.Next()
		}
		for ; k != nil && len(items) < limit; k, _ = c.Next() {
			v := kv.Get(k)
			if v == nil {
				continue
			}
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("key %q: %w", k, err)
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
