package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/dapr/go-sdk/service/common"
	daprgrpc "github.com/dapr/go-sdk/service/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/granaryhq/granary/internal/testutil"
)

// TestGRPCActorTimer: a timer registered with RegisterActorTimer fires as
// the actor callback protocol says (PUT .../method/timer/{name} with its
// data and callback), and stops firing after UnregisterActorTimer.
func TestGRPCActorTimer(t *testing.T) {
	app := newTickApp(t)
	_, addr := startDevGRPC(t, "--app-url", "tick="+app.srv.URL)
	c := dialGRPC(t, addr)
	ctx := context.Background()
	if _, err := c.RegisterActorTimer(ctx, &runtimev1.RegisterActorTimerRequest{ActorType: "Tick", ActorId: "c1", Name: "tick",
		DueTime: "0s", Period: "100ms", Callback: "onTick", Data: []byte(`{"n":1}`)}); err != nil {
		t.Fatalf("RegisterActorTimer: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "the timer to fire twice", func() error {
		if n := len(app.timerFires()); n < 2 {
			return fmt.Errorf("%d fires", n)
		}
		return nil
	})
	f := app.timerFires()[0]
	if f.method != http.MethodPut || f.actor != "c1" || f.name != "tick" || f.body["callback"] != "onTick" || f.body["period"] != "100ms" {
		t.Fatalf("timer callback %+v", f)
	}
	if data, _ := f.body["data"].(map[string]any); data["n"] != float64(1) {
		t.Fatalf("timer data %v, want {\"n\":1}", f.body["data"])
	}
	if _, err := c.UnregisterActorTimer(ctx, &runtimev1.UnregisterActorTimerRequest{ActorType: "Tick", ActorId: "c1", Name: "tick"}); err != nil {
		t.Fatalf("UnregisterActorTimer: %v", err)
	}
	// A fire already under way may still land; none may after it.
	time.Sleep(200 * time.Millisecond)
	before := len(app.timerFires())
	time.Sleep(500 * time.Millisecond)
	if after := len(app.timerFires()); after != before {
		t.Fatalf("the timer fired %d more times after UnregisterActorTimer", after-before)
	}
}

// TestGRPCGetActorState: what ExecuteActorStateTransaction writes,
// GetActorState reads back, and an absent key (or a deleted one) reads as
// empty data without an error.
func TestGRPCGetActorState(t *testing.T) {
	app := newTickApp(t)
	d, addr := startDevGRPC(t, "--app-url", "tick="+app.srv.URL)
	c := dialGRPC(t, addr)
	ctx := context.Background()
	if _, err := c.InvokeActor(ctx, &runtimev1.InvokeActorRequest{ActorType: "Tick", ActorId: "s1", Method: "ping"}); err != nil {
		t.Fatalf("activate: %v", err)
	}
	if _, err := c.ExecuteActorStateTransaction(ctx, &runtimev1.ExecuteActorStateTransactionRequest{ActorType: "Tick", ActorId: "s1",
		Operations: []*runtimev1.TransactionalActorStateOperation{
			{OperationType: "upsert", Key: "k", Value: &anypb.Any{Value: []byte(`{"v":1}`)}},
			{OperationType: "upsert", Key: "gone", Value: &anypb.Any{Value: []byte(`2`)}},
		}}); err != nil {
		t.Fatalf("ExecuteActorStateTransaction: %v", err)
	}
	if _, err := c.ExecuteActorStateTransaction(ctx, &runtimev1.ExecuteActorStateTransactionRequest{ActorType: "Tick", ActorId: "s1",
		Operations: []*runtimev1.TransactionalActorStateOperation{{OperationType: "delete", Key: "gone"}}}); err != nil {
		t.Fatalf("ExecuteActorStateTransaction delete: %v", err)
	}
	got, err := c.GetActorState(ctx, &runtimev1.GetActorStateRequest{ActorType: "Tick", ActorId: "s1", Key: "k"})
	if err != nil || string(got.GetData()) != `{"v":1}` {
		t.Fatalf("GetActorState k: %q, %v", got.GetData(), err)
	}
	if h := d.do("GET", "/v1.0/actors/Tick/s1/state/k", ""); h.status != 200 || string(h.body) != string(got.GetData()) {
		t.Fatalf("HTTP GET of the key: %s, gRPC gave %q", h, got.GetData())
	}
	for _, key := range []string{"absent", "gone"} {
		got, err := c.GetActorState(ctx, &runtimev1.GetActorStateRequest{ActorType: "Tick", ActorId: "s1", Key: key})
		if err != nil || len(got.GetData()) != 0 {
			t.Fatalf("GetActorState %s: %q, %v, want empty data", key, got.GetData(), err)
		}
	}
}

// TestGRPCDeleteBulkState: DeleteBulkState deletes every key it is given;
// an ETag mismatch answers as the HTTP route does, and deletes nothing.
func TestGRPCDeleteBulkState(t *testing.T) {
	d, addr := startDevGRPC(t)
	c := dialGRPC(t, addr)
	ctx := context.Background()
	const store = "statestore"
	if _, err := c.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: store, States: []*commonv1.StateItem{
		{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}, {Key: "c", Value: []byte("3")}}}); err != nil {
		t.Fatalf("SaveState: %v", err)
	}
	value := func(key string) string {
		t.Helper()
		got, err := c.GetState(ctx, &runtimev1.GetStateRequest{StoreName: store, Key: key})
		if err != nil {
			t.Fatalf("GetState %s: %v", key, err)
		}
		return string(got.GetData())
	}
	if _, err := c.DeleteBulkState(ctx, &runtimev1.DeleteBulkStateRequest{StoreName: store,
		States: []*commonv1.StateItem{{Key: "a"}, {Key: "b"}}}); err != nil {
		t.Fatalf("DeleteBulkState: %v", err)
	}
	if a, b, cv := value("a"), value("b"), value("c"); a != "" || b != "" || cv != "3" {
		t.Fatalf("after DeleteBulkState of a and b: a=%q b=%q c=%q", a, b, cv)
	}

	_, err := c.DeleteBulkState(ctx, &runtimev1.DeleteBulkStateRequest{StoreName: store,
		States: []*commonv1.StateItem{{Key: "c", Etag: &commonv1.Etag{Value: "stale"}}}})
	g, h := grpcOutcome(err), httpOutcome(d.do("DELETE", "/v1.0/state/"+store+"/c", "", "If-Match", "stale"))
	if g != h || g.code != codes.Aborted {
		t.Fatalf("a stale etag: gRPC %+v, HTTP %+v, want both Aborted", g, h)
	}
	if v := value("c"); v != "3" {
		t.Fatalf("c after the refused delete: %q", v)
	}
	cur, err := c.GetState(ctx, &runtimev1.GetStateRequest{StoreName: store, Key: "c"})
	if err != nil || cur.GetEtag() == "" {
		t.Fatalf("GetState c: %+v, %v", cur, err)
	}
	if _, err := c.DeleteBulkState(ctx, &runtimev1.DeleteBulkStateRequest{StoreName: store,
		States: []*commonv1.StateItem{{Key: "c", Etag: &commonv1.Etag{Value: cur.GetEtag()}}}}); err != nil {
		t.Fatalf("DeleteBulkState with the current etag: %v", err)
	}
	if v := value("c"); v != "" {
		t.Fatalf("c after its delete: %q", v)
	}
}

// TestGRPCBulkPublish: the entries of BulkPublishEventAlpha1 reach a
// subscriber, each with its data and content type as given, and the
// answer lists no failed entry.
func TestGRPCBulkPublish(t *testing.T) {
	app := newSubscriberApp(t, `[{"pubsubname":"pubsub","topic":"bulk","route":"/bulk"}]`)
	_, addr := startDevGRPC(t, "--app-url", "shop="+app.srv.URL)
	c := dialGRPC(t, addr)
	entries := []*runtimev1.BulkPublishRequestEntry{
		{EntryId: "1", Event: []byte(`{"n":1}`), ContentType: "application/json"},
		{EntryId: "2", Event: []byte(`hello`), ContentType: "text/plain"},
		{EntryId: "3", Event: []byte(`"quoted"`), ContentType: "text/plain"},
		{EntryId: "4", Event: []byte(`"s"`), ContentType: "application/json"},
	}
	resp, err := c.BulkPublishEventAlpha1(context.Background(), &runtimev1.BulkPublishRequest{PubsubName: "pubsub", Topic: "bulk", Entries: entries})
	if err != nil || len(resp.GetFailedEntries()) != 0 {
		t.Fatalf("BulkPublishEventAlpha1: %+v, %v", resp, err)
	}
	waitDelivered(t, app, "/bulk", len(entries))
	got := map[string]string{}
	for _, ev := range app.received("/bulk") {
		data, _ := json.Marshal(ev["data"])
		got[fmt.Sprint(ev["datacontenttype"], " ", string(data))] = ""
	}
	for _, want := range []string{`application/json {"n":1}`, `text/plain "hello"`, `text/plain "\"quoted\""`, `application/json "s"`} {
		if _, ok := got[want]; !ok {
			t.Errorf("no event of content type and data %s; got %v", want, got)
		}
	}
}

// newGRPCApp serves a Go SDK gRPC app with an "echo" method and a health
// check (when healthErr is not nil) that answers the error healthErr holds
// and counts its calls in calls.
func newGRPCApp(t *testing.T, healthErr *atomic.Pointer[error], calls *atomic.Int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := daprgrpc.NewServiceWithListener(ln)
	if err := svc.AddServiceInvocationHandler("echo", func(_ context.Context, in *common.InvocationEvent) (*common.Content, error) {
		return &common.Content{ContentType: "text/plain", Data: []byte(in.Verb + " " + string(in.Data))}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if healthErr != nil {
		if err := svc.AddHealthCheckHandler("", func(context.Context) error {
			calls.Add(1)
			if e := healthErr.Load(); e != nil {
				return *e
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	go svc.Start()
	t.Cleanup(func() { svc.Stop() })
	return ln.Addr().String()
}

// appStatus is the app's entry in the metadata.
func appStatus(t *testing.T, d *devServer, id string) (url string, healthy bool, err error) {
	var md struct {
		Apps []struct {
			ID      string `json:"id"`
			URL     string `json:"url"`
			Healthy bool   `json:"healthy"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(d.do("GET", "/v1.0/metadata", "").body, &md); err != nil {
		t.Fatal(err)
	}
	for _, a := range md.Apps {
		if a.ID == id {
			return a.URL, a.Healthy, nil
		}
	}
	return "", false, fmt.Errorf("no app %s in the metadata: %+v", id, md.Apps)
}

// TestGRPCAppHealthCheck: a gRPC app's health is its
// AppCallbackHealthCheck: probed, healthy while it answers, and unhealthy
// once it answers Unavailable.
func TestGRPCAppHealthCheck(t *testing.T) {
	var healthErr atomic.Pointer[error]
	var calls atomic.Int64
	addr := newGRPCApp(t, &healthErr, &calls)
	d := startDev(t, "--grpc-port", "0", "--app-url", "gapp=grpc://"+addr)
	healthIs := func(want bool) func() error {
		return func() error {
			_, healthy, err := appStatus(t, d, "gapp")
			if err != nil {
				return err
			}
			if healthy != want {
				return fmt.Errorf("healthy %v after %d health checks", healthy, calls.Load())
			}
			return nil
		}
	}
	testutil.Eventually(t, 10*time.Second, "the app healthy", healthIs(true))
	if calls.Load() == 0 {
		t.Fatal("the app is healthy without its health check called")
	}
	down := status.Error(codes.Unavailable, "draining")
	healthErr.Store(&down)
	testutil.Eventually(t, 10*time.Second, "the app unhealthy", healthIs(false))
}

// TestGRPCAppProtocolFlag: with --app-protocol grpc, an http:// --app-url
// is a gRPC app: it is listed as grpc://, and invocations reach its OnInvoke.
func TestGRPCAppProtocolFlag(t *testing.T) {
	addr := newGRPCApp(t, nil, nil)
	d := startDev(t, "--grpc-port", "0", "--app-protocol", "grpc", "--app-url", "gapp=http://"+addr)
	if url, _, err := appStatus(t, d, "gapp"); err != nil || url != "grpc://"+addr {
		t.Fatalf("the app's URL %q (%v), want grpc://%s", url, err, addr)
	}
	got := d.do("POST", "/v1.0/invoke/gapp/method/echo", "hi")
	if got.status != 200 || string(got.body) != "POST hi" {
		t.Fatalf("invoke the app: %s", got)
	}
	if _, err := parseDevFlags([]string{"--app-protocol", "h2c"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--app-protocol") {
		t.Fatalf("--app-protocol h2c: %v", err)
	}
}
