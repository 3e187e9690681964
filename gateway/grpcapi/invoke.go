package grpcapi

// Service invocation, metadata and shutdown.

import (
	"context"
	"encoding/json"
	"net/url"
	"sort"
	"strings"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/granaryhq/granary/silo"
)

// InvokeService implements runtimev1.DaprServer.
func (s *Server) InvokeService(ctx context.Context, in *runtimev1.InvokeServiceRequest) (*commonv1.InvokeResponse, error) {
	msg := in.GetMessage()
	if msg == nil {
		return nil, status.Error(codes.InvalidArgument, "InvokeService needs a message")
	}
	verb := "POST"
	if ext := msg.GetHttpExtension(); ext != nil && ext.GetVerb() != commonv1.HTTPExtension_NONE {
		verb = ext.GetVerb().String()
	}
	c := call{method: verb, path: []string{"v1.0", "invoke", in.GetId(), "method"}}
	for seg := range strings.SplitSeq(strings.TrimPrefix(msg.GetMethod(), "/"), "/") {
		c.path = append(c.path, seg)
	}
	if ext := msg.GetHttpExtension(); ext != nil && ext.GetQuerystring() != "" {
		q, err := url.ParseQuery(ext.GetQuerystring())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "querystring %q: %v", ext.GetQuerystring(), err)
		}
		c.query = q
	}
	if d := msg.GetData(); d != nil {
		c.body = d.GetValue()
	}
	if ct := msg.GetContentType(); ct != "" {
		c.header = append(c.header, [2]string{"Content-Type", ct})
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for k, v := range md {
			if len(v) > 0 && !strings.HasPrefix(k, ":") && !strings.HasPrefix(k, "grpc-") && k != "dapr-api-token" &&
				k != "content-type" && k != "user-agent" && k != "traceparent" {
				c.header = append(c.header, [2]string{k, v[0]})
			}
		}
	}
	a, err := s.do(ctx, c)
	if err != nil {
		return nil, err
	}
	return &commonv1.InvokeResponse{Data: &anypb.Any{Value: a.body}, ContentType: a.contentType}, nil
}

// GetMetadata implements runtimev1.DaprServer.
func (s *Server) GetMetadata(ctx context.Context, _ *runtimev1.GetMetadataRequest) (*runtimev1.GetMetadataResponse, error) {
	a, err := s.do(ctx, call{method: "GET", path: []string{"v1.0", "metadata"}})
	if err != nil {
		return nil, err
	}
	var md silo.Metadata
	if err := json.Unmarshal(a.body, &md); err != nil {
		return nil, status.Errorf(codes.Internal, "metadata: %v", err)
	}
	out := &runtimev1.GetMetadataResponse{Id: md.ID, RuntimeVersion: md.RuntimeVersion,
		ExtendedMetadata: map[string]string{"stateStore": md.StateStore, "placement": md.Placement.Mode}}
	for _, a := range md.Actors {
		out.ActiveActorsCount = append(out.ActiveActorsCount, &runtimev1.ActiveActorsCount{Type: a.Type, Count: int32(a.Count)})
	}
	for _, c := range md.Components {
		out.RegisteredComponents = append(out.RegisteredComponents, &runtimev1.RegisteredComponents{Name: c.Name, Type: c.Type,
			Version: c.Version, Capabilities: c.Capabilities})
	}
	for _, sub := range md.Subscriptions {
		ps := &runtimev1.PubsubSubscription{PubsubName: sub.PubSubName, Topic: sub.Topic, Metadata: sub.Metadata,
			DeadLetterTopic: sub.DeadLetterTopic, Rules: &runtimev1.PubsubSubscriptionRules{}}
		switch sub.Type {
		case "declarative":
			ps.Type = runtimev1.PubsubSubscriptionType_DECLARATIVE
		case "programmatic":
			ps.Type = runtimev1.PubsubSubscriptionType_PROGRAMMATIC
		}
		for _, r := range sub.Rules.Rules {
			ps.Rules.Rules = append(ps.Rules.Rules, &runtimev1.PubsubSubscriptionRule{Match: r.Match, Path: r.Path})
		}
		out.Subscriptions = append(out.Subscriptions, ps)
	}
	sort.Slice(out.ActiveActorsCount, func(i, j int) bool { return out.ActiveActorsCount[i].Type < out.ActiveActorsCount[j].Type })
	return out, nil
}

// Shutdown implements runtimev1.DaprServer: it starts the silo's graceful
// shutdown and returns at once.
func (s *Server) Shutdown(context.Context, *runtimev1.ShutdownRequest) (*emptypb.Empty, error) {
	if s.cfg.Shutdown == nil {
		return nil, status.Error(codes.Unimplemented, "method Shutdown is not served by this silo")
	}
	s.cfg.Logger.Info("shutdown requested over the gRPC API")
	go s.cfg.Shutdown()
	return &emptypb.Empty{}, nil
}
