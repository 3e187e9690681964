package actor_test

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore"
)

// scriptedType is a non-native type (like an app's) whose method calls run a
// function of the test; it records the reentrancy IDs it is given.
type scriptedType struct {
	mu     sync.Mutex
	seen   []string
	invoke func(ctx context.Context, id actor.ID, req *actor.Request) error
}

func (s *scriptedType) Activate(_ context.Context, id actor.ID, _ statestore.Claim) (actor.Instance, error) {
	return &scriptedInstance{t: s, id: id}, nil
}

type scriptedInstance struct {
	t  *scriptedType
	id actor.ID
}

func (in *scriptedInstance) Invoke(ctx context.Context, req *actor.Request) (*actor.Response, error) {
	in.t.mu.Lock()
	in.t.seen = append(in.t.seen, req.ReentrancyID)
	in.t.mu.Unlock()
	if in.t.invoke != nil {
		if err := in.t.invoke(ctx, in.id, req); err != nil {
			return nil, err
		}
	}
	return &actor.Response{Status: 200}, nil
}
func (*scriptedInstance) Remind(context.Context, *actor.ReminderCall) (bool, error) {
	return false, nil
}
func (*scriptedInstance) Timer(context.Context, *actor.TimerCall) error { return nil }
func (*scriptedInstance) Deactivate(context.Context) error              { return nil }

func (s *scriptedType) Seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// Reentrancy IDs are random: a client that saw one cannot compute the ID of
// a turn running now and join it. (They were a start time and a counter, and
// a client sending "the next one" entered a running turn.)
func TestChainIDsCannotBeGuessed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, nil, time.Hour)
		release := make(chan struct{})
		typ := &scriptedType{invoke: func(_ context.Context, _ actor.ID, req *actor.Request) error {
			if req.Method == "block" {
				<-release
			}
			return nil
		}}
		if err := rt.Register("R", typ, actor.TypeConfig{Reentrancy: true}); err != nil {
			t.Fatal(err)
		}
		id := actor.ID{Type: "R", ID: "a"}
		invoke := func(ctx context.Context, method string) error {
			resp, err := rt.Invoke(ctx, id, &actor.Request{Method: method})
			if err == nil {
				resp.Release()
			}
			return err
		}
		if err := invoke(context.Background(), "look"); err != nil {
			t.Fatal(err)
		}
		go invoke(context.Background(), "block")
		synctest.Wait()
		seen := typ.Seen()
		observed, running := seen[0], seen[1]
		// The guess a client could make from a counter-based ID.
		guess := observed + "-x"
		if i := strings.LastIndexByte(observed, '-'); i >= 0 {
			if n, err := strconv.ParseUint(observed[i+1:], 36, 64); err == nil {
				guess = observed[:i+1] + strconv.FormatUint(n+1, 36)
			}
		}
		joined := make(chan error, 1)
		go func() { joined <- invoke(actor.WithCallChain(context.Background(), guess), "look") }()
		synctest.Wait()
		select {
		case err := <-joined:
			close(release)
			t.Fatalf("a call with the guessed ID %q entered the running turn %q (err %v)", guess, running, err)
		default:
		}
		if n := rt.QueueLength(id); n != 1 {
			t.Fatalf("queue length %d, want the guessed call waiting", n)
		}
		close(release)
		if err := <-joined; err != nil {
			t.Fatal(err)
		}
		// Every chain gets a fresh, well-formed random ID.
		for range 200 {
			if err := invoke(context.Background(), "look"); err != nil {
				t.Fatal(err)
			}
		}
		unique := map[string]bool{}
		for _, s := range typ.Seen() {
			if s == guess {
				continue
			}
			if !uuidV4.MatchString(s) {
				t.Fatalf("reentrancy ID %q is not a random (version 4) UUID", s)
			}
			if unique[s] {
				t.Fatalf("reentrancy ID %q given twice", s)
			}
			unique[s] = true
		}
	})
}

// A cycle through actors whose calls carry no call chain (app actors without
// reentrancy) cannot be detected at once; when it times out, the error says
// that a call cycle is the likely cause.
func TestTurnWaitTimeoutNamesACallCycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, nil, 3*time.Second)
		typ := &scriptedType{}
		typ.invoke = func(_ context.Context, id actor.ID, req *actor.Request) error {
			if req.Method != "ping" {
				return nil
			}
			next := actor.ID{Type: "A", ID: "b"}
			if id.ID == "b" {
				next = actor.ID{Type: "A", ID: "a"}
			}
			// A fresh context: an app's callback into the gateway carries no chain.
			resp, err := rt.Invoke(context.Background(), next, &actor.Request{Method: "ping"})
			if err != nil {
				return err
			}
			resp.Release()
			return nil
		}
		if err := rt.Register("A", typ, actor.TypeConfig{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err := rt.Invoke(context.Background(), actor.ID{Type: "A", ID: "a"}, &actor.Request{Method: "ping"})
		if !errors.Is(err, actor.ErrTurnTimeout) {
			t.Fatalf("err = %v, want ErrTurnTimeout", err)
		}
		if took := time.Since(start); took != 3*time.Second {
			t.Fatalf("took %v, want the 3s turn-wait bound", took)
		}
		if !strings.Contains(err.Error(), "call cycle") {
			t.Fatalf("error %q does not name a call cycle as the likely cause", err)
		}
	})
}

// A call that timed out behind a queue that kept moving is not blamed on a cycle.
func TestTurnWaitTimeoutBehindAMovingQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, nil, 3*time.Second)
		rec := newRecorder()
		forever := make(chan struct{})
		defer close(forever)
		rec.handlers["short"] = func(context.Context, *actor.Self, []byte) ([]byte, error) {
			time.Sleep(2 * time.Second)
			return nil, nil
		}
		rec.handlers["long"] = func(context.Context, *actor.Self, []byte) ([]byte, error) {
			<-forever
			return nil, nil
		}
		rec.register(t, rt, "T", actor.TypeConfig{})
		go call(rt, context.Background(), "T", "a", "short", "")
		synctest.Wait()
		go call(rt, context.Background(), "T", "a", "long", "")
		synctest.Wait()
		_, err := call(rt, context.Background(), "T", "a", "echo", "")
		if !errors.Is(err, actor.ErrTurnTimeout) {
			t.Fatalf("err = %v, want ErrTurnTimeout", err)
		}
		if strings.Contains(err.Error(), "call cycle") {
			t.Fatalf("error %q blames a cycle although the turns ahead changed during the wait", err)
		}
	})
}
