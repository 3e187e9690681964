package grpcapi

// The pub/sub methods, the streaming subscription among them.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/granaryhq/granary/internal/grpcapp"
)

// PublishEvent implements runtimev1.DaprServer.
func (s *Server) PublishEvent(ctx context.Context, in *runtimev1.PublishEventRequest) (*emptypb.Empty, error) {
	c := call{method: "POST", path: []string{"v1.0", "publish", in.GetPubsubName(), in.GetTopic()}, body: in.GetData(),
		query: metadataQuery(in.GetMetadata())}
	if c.body == nil {
		c.body = []byte{}
	}
	if ct := in.GetDataContentType(); ct != "" {
		c.header = append(c.header, [2]string{"Content-Type", ct})
	}
	_, err := s.do(ctx, c)
	return empty(err)
}

// BulkPublishEventAlpha1 implements runtimev1.DaprServer.
func (s *Server) BulkPublishEventAlpha1(ctx context.Context, in *runtimev1.BulkPublishRequest) (*runtimev1.BulkPublishResponse, error) {
	type entry struct {
		EntryID     string            `json:"entryId"`
		Event       json.RawMessage   `json:"event"`
		ContentType string            `json:"contentType,omitempty"`
		Metadata    map[string]string `json:"metadata,omitempty"`
	}
	entries := make([]entry, 0, len(in.GetEntries()))
	for _, e := range in.GetEntries() {
		// With a content type, the event goes as a JSON string, which the
		// HTTP route publishes as its bytes under that type, as Dapr does
		// (as JSON, a string event would lose its quotes).
		var ev json.RawMessage
		if e.GetContentType() != "" {
			ev = mustJSON(string(e.GetEvent()))
		} else {
			ev = jsonValue(e.GetEvent())
		}
		if ev == nil {
			ev = json.RawMessage(`""`)
		}
		entries = append(entries, entry{EntryID: e.GetEntryId(), Event: ev, ContentType: e.GetContentType(), Metadata: e.GetMetadata()})
	}
	body, _ := json.Marshal(map[string]any{"entries": entries})
	a, err := s.do(ctx, call{method: "POST", path: []string{"v1.0-alpha1", "publish", "bulk", in.GetPubsubName(), in.GetTopic()},
		body: body, query: metadataQuery(in.GetMetadata())})
	if err == nil {
		return &runtimev1.BulkPublishResponse{}, nil
	}
	var failed struct {
		FailedEntries []struct {
			EntryID string `json:"entryId"`
			Error   string `json:"error"`
		} `json:"failedEntries"`
	}
	if json.Unmarshal(a.body, &failed) != nil || len(failed.FailedEntries) == 0 {
		return nil, err
	}
	out := &runtimev1.BulkPublishResponse{}
	for _, f := range failed.FailedEntries {
		out.FailedEntries = append(out.FailedEntries, &runtimev1.BulkPublishResponseFailedEntry{EntryId: f.EntryID, Error: f.Error})
	}
	return out, nil
}

// Streams opens streaming subscriptions: deliver is called with each
// message (a CloudEvent's JSON) for the topic until closeStream.
type Streams interface {
	OpenStream(ctx context.Context, pubsub, topic, deadLetterTopic string, md map[string]string,
		deliver func(ctx context.Context, path string, event []byte) (status string, err error)) (closeStream func(), err error)
}

// SubscribeTopicEventsAlpha1 implements runtimev1.DaprServer: after the
// initial request names the pub/sub and topic, each message is sent on the
// stream and waits for the client's answer for its ID (SUCCESS, RETRY or
// DROP), as a delivery to an app waits for the app's.
func (s *Server) SubscribeTopicEventsAlpha1(stream runtimev1.Dapr_SubscribeTopicEventsAlpha1Server) error {
	if s.cfg.Streams == nil {
		return status.Error(codes.Unimplemented, "method SubscribeTopicEventsAlpha1 is not served by this silo")
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	init := first.GetInitialRequest()
	if init == nil || init.GetPubsubName() == "" || init.GetTopic() == "" {
		return status.Error(codes.InvalidArgument, "the first message of a subscription stream must be an initial request naming the pub/sub and the topic")
	}
	var (
		sendMu  sync.Mutex
		mu      sync.Mutex
		pending = map[string]chan string{}
		done    = make(chan struct{})
	)
	deliver := func(ctx context.Context, path string, event []byte) (string, error) {
		ev, err := grpcapp.TopicEvent(path, event)
		if err != nil {
			return "", err
		}
		answer := make(chan string, 1)
		mu.Lock()
		pending[ev.GetId()] = answer
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(pending, ev.GetId())
			mu.Unlock()
		}()
		sendMu.Lock()
		err = stream.Send(&runtimev1.SubscribeTopicEventsResponseAlpha1{
			SubscribeTopicEventsResponseType: &runtimev1.SubscribeTopicEventsResponseAlpha1_EventMessage{EventMessage: ev}})
		sendMu.Unlock()
		if err != nil {
			return "", err
		}
		select {
		case st := <-answer:
			return st, nil
		case <-ctx.Done():
			return "", ctx.Err()
		case <-done:
			return "", errors.New("the subscription stream ended before the message was answered")
		}
	}
	closeStream, err := s.cfg.Streams.OpenStream(stream.Context(), init.GetPubsubName(), init.GetTopic(), init.GetDeadLetterTopic(), init.GetMetadata(), deliver)
	if err != nil {
		return toStatus(err)
	}
	defer closeStream()
	defer close(done)
	sendMu.Lock()
	err = stream.Send(&runtimev1.SubscribeTopicEventsResponseAlpha1{
		SubscribeTopicEventsResponseType: &runtimev1.SubscribeTopicEventsResponseAlpha1_InitialResponse{
			InitialResponse: &runtimev1.SubscribeTopicEventsResponseInitialAlpha1{}}})
	sendMu.Unlock()
	if err != nil {
		return err
	}
	for {
		in, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		p := in.GetEventProcessed()
		if p == nil {
			continue
		}
		mu.Lock()
		answer := pending[p.GetId()]
		mu.Unlock()
		if answer != nil {
			select {
			case answer <- p.GetStatus().GetStatus().String():
			default:
			}
		}
	}
}
