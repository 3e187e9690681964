package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	dapr "github.com/dapr/go-sdk/client"
	"github.com/dapr/go-sdk/service/common"
	daprgrpc "github.com/dapr/go-sdk/service/grpc"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/granaryhq/granary/gateway/grpcapi"
	"github.com/granaryhq/granary/internal/testutil"
)

// tickApp hosts the actor type Tick: a method answers what it was sent,
// reminder fires are counted and timer callbacks recorded.
type tickApp struct {
	srv    *httptest.Server
	mu     sync.Mutex
	fires  map[string]int
	timers []timerFire
	got    []map[string]any // events received on /events
}

// timerFire is one timer callback an app received.
type timerFire struct {
	method, actor, name string
	body                map[string]any
}

func newTickApp(t *testing.T) *tickApp {
	a := &tickApp{fires: map[string]int{}}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/dapr/config":
			io.WriteString(w, `{"entities":["Tick"]}`)
		case r.URL.Path == "/dapr/subscribe":
			io.WriteString(w, `[{"pubsubname":"pubsub","topic":"ticks","route":"/events"}]`)
		case r.URL.Path == "/healthz":
		case r.URL.Path == "/events":
			var ev map[string]any
			json.NewDecoder(r.Body).Decode(&ev)
			a.mu.Lock()
			a.got = append(a.got, ev)
			a.mu.Unlock()
		case strings.HasPrefix(r.URL.Path, "/actors/Tick/") && strings.Contains(r.URL.Path, "/method/remind/"):
			a.mu.Lock()
			a.fires[strings.Split(r.URL.Path, "/")[3]]++
			a.mu.Unlock()
		case strings.HasPrefix(r.URL.Path, "/actors/Tick/") && strings.Contains(r.URL.Path, "/method/timer/"):
			segs := strings.Split(r.URL.Path, "/") // "", actors, Tick, id, method, timer, name
			var body map[string]any
			json.NewDecoder(r.Body).Decode(&body)
			a.mu.Lock()
			a.timers = append(a.timers, timerFire{method: r.Method, actor: segs[3], name: segs[len(segs)-1], body: body})
			a.mu.Unlock()
		case strings.HasPrefix(r.URL.Path, "/actors/Tick/") && r.Method == "DELETE":
		case strings.HasPrefix(r.URL.Path, "/actors/Tick/"):
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"actor":%q,"got":%q}`, strings.Split(r.URL.Path, "/")[3], b)
		case r.URL.Path == "/hello":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "hello %s %s", r.Method, b)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *tickApp) firesOf(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fires[id]
}

func (a *tickApp) timerFires() []timerFire {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.timers)
}

// startDevGRPC runs granary dev with the gRPC API on a free port.
func startDevGRPC(t *testing.T, args ...string) (*devServer, string) {
	port := strconv.Itoa(testutil.FreePort(t))
	return startDev(t, append([]string{"--grpc-port", port}, args...)...), "127.0.0.1:" + port
}

func dialGRPC(t *testing.T, addr string) runtimev1.DaprClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimev1.NewDaprClient(conn)
}

// outcome is what a call came to, in the terms both APIs share.
type outcome struct {
	code   codes.Code
	reason string // the error code; empty on success
}

func httpOutcome(a answer) outcome {
	if a.status >= 200 && a.status < 300 {
		return outcome{code: codes.OK}
	}
	return outcome{code: grpcapi.CodeOf(a.status), reason: a.errorCode()}
}

func grpcOutcome(err error) outcome {
	if err == nil {
		return outcome{code: codes.OK}
	}
	st := status.Convert(err)
	o := outcome{code: st.Code()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			o.reason = info.Reason
		}
	}
	return o
}

// TestGRPCAndHTTPAgree runs one table of calls through both APIs and expects
// the same outcome: success, or the same error code with the gRPC code of
// the HTTP status.
func TestGRPCAndHTTPAgree(t *testing.T) {
	app := newTickApp(t)
	d, addr := startDevGRPC(t, "--app-url", "tick="+app.srv.URL)
	c := dialGRPC(t, addr)
	ctx := context.Background()
	// An actor made active, for the actor state transaction.
	expect(t, "activate", d.do("POST", "/v1.0/actors/Tick/t1/method/ping", "{}"), 200, "")
	for _, tc := range []struct {
		name string
		http func() answer
		grpc func() error
		want codes.Code
	}{
		{"invoke actor",
			func() answer { return d.do("POST", "/v1.0/actors/Tick/t1/method/ping", "x") },
			func() error {
				_, err := c.InvokeActor(ctx, &runtimev1.InvokeActorRequest{ActorType: "Tick", ActorId: "t1", Method: "ping", Data: []byte("x")})
				return err
			}, codes.OK},
		{"invoke an actor type nobody hosts",
			func() answer { return d.do("POST", "/v1.0/actors/Nope/t1/method/ping", "") },
			func() error {
				_, err := c.InvokeActor(ctx, &runtimev1.InvokeActorRequest{ActorType: "Nope", ActorId: "t1", Method: "ping"})
				return err
			}, codes.NotFound},
		{"invoke with a bad actor id",
			func() answer { return d.do("POST", "/v1.0/actors/Tick/a%23b/method/ping", "") },
			func() error {
				_, err := c.InvokeActor(ctx, &runtimev1.InvokeActorRequest{ActorType: "Tick", ActorId: "a#b", Method: "ping"})
				return err
			}, codes.InvalidArgument},
		{"reminder with a bad period",
			func() answer { return d.do("POST", "/v1.0/actors/Tick/t1/reminders/r", `{"period":"soon"}`) },
			func() error {
				_, err := c.RegisterActorReminder(ctx, &runtimev1.RegisterActorReminderRequest{ActorType: "Tick", ActorId: "t1", Name: "r", Period: "soon"})
				return err
			}, codes.InvalidArgument},
		{"reminder on a type nobody hosts",
			func() answer { return d.do("POST", "/v1.0/actors/Nope/t1/reminders/r", `{"period":"1h"}`) },
			func() error {
				_, err := c.RegisterActorReminder(ctx, &runtimev1.RegisterActorReminderRequest{ActorType: "Nope", ActorId: "t1", Name: "r", Period: "1h"})
				return err
			}, codes.PermissionDenied},
		{"actor state of an inactive actor",
			func() answer {
				return d.do("POST", "/v1.0/actors/Tick/idle/state", `[{"operation":"upsert","request":{"key":"k","value":1}}]`)
			},
			func() error {
				_, err := c.ExecuteActorStateTransaction(ctx, &runtimev1.ExecuteActorStateTransactionRequest{ActorType: "Tick", ActorId: "idle",
					Operations: []*runtimev1.TransactionalActorStateOperation{{OperationType: "upsert", Key: "k", Value: &anypb.Any{Value: []byte("1")}}}})
				return err
			}, codes.InvalidArgument},
		{"actor state transaction",
			func() answer {
				return d.do("POST", "/v1.0/actors/Tick/t1/state", `[{"operation":"upsert","request":{"key":"k","value":1}}]`)
			},
			func() error {
				_, err := c.ExecuteActorStateTransaction(ctx, &runtimev1.ExecuteActorStateTransactionRequest{ActorType: "Tick", ActorId: "t1",
					Operations: []*runtimev1.TransactionalActorStateOperation{{OperationType: "upsert", Key: "k", Value: &anypb.Any{Value: []byte("1")}}}})
				return err
			}, codes.OK},
		{"save state",
			func() answer { return d.do("POST", "/v1.0/state/statestore", `[{"key":"p","value":1}]`) },
			func() error {
				_, err := c.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "p", Value: []byte("1")}}})
				return err
			}, codes.OK},
		{"save with a stale etag",
			func() answer { return d.do("POST", "/v1.0/state/statestore", `[{"key":"p","value":1,"etag":"stale"}]`) },
			func() error {
				_, err := c.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore",
					States: []*commonv1.StateItem{{Key: "p", Value: []byte("1"), Etag: &commonv1.Etag{Value: "stale"}}}})
				return err
			}, codes.Aborted},
		{"unknown store",
			func() answer { return d.do("GET", "/v1.0/state/nope/p", "") },
			func() error {
				_, err := c.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "nope", Key: "p"})
				return err
			}, codes.InvalidArgument},
		{"key with ||",
			func() answer { return d.do("GET", "/v1.0/state/statestore/a||b", "") },
			func() error {
				_, err := c.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "statestore", Key: "a||b"})
				return err
			}, codes.InvalidArgument},
		{"delete with a stale etag",
			func() answer { return d.do("DELETE", "/v1.0/state/statestore/p", "", "If-Match", "stale") },
			func() error {
				_, err := c.DeleteState(ctx, &runtimev1.DeleteStateRequest{StoreName: "statestore", Key: "p", Etag: &commonv1.Etag{Value: "stale"}})
				return err
			}, codes.Aborted},
		{"unsupported transaction operation",
			func() answer {
				return d.do("POST", "/v1.0/state/statestore/transaction", `{"operations":[{"operation":"merge","request":{"key":"p"}}]}`)
			},
			func() error {
				_, err := c.ExecuteStateTransaction(ctx, &runtimev1.ExecuteStateTransactionRequest{StoreName: "statestore",
					Operations: []*runtimev1.TransactionalStateOperation{{OperationType: "merge", Request: &commonv1.StateItem{Key: "p"}}}})
				return err
			}, codes.InvalidArgument},
		{"publish",
			func() answer {
				return d.do("POST", "/v1.0/publish/pubsub/ticks", `{"n":1}`, "Content-Type", "application/json")
			},
			func() error {
				_, err := c.PublishEvent(ctx, &runtimev1.PublishEventRequest{PubsubName: "pubsub", Topic: "ticks", Data: []byte(`{"n":1}`), DataContentType: "application/json"})
				return err
			}, codes.OK},
		{"publish to an unknown pubsub",
			func() answer { return d.do("POST", "/v1.0/publish/nope/ticks", `{}`) },
			func() error {
				_, err := c.PublishEvent(ctx, &runtimev1.PublishEventRequest{PubsubName: "nope", Topic: "ticks", Data: []byte(`{}`)})
				return err
			}, codes.NotFound},
		{"publish a bad ttl",
			func() answer { return d.do("POST", "/v1.0/publish/pubsub/ticks?metadata.ttlInSeconds=x", `{}`) },
			func() error {
				_, err := c.PublishEvent(ctx, &runtimev1.PublishEventRequest{PubsubName: "pubsub", Topic: "ticks", Data: []byte(`{}`), Metadata: map[string]string{"ttlInSeconds": "x"}})
				return err
			}, codes.InvalidArgument},
		{"invoke an app",
			func() answer { return d.do("POST", "/v1.0/invoke/tick/method/hello", "x") },
			func() error {
				_, err := c.InvokeService(ctx, &runtimev1.InvokeServiceRequest{Id: "tick", Message: &commonv1.InvokeRequest{Method: "hello",
					Data: &anypb.Any{Value: []byte("x")}, HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_POST}}})
				return err
			}, codes.OK},
		{"a body over the limit",
			func() answer { return d.declareBody("POST", "/v1.0/actors/Tick/t1/method/ping", 4<<20+1) },
			func() error {
				_, err := c.InvokeActor(ctx, &runtimev1.InvokeActorRequest{ActorType: "Tick", ActorId: "t1", Method: "ping", Data: []byte(strings.Repeat("x", 4<<20+1))})
				return err
			}, codes.ResourceExhausted},
		{"invoke an unknown app",
			func() answer { return d.do("POST", "/v1.0/invoke/nobody/method/hello", "") },
			func() error {
				_, err := c.InvokeService(ctx, &runtimev1.InvokeServiceRequest{Id: "nobody", Message: &commonv1.InvokeRequest{Method: "hello"}})
				return err
			}, codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, g := httpOutcome(tc.http()), grpcOutcome(tc.grpc())
			if h != g || h.code != tc.want {
				t.Fatalf("HTTP %+v, gRPC %+v, want both %v", h, g, tc.want)
			}
		})
	}

	// Methods not served name themselves.
	_, err := c.InvokeBinding(ctx, &runtimev1.InvokeBindingRequest{Name: "b"})
	if st := status.Convert(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "InvokeBinding") {
		t.Fatalf("InvokeBinding: %v", err)
	}
}

func TestGRPCToken(t *testing.T) {
	d, addr := startDevGRPC(t, "--api-token", "secret")
	c := dialGRPC(t, addr)
	_, err := c.GetMetadata(context.Background(), &runtimev1.GetMetadataRequest{})
	if o, h := grpcOutcome(err), httpOutcome(d.do("GET", "/v1.0/metadata", "")); o != h || o.code != codes.Unauthenticated {
		t.Fatalf("without the token: gRPC %+v, HTTP %+v", o, h)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "dapr-api-token", "secret")
	if _, err := c.GetMetadata(ctx, &runtimev1.GetMetadataRequest{}); err != nil {
		t.Fatalf("with the token: %v", err)
	}
}

// TestGoSDK drives granary dev with Dapr's own Go SDK client: an actor
// call, a reminder that fires, state saved and read, a publish delivered,
// a service invocation and the metadata.
func TestGoSDK(t *testing.T) {
	app := newTickApp(t)
	_, addr := startDevGRPC(t, "--app-url", "tick="+app.srv.URL)
	t.Setenv("DAPR_API_TOKEN", "")
	client, err := dapr.NewClientWithAddress(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()

	resp, err := client.InvokeActor(ctx, &dapr.InvokeActorRequest{ActorType: "Tick", ActorID: "sdk", Method: "ping", Data: []byte(`{"n":1}`)})
	if err != nil || string(resp.Data) != `{"actor":"sdk","got":"{\"n\":1}"}` {
		t.Fatalf("InvokeActor: %+v, %v", resp, err)
	}
	if err := client.RegisterActorReminder(ctx, &dapr.RegisterActorReminderRequest{ActorType: "Tick", ActorID: "sdk", Name: "r",
		DueTime: "0s", Period: "200ms", Data: []byte(`{"from":"sdk"}`)}); err != nil {
		t.Fatalf("RegisterActorReminder: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "the reminder to fire twice", func() error {
		if n := app.firesOf("sdk"); n < 2 {
			return fmt.Errorf("%d fires", n)
		}
		return nil
	})
	if err := client.UnregisterActorReminder(ctx, &dapr.UnregisterActorReminderRequest{ActorType: "Tick", ActorID: "sdk", Name: "r"}); err != nil {
		t.Fatalf("UnregisterActorReminder: %v", err)
	}

	// State: bytes that are not JSON come back as they went in.
	if err := client.SaveState(ctx, "statestore", "greeting", []byte("hello"), nil); err != nil {
		t.Fatalf("SaveState: %v", err)
	}
	item, err := client.GetState(ctx, "statestore", "greeting", nil)
	if err != nil || string(item.Value) != "hello" || item.Etag == "" {
		t.Fatalf("GetState: %+v, %v", item, err)
	}
	if err := client.SaveStateWithETag(ctx, "statestore", "greeting", []byte("hi"), "stale", nil); status.Code(err) != codes.Aborted {
		t.Fatalf("SaveStateWithETag with a stale etag: %v", err)
	}
	if err := client.SaveStateWithETag(ctx, "statestore", "greeting", []byte("hi"), item.Etag, nil); err != nil {
		t.Fatalf("SaveStateWithETag: %v", err)
	}
	items, err := client.GetBulkState(ctx, "statestore", []string{"greeting", "absent"}, nil, 2)
	if err != nil || len(items) != 2 || string(items[0].Value) != "hi" || len(items[1].Value) != 0 {
		t.Fatalf("GetBulkState: %+v, %v", items, err)
	}
	if err := client.DeleteState(ctx, "statestore", "greeting", nil); err != nil {
		t.Fatalf("DeleteState: %v", err)
	}
	if item, err := client.GetState(ctx, "statestore", "greeting", nil); err != nil || len(item.Value) != 0 {
		t.Fatalf("GetState after the delete: %+v, %v", item, err)
	}

	// Pub/sub.
	if err := client.PublishEvent(ctx, "pubsub", "ticks", map[string]any{"seq": 7}); err != nil {
		t.Fatalf("PublishEvent: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "the event delivered", func() error {
		app.mu.Lock()
		defer app.mu.Unlock()
		for _, ev := range app.got {
			if data, ok := ev["data"].(map[string]any); ok && data["seq"] == float64(7) {
				return nil
			}
		}
		return fmt.Errorf("received %v", app.got)
	})

	// Service invocation and metadata.
	out, err := client.InvokeMethodWithContent(ctx, "tick", "hello", "post", &dapr.DataContent{ContentType: "text/plain", Data: []byte("there")})
	if err != nil || string(out) != "hello POST there" {
		t.Fatalf("InvokeMethodWithContent: %q, %v", out, err)
	}
	md, err := client.GetMetadata(ctx)
	if err != nil || md.ID != "tick" || len(md.RegisteredComponents) != 2 {
		t.Fatalf("GetMetadata: %+v, %v", md, err)
	}
}

// The Shutdown method stops granary dev as SIGTERM would.
func TestGRPCShutdown(t *testing.T) {
	d, addr := startDevGRPC(t)
	c := dialGRPC(t, addr)
	if _, err := c.Shutdown(context.Background(), &runtimev1.ShutdownRequest{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "granary dev to stop", func() error {
		resp, err := d.client.Get(d.base + "/v1.0/healthz")
		if err != nil {
			return nil
		}
		resp.Body.Close()
		return fmt.Errorf("healthz still answers %d", resp.StatusCode)
	})
	if !strings.Contains(d.logs.String(), "shutdown requested over the gRPC API") {
		t.Fatalf("no log line of the shutdown:\n%s", d.logs.String())
	}
}

// TestGRPCApp runs an app built on the Go SDK's gRPC service: invocations
// reach its OnInvoke, its subscriptions are read with
// ListTopicSubscriptions, and messages reach its OnTopicEvent.
func TestGRPCApp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := daprgrpc.NewServiceWithListener(ln)
	var mu sync.Mutex
	var events []*common.TopicEvent
	if err := svc.AddServiceInvocationHandler("echo", func(_ context.Context, in *common.InvocationEvent) (*common.Content, error) {
		return &common.Content{ContentType: "text/plain", Data: []byte(in.Verb + " " + in.QueryString + " " + string(in.Data))}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := svc.AddServiceInvocationHandler("fail", func(context.Context, *common.InvocationEvent) (*common.Content, error) {
		return nil, status.Error(codes.NotFound, "no such order")
	}); err != nil {
		t.Fatal(err)
	}
	if err := svc.AddTopicEventHandler(&common.Subscription{PubsubName: "pubsub", Topic: "orders", Route: "/orders"},
		func(_ context.Context, e *common.TopicEvent) (bool, error) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
			return false, nil
		}); err != nil {
		t.Fatal(err)
	}
	go svc.Start()
	t.Cleanup(func() { svc.Stop() })

	d := startDev(t, "--grpc-port", "0", "--app-url", "gapp=grpc://"+ln.Addr().String())
	got := d.do("PUT", "/v1.0/invoke/gapp/method/echo?x=1", "hi")
	if got.status != 200 || string(got.body) != "PUT x=1 hi" || got.header.Get("Content-Type") != "text/plain" {
		t.Fatalf("invoke a gRPC app: %s %v", got, got.header)
	}
	expect(t, "an app's error status", d.do("POST", "/v1.0/invoke/gapp/method/fail", ""), 404, "ERR_DIRECT_INVOKE")
	testutil.Eventually(t, 10*time.Second, "the gRPC app's subscription to be read", func() error {
		var md struct {
			Subscriptions []struct{ Topic string } `json:"subscriptions"`
		}
		json.Unmarshal(d.do("GET", "/v1.0/metadata", "").body, &md)
		if len(md.Subscriptions) != 1 || md.Subscriptions[0].Topic != "orders" {
			return fmt.Errorf("subscriptions %+v", md.Subscriptions)
		}
		return nil
	})
	expect(t, "publish", d.do("POST", "/v1.0/publish/pubsub/orders", `{"id":7}`, "Content-Type", "application/json"), 204, "")
	expect(t, "publish text", d.do("POST", "/v1.0/publish/pubsub/orders", `plain`, "Content-Type", "text/plain"), 204, "")
	testutil.Eventually(t, 10*time.Second, "both events at the gRPC app", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(events) < 2 {
			return fmt.Errorf("%d events", len(events))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	var texts []string
	for _, e := range events {
		if e.Topic != "orders" || e.PubsubName != "pubsub" || e.ID == "" {
			t.Errorf("event %+v", e)
		}
		texts = append(texts, string(e.RawData))
	}
	slices.Sort(texts)
	if !slices.Equal(texts, []string{`plain`, `{"id":7}`}) {
		t.Errorf("event data %q", texts)
	}
}

// TestGoSDKStreamingSubscription: a subscriber of the Go SDK's streaming
// API gets what is published, answers it, and stops getting messages once
// it closes; what it answered RETRY comes again.
func TestGoSDKStreamingSubscription(t *testing.T) {
	_, addr := startDevGRPC(t)
	t.Setenv("DAPR_API_TOKEN", "")
	client, err := dapr.NewClientWithAddress(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	sub, err := client.Subscribe(ctx, dapr.SubscriptionOptions{PubsubName: "pubsub", Topic: "live"})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer sub.Close()
	if err := client.PublishEvent(ctx, "pubsub", "live", map[string]int{"seq": 1}); err != nil {
		t.Fatal(err)
	}
	type received struct {
		msg *dapr.SubscriptionMessage
		err error
	}
	next := func() *dapr.SubscriptionMessage {
		t.Helper()
		ch := make(chan received, 1)
		go func() {
			m, err := sub.Receive()
			ch <- received{m, err}
		}()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("Receive: %v", r.err)
			}
			return r.msg
		case <-time.After(15 * time.Second):
			t.Fatal("no message within 15 s")
		}
		return nil
	}
	m := next()
	if m.Topic != "live" || string(m.RawData) != `{"seq":1}` {
		t.Fatalf("message %+v (data %s)", m.TopicEvent, m.RawData)
	}
	if err := m.Retry(); err != nil {
		t.Fatal(err)
	}
	again := next()
	if again.ID != m.ID {
		t.Fatalf("after a RETRY, message %s came instead of %s again", again.ID, m.ID)
	}
	if err := again.Success(); err != nil {
		t.Fatal(err)
	}
}

// declareBody sends a request's headers declaring a body of n bytes, but
// not the body, and reads the answer: a server that refuses such a body
// answers before any of it is sent.
func (d *devServer) declareBody(method, path string, n int) answer {
	d.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(d.base, "http://"))
	if err != nil {
		d.t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", method, path, n)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}
