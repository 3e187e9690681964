package actor

import (
	"context"
	"errors"
	"fmt"

	"github.com/granaryhq/granary/statestore"
)

// NativeActor is an actor written in Go and compiled into the silo.
type NativeActor interface {
	// Invoke handles a method call and returns the response body.
	Invoke(ctx context.Context, method string, body []byte) ([]byte, error)
}

// Optional capabilities of a NativeActor, found by type assertion.
type (
	// ReminderReceiver receives reminders. Returning cancel deletes the reminder.
	ReminderReceiver interface {
		Remind(ctx context.Context, name string, data []byte) (cancel bool, err error)
	}
	// TimerReceiver receives timers.
	TimerReceiver interface {
		Timer(ctx context.Context, name, callback string, data []byte) error
	}
	// Deactivator is told when its activation ends.
	Deactivator interface {
		Deactivate(ctx context.Context) error
	}
)

// Self is a native actor's handle on its runtime: its identity, its state and
// calls to other actors. Calls made through it from within a turn carry the
// turn's call chain.
type Self struct {
	id ID
	rt *Runtime
}

// ID returns the actor's identity.
func (s *Self) ID() ID { return s.id }

// GetState reads one state entry; ok is false when it is absent.
func (s *Self) GetState(ctx context.Context, key string) (value []byte, ok bool, err error) {
	item, err := s.rt.GetState(ctx, s.id, key)
	if err != nil {
		if isNotFound(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return item.Value, true, nil
}

// Transact commits state operations atomically, fenced by the claim the
// activation was created under.
func (s *Self) Transact(ctx context.Context, ops ...statestore.Op) error {
	return s.rt.Transact(ctx, s.id, ops)
}

// Call invokes a method of another actor (or of itself, reentrantly when the
// type allows it).
func (s *Self) Call(ctx context.Context, target ID, method string, body []byte) ([]byte, error) {
	resp, err := s.rt.Invoke(ctx, target, &Request{Method: method, Body: body})
	if err != nil {
		return nil, err
	}
	defer resp.Release()
	if resp.Status != 200 {
		return nil, fmt.Errorf("actor %s: method %s answered %d: %s", target, method, resp.Status, resp.Body)
	}
	return append([]byte(nil), resp.Body...), nil
}

// NativeType returns the Type of a native actor; newActor creates one instance
// per activation.
func NativeType(newActor func(self *Self) NativeActor) Type {
	return &nativeType{newActor: newActor}
}

type nativeType struct {
	newActor func(*Self) NativeActor
	rt       *Runtime
}

func (t *nativeType) Activate(_ context.Context, id ID, _ statestore.Claim) (Instance, error) {
	if t.rt == nil {
		return nil, fmt.Errorf("native type %s is not registered with a runtime", id.Type)
	}
	return &nativeInstance{actor: t.newActor(&Self{id: id, rt: t.rt})}, nil
}

// RegisterNative hosts a native Go actor type.
func (rt *Runtime) RegisterNative(name string, newActor func(self *Self) NativeActor, cfg TypeConfig) error {
	return rt.Register(name, &nativeType{newActor: newActor, rt: rt}, cfg)
}

type nativeInstance struct{ actor NativeActor }

var jsonType = []byte("application/json")

func (n *nativeInstance) Invoke(ctx context.Context, req *Request) (*Response, error) {
	body, err := n.actor.Invoke(ctx, req.Method, req.Body)
	if err != nil {
		return nil, err
	}
	return &Response{Status: 200, Body: body, ContentType: jsonType}, nil
}

func (n *nativeInstance) Remind(ctx context.Context, r *ReminderCall) (bool, error) {
	if rr, ok := n.actor.(ReminderReceiver); ok {
		return rr.Remind(ctx, r.Name, r.Data)
	}
	return false, fmt.Errorf("native actor does not receive reminders (reminder %q)", r.Name)
}

func (n *nativeInstance) Timer(ctx context.Context, t *TimerCall) error {
	if tr, ok := n.actor.(TimerReceiver); ok {
		return tr.Timer(ctx, t.Name, t.Callback, t.Data)
	}
	return fmt.Errorf("native actor does not receive timers (timer %q)", t.Name)
}

func (n *nativeInstance) Deactivate(ctx context.Context) error {
	if d, ok := n.actor.(Deactivator); ok {
		return d.Deactivate(ctx)
	}
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, statestore.ErrNotFound) }
