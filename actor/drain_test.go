package actor_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

// Each type's drain timeout bounds its own turns: a stuck turn of a type
// with a short drain timeout is aborted at that timeout, and its caller told
// the runtime closed, while another type's turns may run for their longer one.
func TestDrainTimeoutIsPerType(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt, err := actor.New(actor.Config{Store: memstore.New(), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		forever := make(chan struct{})
		rec := newRecorder()
		rec.handlers["stuck"] = func(ctx context.Context, _ *actor.Self, _ []byte) ([]byte, error) {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-forever:
				return nil, nil
			}
		}
		rec.register(t, rt, "Short", actor.TypeConfig{DrainTimeout: 2 * time.Second})
		rec.register(t, rt, "Long", actor.TypeConfig{DrainTimeout: 10 * time.Second})
		short, long := make(chan error, 1), make(chan error, 1)
		go func() { _, err := call(rt, context.Background(), "Short", "a", "stuck", ""); short <- err }()
		go func() { _, err := call(rt, context.Background(), "Long", "a", "stuck", ""); long <- err }()
		synctest.Wait()
		start := time.Now()
		closed := make(chan struct{})
		go func() { rt.Close(context.Background()); close(closed) }()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		select {
		case err := <-short:
			if !errors.Is(err, actor.ErrClosed) {
				t.Errorf("Short's stuck call: err = %v, want ErrClosed", err)
			}
		default:
			close(forever)
			t.Fatal("Short's stuck call was not aborted at its 2s drain timeout")
		}
		select {
		case err := <-long:
			close(forever)
			t.Fatalf("Long's call ended after 2s (%v), before its own 10s drain timeout", err)
		default:
		}
		time.Sleep(8 * time.Second)
		synctest.Wait()
		select {
		case err := <-long:
			if !errors.Is(err, actor.ErrClosed) {
				t.Errorf("Long's stuck call: err = %v, want ErrClosed", err)
			}
		default:
			close(forever)
			t.Fatal("Long's stuck call was not aborted at its 10s drain timeout")
		}
		<-closed
		if took := time.Since(start); took != 10*time.Second {
			t.Errorf("Close took %v, want the longest drain timeout, 10s", took)
		}
		close(forever)
	})
}

// slowDeactivator is a native actor whose deactivation waits for the test.
type slowDeactivator struct {
	release chan struct{}
	done    chan struct{}
}

func (s *slowDeactivator) Invoke(context.Context, string, []byte) ([]byte, error) { return nil, nil }

func (s *slowDeactivator) Deactivate(context.Context) error {
	<-s.release
	close(s.done)
	return nil
}

// The deactivation of an activation found fenced is part of the runtime's
// work: Close waits for it.
func TestCloseWaitsForFencedDeactivation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		rt, err := actor.New(actor.Config{Store: store, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		inst := &slowDeactivator{release: make(chan struct{}), done: make(chan struct{})}
		if err := rt.RegisterNative("T", func(*actor.Self) actor.NativeActor { return inst }, actor.TypeConfig{}); err != nil {
			t.Fatal(err)
		}
		id := actor.ID{Type: "T", ID: "a"}
		if _, err := call(rt, context.Background(), "T", "a", "m", ""); err != nil {
			t.Fatal(err)
		}
		takeShard(t, store, id)
		err = rt.Transact(context.Background(), id, []statestore.Op{{Kind: statestore.Put, Key: "k", Value: []byte("1")}})
		if !errors.Is(err, actor.ErrFenced) {
			t.Fatalf("transact: %v, want ErrFenced", err)
		}
		closed := make(chan struct{})
		go func() { rt.Close(context.Background()); close(closed) }()
		synctest.Wait()
		select {
		case <-closed:
			close(inst.release)
			t.Fatal("Close returned while the fenced activation was still being deactivated")
		default:
		}
		close(inst.release)
		<-closed
		select {
		case <-inst.done:
		default:
			t.Fatal("Close returned before the deactivation finished")
		}
	})
}

// abortableType is a non-native type whose calls end only when aborted, as
// an app's calls end when its connections are closed.
type abortableType struct {
	scriptedType
	aborted chan struct{}
	once    sync.Once
}

func (t *abortableType) AbortCalls() { t.once.Do(func() { close(t.aborted) }) }

// A turn of a non-native type (an app's) that is stuck past its drain
// timeout is aborted through the type (actor.CallAborter): its caller gets
// ErrClosed and Close returns at the drain timeout.
func TestDrainAbortsStuckAppTurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt, err := actor.New(actor.Config{Store: memstore.New(), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		typ := &abortableType{aborted: make(chan struct{})}
		typ.invoke = func(context.Context, actor.ID, *actor.Request) error {
			<-typ.aborted
			return errors.New("connection closed")
		}
		if err := rt.Register("App", typ, actor.TypeConfig{DrainTimeout: 3 * time.Second}); err != nil {
			t.Fatal(err)
		}
		result := make(chan error, 1)
		go func() {
			_, err := rt.Invoke(context.Background(), actor.ID{Type: "App", ID: "a"}, &actor.Request{Method: "hang"})
			result <- err
		}()
		synctest.Wait()
		start := time.Now()
		rt.Close(context.Background())
		if took := time.Since(start); took != 3*time.Second {
			t.Errorf("Close took %v, want the 3s drain timeout", took)
		}
		if err := <-result; !errors.Is(err, actor.ErrClosed) {
			t.Fatalf("stuck call: err = %v, want ErrClosed", err)
		}
	})
}
