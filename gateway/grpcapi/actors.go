package grpcapi

// The actor methods.

import (
	"context"
	"encoding/json"
	"strings"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/protobuf/types/known/emptypb"
)

func actorPath(actorType, actorID string, rest ...string) []string {
	return append([]string{"v1.0", "actors", actorType, actorID}, rest...)
}

// InvokeActor implements runtimev1.DaprServer.
func (s *Server) InvokeActor(ctx context.Context, in *runtimev1.InvokeActorRequest) (*runtimev1.InvokeActorResponse, error) {
	c := call{method: "POST", path: actorPath(in.GetActorType(), in.GetActorId(), "method", in.GetMethod()), body: in.GetData()}
	for k, v := range in.GetMetadata() {
		c.header = append(c.header, [2]string{k, v})
	}
	a, err := s.do(ctx, c)
	if err != nil {
		return nil, err
	}
	return &runtimev1.InvokeActorResponse{Data: a.body}, nil
}

type scheduleBody struct {
	DueTime  string          `json:"dueTime,omitempty"`
	Period   string          `json:"period,omitempty"`
	TTL      string          `json:"ttl,omitempty"`
	Callback string          `json:"callback,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

func (s *Server) schedule(ctx context.Context, kind, actorType, actorID, name string, b scheduleBody) error {
	body, _ := json.Marshal(b)
	_, err := s.do(ctx, call{method: "POST", path: actorPath(actorType, actorID, kind, name), body: body})
	return err
}

// RegisterActorTimer implements runtimev1.DaprServer.
func (s *Server) RegisterActorTimer(ctx context.Context, in *runtimev1.RegisterActorTimerRequest) (*emptypb.Empty, error) {
	err := s.schedule(ctx, "timers", in.GetActorType(), in.GetActorId(), in.GetName(), scheduleBody{
		DueTime: in.GetDueTime(), Period: in.GetPeriod(), TTL: in.GetTtl(), Callback: in.GetCallback(), Data: jsonValue(in.GetData())})
	return empty(err)
}

// UnregisterActorTimer implements runtimev1.DaprServer.
func (s *Server) UnregisterActorTimer(ctx context.Context, in *runtimev1.UnregisterActorTimerRequest) (*emptypb.Empty, error) {
	_, err := s.do(ctx, call{method: "DELETE", path: actorPath(in.GetActorType(), in.GetActorId(), "timers", in.GetName())})
	return empty(err)
}

// RegisterActorReminder implements runtimev1.DaprServer.
func (s *Server) RegisterActorReminder(ctx context.Context, in *runtimev1.RegisterActorReminderRequest) (*emptypb.Empty, error) {
	err := s.schedule(ctx, "reminders", in.GetActorType(), in.GetActorId(), in.GetName(), scheduleBody{
		DueTime: in.GetDueTime(), Period: in.GetPeriod(), TTL: in.GetTtl(), Data: jsonValue(in.GetData())})
	return empty(err)
}

// UnregisterActorReminder implements runtimev1.DaprServer.
func (s *Server) UnregisterActorReminder(ctx context.Context, in *runtimev1.UnregisterActorReminderRequest) (*emptypb.Empty, error) {
	_, err := s.do(ctx, call{method: "DELETE", path: actorPath(in.GetActorType(), in.GetActorId(), "reminders", in.GetName())})
	return empty(err)
}

// GetActorState implements runtimev1.DaprServer.
func (s *Server) GetActorState(ctx context.Context, in *runtimev1.GetActorStateRequest) (*runtimev1.GetActorStateResponse, error) {
	a, err := s.do(ctx, call{method: "GET", path: actorPath(in.GetActorType(), in.GetActorId(), "state", in.GetKey())})
	if err != nil {
		return nil, err
	}
	return &runtimev1.GetActorStateResponse{Data: a.body}, nil
}

type actorOperation struct {
	Operation string `json:"operation"`
	Request   struct {
		Key      string            `json:"key"`
		Value    json.RawMessage   `json:"value,omitempty"`
		Metadata map[string]string `json:"metadata,omitempty"`
	} `json:"request"`
}

// ExecuteActorStateTransaction implements runtimev1.DaprServer.
func (s *Server) ExecuteActorStateTransaction(ctx context.Context, in *runtimev1.ExecuteActorStateTransactionRequest) (*emptypb.Empty, error) {
	ops := make([]actorOperation, 0, len(in.GetOperations()))
	for _, o := range in.GetOperations() {
		var op actorOperation
		op.Operation = strings.ToLower(o.GetOperationType())
		op.Request.Key, op.Request.Metadata = o.GetKey(), o.GetMetadata()
		if v := o.GetValue(); v != nil {
			op.Request.Value = jsonValue(v.GetValue())
		}
		ops = append(ops, op)
	}
	body, _ := json.Marshal(ops)
	_, err := s.do(ctx, call{method: "POST", path: actorPath(in.GetActorType(), in.GetActorId(), "state"), body: body})
	return empty(err)
}
