package grpcapi

// The state methods.

import (
	"context"
	"encoding/json"
	"net/url"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/granaryhq/granary/blocks/state"
)

// stateItem is an item of a save or a transaction's request, its value as
// base64 of its bytes (state.HeaderValueEncoding).
type stateItem struct {
	Key      string            `json:"key"`
	Value    []byte            `json:"value,omitempty"`
	ETag     *string           `json:"etag,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Options  *stateOptions     `json:"options,omitempty"`
}

type stateOptions struct {
	Concurrency string `json:"concurrency,omitempty"`
	Consistency string `json:"consistency,omitempty"`
}

var base64Header = [2]string{state.HeaderValueEncoding, "base64"}

func concurrencyOf(c commonv1.StateOptions_StateConcurrency) string {
	switch c {
	case commonv1.StateOptions_CONCURRENCY_FIRST_WRITE:
		return "first-write"
	case commonv1.StateOptions_CONCURRENCY_LAST_WRITE:
		return "last-write"
	}
	return ""
}

func consistencyOf(c commonv1.StateOptions_StateConsistency) string {
	switch c {
	case commonv1.StateOptions_CONSISTENCY_EVENTUAL:
		return "eventual"
	case commonv1.StateOptions_CONSISTENCY_STRONG:
		return "strong"
	}
	return ""
}

func itemOf(it *commonv1.StateItem) stateItem {
	out := stateItem{Key: it.GetKey(), Value: it.GetValue(), Metadata: it.GetMetadata()}
	if out.Value == nil {
		out.Value = []byte{}
	}
	if e := it.GetEtag(); e != nil {
		v := e.GetValue()
		out.ETag = &v
	}
	if o := it.GetOptions(); o != nil {
		out.Options = &stateOptions{Concurrency: concurrencyOf(o.GetConcurrency()), Consistency: consistencyOf(o.GetConsistency())}
	}
	return out
}

func statePath(store string, rest ...string) []string {
	return append([]string{"v1.0", "state", store}, rest...)
}

// SaveState implements runtimev1.DaprServer.
func (s *Server) SaveState(ctx context.Context, in *runtimev1.SaveStateRequest) (*emptypb.Empty, error) {
	items := make([]stateItem, 0, len(in.GetStates()))
	for _, it := range in.GetStates() {
		items = append(items, itemOf(it))
	}
	body, _ := json.Marshal(items)
	_, err := s.do(ctx, call{method: "POST", path: statePath(in.GetStoreName()), body: body, header: [][2]string{base64Header}})
	return empty(err)
}

// GetState implements runtimev1.DaprServer.
func (s *Server) GetState(ctx context.Context, in *runtimev1.GetStateRequest) (*runtimev1.GetStateResponse, error) {
	q := metadataQuery(in.GetMetadata())
	if c := consistencyOf(in.GetConsistency()); c != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("consistency", c)
	}
	a, err := s.do(ctx, call{method: "GET", path: statePath(in.GetStoreName(), in.GetKey()), query: q})
	if err != nil {
		return nil, err
	}
	out := &runtimev1.GetStateResponse{Data: a.body, Etag: a.etag}
	if exp := a.ttlExpire; exp != "" {
		out.Metadata = map[string]string{"ttlExpireTime": exp}
	}
	return out, nil
}

// GetBulkState implements runtimev1.DaprServer.
func (s *Server) GetBulkState(ctx context.Context, in *runtimev1.GetBulkStateRequest) (*runtimev1.GetBulkStateResponse, error) {
	body, _ := json.Marshal(map[string]any{"keys": in.GetKeys(), "parallelism": in.GetParallelism()})
	a, err := s.do(ctx, call{method: "POST", path: statePath(in.GetStoreName(), "bulk"), body: body,
		query: metadataQuery(in.GetMetadata()), header: [][2]string{base64Header}})
	if err != nil {
		return nil, err
	}
	var items []struct {
		Key      string            `json:"key"`
		Data     []byte            `json:"data"`
		ETag     string            `json:"etag"`
		Error    string            `json:"error"`
		Metadata map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal(a.body, &items); err != nil {
		return nil, status.Errorf(codes.Internal, "bulk get answer: %v", err)
	}
	out := &runtimev1.GetBulkStateResponse{Items: make([]*runtimev1.BulkStateItem, 0, len(items))}
	for _, it := range items {
		out.Items = append(out.Items, &runtimev1.BulkStateItem{Key: it.Key, Data: it.Data, Etag: it.ETag, Error: it.Error, Metadata: it.Metadata})
	}
	return out, nil
}

func (s *Server) deleteState(ctx context.Context, store, key string, etag *commonv1.Etag, opts *commonv1.StateOptions, md map[string]string) error {
	c := call{method: "DELETE", path: statePath(store, key), query: metadataQuery(md)}
	if etag != nil {
		c.header = append(c.header, [2]string{"If-Match", etag.GetValue()})
	}
	if opts != nil {
		if c.query == nil {
			c.query = url.Values{}
		}
		if v := concurrencyOf(opts.GetConcurrency()); v != "" {
			c.query.Set("concurrency", v)
		}
		if v := consistencyOf(opts.GetConsistency()); v != "" {
			c.query.Set("consistency", v)
		}
	}
	_, err := s.do(ctx, c)
	return err
}

// DeleteState implements runtimev1.DaprServer.
func (s *Server) DeleteState(ctx context.Context, in *runtimev1.DeleteStateRequest) (*emptypb.Empty, error) {
	return empty(s.deleteState(ctx, in.GetStoreName(), in.GetKey(), in.GetEtag(), in.GetOptions(), in.GetMetadata()))
}

// DeleteBulkState implements runtimev1.DaprServer: the keys are deleted
// one after another (not atomically, as in Dapr), stopping at the first
// failure.
func (s *Server) DeleteBulkState(ctx context.Context, in *runtimev1.DeleteBulkStateRequest) (*emptypb.Empty, error) {
	for _, it := range in.GetStates() {
		if err := s.deleteState(ctx, in.GetStoreName(), it.GetKey(), it.GetEtag(), it.GetOptions(), it.GetMetadata()); err != nil {
			return nil, err
		}
	}
	return &emptypb.Empty{}, nil
}

// ExecuteStateTransaction implements runtimev1.DaprServer.
func (s *Server) ExecuteStateTransaction(ctx context.Context, in *runtimev1.ExecuteStateTransactionRequest) (*emptypb.Empty, error) {
	type operation struct {
		Operation string    `json:"operation"`
		Request   stateItem `json:"request"`
	}
	ops := make([]operation, 0, len(in.GetOperations()))
	for _, o := range in.GetOperations() {
		req := o.GetRequest()
		if req == nil {
			return nil, status.Error(codes.InvalidArgument, "a transaction operation has no request")
		}
		ops = append(ops, operation{Operation: o.GetOperationType(), Request: itemOf(req)})
	}
	body, _ := json.Marshal(map[string]any{"operations": ops, "metadata": in.GetMetadata()})
	_, err := s.do(ctx, call{method: "POST", path: statePath(in.GetStoreName(), "transaction"), body: body, header: [][2]string{base64Header}})
	return empty(err)
}
