package boltstore

import (
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/granaryhq/granary/statestore"
)

// indexEntries returns the member keys index's bucket holds.
func indexEntries(t *testing.T, s *Store, index string) []string {
	t.Helper()
	var keys []string
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(idxBucket).Bucket([]byte(index))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// A reminder record is found under its index's key prefix, so a put writes
// no index entry beside it: that entry used to cost a commit more pages
// than the record (5.3 pages written per reminder registration on a store
// of 100,000 reminders, 2.3 without it; BenchmarkTransactReminderShapeOn100k).
func TestMembersUnderTheIndexPrefixHaveNoEntry(t *testing.T) {
	s := openTemp(t, Options{})
	ctx := t.Context()
	index := statestore.ReminderIndex("T", statestore.ShardOf("T", "a"))
	reminder := statestore.ReminderKey("T", "a", "tick")
	elsewhere := "not-under-the-prefix"
	err := s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{
		{Kind: statestore.Put, Key: reminder, Value: []byte("r"), Index: index},
		{Kind: statestore.Put, Key: elsewhere, Value: []byte("e"), Index: index},
		{Kind: statestore.Put, Key: statestore.ActorStateKey("T", "a", "k"), Value: []byte("state")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := indexEntries(t, s, index); !slices.Equal(got, []string{elsewhere}) {
		t.Errorf("index entries = %q, want only %q", got, elsewhere)
	}
	items, err := s.Scan(ctx, index, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keysOf(items), []string{reminder, elsewhere}; !slices.Equal(got, want) {
		t.Errorf("Scan = %q, want %q", got, want)
	}
}

// Files written before members under the prefix went without an entry hold
// entries for them. Scan returns such a member once, and deleting it takes
// the entry away.
func TestEntriesOfEarlierFilesUnderThePrefix(t *testing.T) {
	s := openTemp(t, Options{})
	ctx := t.Context()
	index := statestore.ReminderIndex("T", statestore.ShardOf("T", "a"))
	var keys []string
	for _, name := range []string{"r1", "r2", "r3"} {
		k := statestore.ReminderKey("T", "a", name)
		keys = append(keys, k)
		if err := s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{{Kind: statestore.Put, Key: k, Value: []byte(name), Index: index}}}); err != nil {
			t.Fatal(err)
		}
	}
	// The entries an earlier version wrote.
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, k := range keys {
			if err := joinIndex(tx, []byte(index), []byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 2, 10} {
		var got []string
		after := ""
		for {
			items, err := s.Scan(ctx, index, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, keysOf(items)...)
			if len(items) < limit {
				break
			}
			after = items[len(items)-1].Key
		}
		if !slices.Equal(got, keys) {
			t.Errorf("limit %d: Scan = %q, want %q", limit, got, keys)
		}
	}
	if err := s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{{Kind: statestore.Delete, Key: keys[1], Index: index}}}); err != nil {
		t.Fatal(err)
	}
	if got, want := indexEntries(t, s, index), []string{keys[0], keys[2]}; !slices.Equal(got, want) {
		t.Errorf("after a delete, index entries = %q, want %q", got, want)
	}
}

func keysOf(items []statestore.Item) []string {
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = it.Key
	}
	return keys
}
