package actor_test

import (
	"context"
	"testing"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

// Transact leaves the caller's operations as they were, so a caller may
// retry with the same slice.
func TestTransactDoesNotRewriteTheCallersOperations(t *testing.T) {
	store := memstore.New()
	rt := newRuntime(t, store, 0)
	rec := newRecorder()
	rec.register(t, rt, "T", actor.TypeConfig{})
	id := actor.ID{Type: "T", ID: "a"}
	if _, err := call(rt, context.Background(), "T", "a", "echo", ""); err != nil {
		t.Fatal(err)
	}
	ops := []statestore.Op{{Kind: statestore.Put, Key: "k", Value: []byte(`1`)}}
	for range 2 {
		if err := rt.Transact(context.Background(), id, ops); err != nil {
			t.Fatal(err)
		}
	}
	if ops[0].Key != "k" {
		t.Fatalf("the caller's operation key became %q", ops[0].Key)
	}
	if _, err := store.Get(context.Background(), statestore.ActorStateKey("T", "a", "k")); err != nil {
		t.Fatalf("state key: %v", err)
	}
	doubled := statestore.ActorStateKey("T", "a", statestore.ActorStateKey("T", "a", "k"))
	if _, err := store.Get(context.Background(), doubled); err == nil {
		t.Fatalf("the retry wrote %q", doubled)
	}
}
