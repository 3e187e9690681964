package boltstore

import (
	"context"
	"errors"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/granaryhq/granary/statestore"
)

// A write that panics fails alone, and the committer goes on serving.
func TestPanickingWriteFailsAlone(t *testing.T) {
	s := openTemp(t, Options{})
	err := s.commits.do(func(*bolt.Tx) error { panic("boom") })
	if !errors.Is(err, errWritePanicked) {
		t.Fatalf("panicking write: %v, want errWritePanicked", err)
	}
	mustTransact(t, s, put("after", "v"))
	mustGet(t, s, "after")
}

// Close commits what was queued before it and then stops the committer.
func TestCloseStopsTheCommitter(t *testing.T) {
	s := openTemp(t, Options{})
	mustTransact(t, s, put("k", "v"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.commits.done:
	default:
		t.Fatal("the committer runs on after Close")
	}
	if err := s.Transact(context.Background(), statestore.Txn{Ops: []statestore.Op{put("late", "v")}}); !errors.Is(err, statestore.ErrClosed) {
		t.Errorf("Transact after Close: %v, want ErrClosed", err)
	}
}
