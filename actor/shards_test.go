package actor_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore"
)

// When placement moves a shard away, DeactivateShards lets the running turn
// of its actor finish (DrainRebalanced) or not, and the calls queued behind
// that turn never run here: each is answered ErrNotOwner, which sends it to
// the actor's new owner.
func TestDeactivateShardsSendsQueuedCallsAway(t *testing.T) {
	for _, drain := range []bool{true, false} {
		name := "without drain"
		if drain {
			name = "with drain"
		}
		t.Run(name, func(t *testing.T) {
			rt, p, store, rec := claimed(t)
			id := actor.ID{Type: "T", ID: "a"}
			claimShardOf(t, store, id, claimOne)
			started, release := make(chan struct{}), make(chan struct{})
			var queuedRan atomic.Int64
			rec.handlers["slow"] = func(ctx context.Context, _ *actor.Self, body []byte) ([]byte, error) {
				close(started)
				select {
				case <-release:
				case <-ctx.Done():
				}
				return body, nil
			}
			rec.handlers["queued"] = func(context.Context, *actor.Self, []byte) ([]byte, error) {
				queuedRan.Add(1)
				return nil, nil
			}
			rec.register(t, rt, "T", actor.TypeConfig{DrainRebalanced: drain, DrainTimeout: 10 * time.Second})

			slowErr := make(chan error, 1)
			go func() {
				_, err := call(rt, context.Background(), "T", "a", "slow", "x")
				slowErr <- err
			}()
			<-started
			const queued = 4
			var wg sync.WaitGroup
			errs := make([]error, queued)
			for i := range queued {
				wg.Go(func() { _, errs[i] = call(rt, context.Background(), "T", "a", "queued", "") })
			}
			time.Sleep(20 * time.Millisecond) // let them queue behind the slow turn

			p.away.Store(true)
			done := make(chan struct{})
			go func() {
				rt.DeactivateShards(context.Background(), "T", []int{statestore.ShardOf("T", "a")})
				close(done)
			}()
			if drain {
				select {
				case <-done:
					t.Fatal("DeactivateShards returned while the actor's turn ran, with DrainRebalanced set")
				case <-time.After(100 * time.Millisecond):
				}
				close(release)
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("DeactivateShards did not return")
			}
			if !drain {
				close(release)
			}
			wg.Wait()
			for i, err := range errs {
				if !errors.Is(err, actor.ErrNotOwner) {
					t.Errorf("queued call %d: %v, want ErrNotOwner", i, err)
				}
			}
			if n := queuedRan.Load(); n != 0 {
				t.Errorf("%d queued calls ran here after the shard moved away", n)
			}
			if err := <-slowErr; drain && err != nil {
				t.Errorf("the running turn, drained: %v, want it to finish", err)
			}
			if rt.IsActive(id) {
				t.Error("the actor is still active after DeactivateShards returned")
			}
		})
	}
}
