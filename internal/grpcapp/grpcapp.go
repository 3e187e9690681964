// Package grpcapp calls apps that serve Dapr's gRPC app callback service
// (dapr.proto.runtime.v1.AppCallback and AppCallbackHealthCheck) instead of
// HTTP: service invocation goes to OnInvoke, subscriptions are read with
// ListTopicSubscriptions and deliveries go to OnTopicEvent. Such an app is
// registered with a grpc://host:port URL; actors stay on HTTP, as in Dapr.
package grpcapp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Scheme is the URL scheme of a gRPC app.
const Scheme = "grpc"

// IsURL reports whether base names a gRPC app.
func IsURL(base string) bool { return strings.HasPrefix(base, Scheme+"://") }

// maxMessageSize bounds a message either way, as the gRPC API's.
const maxMessageSize = 16 << 20

var (
	connsMu sync.Mutex
	conns   = map[string]*grpc.ClientConn{}
)

// conn returns the shared connection to the app at base (grpc://host:port).
func conn(base string) (*grpc.ClientConn, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != Scheme || u.Host == "" {
		return nil, fmt.Errorf("gRPC app URL %q: want grpc://host:port", base)
	}
	connsMu.Lock()
	defer connsMu.Unlock()
	if c := conns[u.Host]; c != nil {
		return c, nil
	}
	c, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageSize), grpc.MaxCallSendMsgSize(maxMessageSize)))
	if err != nil {
		return nil, fmt.Errorf("gRPC app %s: %w", u.Host, err)
	}
	conns[u.Host] = c
	return c, nil
}

// Forget closes the connection to the app at base.
func Forget(base string) {
	u, err := url.Parse(base)
	if err != nil {
		return
	}
	connsMu.Lock()
	c := conns[u.Host]
	delete(conns, u.Host)
	connsMu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Request is a service invocation as the app's OnInvoke receives it.
type Request struct {
	Verb        string // GET, POST, ...
	Method      string // the path after /method/, without its leading "/"
	Query       string
	ContentType string
	Body        []byte
}

// Response is the app's answer.
type Response struct {
	ContentType string
	Body        []byte
}

// Invoke calls the app's OnInvoke. An error is the app's gRPC status (see
// status.FromError) or the connection's.
func Invoke(ctx context.Context, base string, r Request) (Response, error) {
	c, err := conn(base)
	if err != nil {
		return Response{}, err
	}
	verb := commonv1.HTTPExtension_Verb(commonv1.HTTPExtension_Verb_value[strings.ToUpper(r.Verb)])
	out, err := runtimev1.NewAppCallbackClient(c).OnInvoke(ctx, &commonv1.InvokeRequest{
		Method: r.Method, Data: &anypb.Any{Value: r.Body}, ContentType: r.ContentType,
		HttpExtension: &commonv1.HTTPExtension{Verb: verb, Querystring: r.Query},
	})
	if err != nil {
		return Response{}, err
	}
	return Response{ContentType: out.GetContentType(), Body: out.GetData().GetValue()}, nil
}

// Subscription is one subscription the app lists.
type Subscription struct {
	PubsubName      string            `json:"pubsubname"`
	Topic           string            `json:"topic"`
	Routes          Routes            `json:"routes"`
	DeadLetterTopic string            `json:"deadLetterTopic,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
}

// Routes are a subscription's rules and default route.
type Routes struct {
	Rules   []Rule `json:"rules,omitempty"`
	Default string `json:"default,omitempty"`
}

// Rule routes the events Match selects to Path.
type Rule struct {
	Match string `json:"match"`
	Path  string `json:"path"`
}

// Subscriptions calls the app's ListTopicSubscriptions. An app that does
// not implement it subscribes to nothing.
func Subscriptions(ctx context.Context, base string) ([]Subscription, error) {
	c, err := conn(base)
	if err != nil {
		return nil, err
	}
	out, err := runtimev1.NewAppCallbackClient(c).ListTopicSubscriptions(ctx, &emptypb.Empty{})
	if status.Code(err) == codes.Unimplemented {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	subs := make([]Subscription, 0, len(out.GetSubscriptions()))
	for _, s := range out.GetSubscriptions() {
		sub := Subscription{PubsubName: s.GetPubsubName(), Topic: s.GetTopic(), DeadLetterTopic: s.GetDeadLetterTopic(),
			Metadata: s.GetMetadata(), Routes: Routes{Default: s.GetRoutes().GetDefault()}}
		for _, r := range s.GetRoutes().GetRules() {
			sub.Routes.Rules = append(sub.Routes.Rules, Rule{Match: r.GetMatch(), Path: r.GetPath()})
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// Deliver sends a CloudEvent (its JSON) to the app's OnTopicEvent for the
// route path, and returns the app's status: "SUCCESS", "RETRY" or "DROP".
func Deliver(ctx context.Context, base, path string, event []byte) (string, error) {
	c, err := conn(base)
	if err != nil {
		return "", err
	}
	ev, err := TopicEvent(path, event)
	if err != nil {
		return "", err
	}
	out, err := runtimev1.NewAppCallbackClient(c).OnTopicEvent(ctx, ev)
	if err != nil {
		return "", err
	}
	return out.GetStatus().String(), nil
}

// TopicEvent is a CloudEvent (its JSON) as Dapr's gRPC callbacks and
// streaming subscriptions carry it, for the route path.
func TopicEvent(path string, event []byte) (*runtimev1.TopicEventRequest, error) {
	var ev struct {
		ID              string          `json:"id"`
		Source          string          `json:"source"`
		Type            string          `json:"type"`
		SpecVersion     string          `json:"specversion"`
		DataContentType string          `json:"datacontenttype"`
		Data            json.RawMessage `json:"data"`
		DataBase64      []byte          `json:"data_base64"`
		Topic           string          `json:"topic"`
		PubsubName      string          `json:"pubsubname"`
	}
	if err := json.Unmarshal(event, &ev); err != nil {
		return nil, fmt.Errorf("the event is not a CloudEvent: %w", err)
	}
	data := []byte(ev.Data)
	if ev.DataBase64 != nil {
		data = ev.DataBase64
	} else if len(data) > 0 && data[0] == '"' && !strings.Contains(ev.DataContentType, "json") {
		// Text data travels as a JSON string in the envelope; the app
		// gets the text itself.
		var s string
		if json.Unmarshal(data, &s) == nil {
			data = []byte(s)
		}
	}
	return &runtimev1.TopicEventRequest{
		Id: ev.ID, Source: ev.Source, Type: ev.Type, SpecVersion: ev.SpecVersion, DataContentType: ev.DataContentType,
		Data: data, Topic: ev.Topic, PubsubName: ev.PubsubName, Path: path,
	}, nil
}

// Healthy calls the app's health check. An app that answers at all is up:
// one without a health check answers with an error status (Unimplemented,
// or Unknown from the Go SDK), and only a call that got no answer (no
// connection, no answer in time) makes it unhealthy.
func Healthy(ctx context.Context, base string, timeout time.Duration) error {
	c, err := conn(base)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err = runtimev1.NewAppCallbackHealthCheckClient(c).HealthCheck(ctx, &emptypb.Empty{})
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return err
	}
	return nil
}
