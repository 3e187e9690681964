package pubsub

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestPublishDeliversCloudEvent(t *testing.T) {
	h := newSilo(t, testConfig())
	app := h.subscribe("orders-app", subsJSON(Subscription{PubsubName: "pubsub", Topic: "orders", Route: "/orders"}))
	tests := []struct {
		name, contentType, body string
		headers                 []string
		check                   func(t *testing.T, ev map[string]any)
	}{
		{name: "json", contentType: "application/json", body: `{"n":1}`, check: func(t *testing.T, ev map[string]any) {
			if d, ok := ev["data"].(map[string]any); !ok || d["n"] != 1.0 {
				t.Errorf("data = %#v, want the JSON object", ev["data"])
			}
			if ev["datacontenttype"] != "application/json" {
				t.Errorf("datacontenttype = %v", ev["datacontenttype"])
			}
		}},
		{name: "json without content type", body: `[1,2]`, check: func(t *testing.T, ev map[string]any) {
			if d, ok := ev["data"].([]any); !ok || len(d) != 2 || ev["datacontenttype"] != "application/json" {
				t.Errorf("data = %#v (%v), want the JSON array", ev["data"], ev["datacontenttype"])
			}
		}},
		{name: "text", contentType: "text/plain", body: `hello`, check: func(t *testing.T, ev map[string]any) {
			if ev["data"] != "hello" || ev["datacontenttype"] != "text/plain" {
				t.Errorf("data = %#v (%v), want the string", ev["data"], ev["datacontenttype"])
			}
		}},
		{name: "text without content type", body: `not json`, check: func(t *testing.T, ev map[string]any) {
			if ev["data"] != "not json" || ev["datacontenttype"] != "text/plain" {
				t.Errorf("data = %#v (%v), want the string", ev["data"], ev["datacontenttype"])
			}
		}},
		{name: "trace", contentType: "application/json", body: `{}`, headers: []string{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
			check: func(t *testing.T, ev map[string]any) {
				if ev["traceparent"] != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" || ev["traceid"] != ev["traceparent"] {
					t.Errorf("traceparent = %v, traceid = %v", ev["traceparent"], ev["traceid"])
				}
			}},
		{name: "custom cloudevent", contentType: "application/cloudevents+json",
			body: `{"specversion":"1.0","id":"my-id","source":"me","type":"my.type","subject":"s1","datacontenttype":"application/json","data":{"x":true}}`,
			check: func(t *testing.T, ev map[string]any) {
				if ev["id"] != "my-id" || ev["source"] != "me" || ev["type"] != "my.type" || ev["subject"] != "s1" {
					t.Errorf("custom attributes changed: %v", ev)
				}
				if d, ok := ev["data"].(map[string]any); !ok || d["x"] != true {
					t.Errorf("data = %#v", ev["data"])
				}
			}},
		{name: "custom cloudevent with defaults", contentType: "application/cloudevents+json", body: `{"data":"x"}`,
			check: func(t *testing.T, ev map[string]any) {
				if !uuidRE.MatchString(ev["id"].(string)) || ev["specversion"] != "1.0" || ev["type"] != "com.dapr.event.sent" {
					t.Errorf("defaults not filled in: %v", ev)
				}
			}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.publish("orders", "", tc.contentType, tc.body, tc.headers...)
			waitFor(t, "the delivery", func() bool { return len(app.deliveries()) > i })
			d := app.deliveries()[i]
			if d.path != "/orders" || d.contentType != "application/cloudevents+json" {
				t.Fatalf("delivered to %s as %s", d.path, d.contentType)
			}
			ev := d.ev
			if ev == nil {
				t.Fatalf("delivery is not a CloudEvent: %s", d.body)
			}
			if ev["topic"] != "orders" || ev["pubsubname"] != "pubsub" {
				t.Errorf("topic %v, pubsubname %v", ev["topic"], ev["pubsubname"])
			}
			if tc.contentType != "application/cloudevents+json" {
				if !uuidRE.MatchString(fmt.Sprint(ev["id"])) || ev["source"] != "granary" || ev["type"] != "com.dapr.event.sent" || ev["specversion"] != "1.0" {
					t.Errorf("envelope attributes: %v", ev)
				}
				if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(ev["time"])); err != nil {
					t.Errorf("time: %v", err)
				}
			}
			tc.check(t, ev)
		})
	}
}

func TestRawPayload(t *testing.T) {
	h := newSilo(t, testConfig())
	raw := h.subscribe("raw-app", subsJSON(Subscription{PubsubName: "pubsub", Topic: "t", Route: "/raw", Metadata: map[string]string{"rawPayload": "true"}}))
	wrapped := h.subscribe("ce-app", subsJSON(Subscription{PubsubName: "pubsub", Topic: "t", Route: "/ce"}))

	// A raw publish: the raw subscriber gets the bytes as sent, the other a
	// CloudEvent around them.
	h.publish("t", "?metadata.rawPayload=true", "application/xml", `<a>1</a>`)
	waitFor(t, "both deliveries", func() bool { return len(raw.deliveries()) == 1 && len(wrapped.deliveries()) == 1 })
	if d := raw.deliveries()[0]; string(d.body) != `<a>1</a>` || d.contentType != "application/xml" {
		t.Errorf("raw subscriber got %q as %s", d.body, d.contentType)
	}
	d := wrapped.deliveries()[0]
	if d.contentType != "application/cloudevents+json" || d.ev["data_base64"] != "PGE+MTwvYT4=" || d.ev["topic"] != "t" {
		t.Errorf("wrapped subscriber got %s as %s", d.body, d.contentType)
	}

	// A wrapped publish: the raw subscriber gets the data unwrapped.
	h.publish("t", "?metadata.partitionKey=k", "application/json", `{"k":"v"}`)
	h.publish("t", "?metadata.partitionKey=k", "text/plain", `plain words`)
	waitFor(t, "the deliveries", func() bool { return len(raw.deliveries()) == 3 })
	got := raw.deliveries()
	if string(got[1].body) != `{"k":"v"}` || got[1].contentType != "application/json" {
		t.Errorf("raw subscriber got %q as %s", got[1].body, got[1].contentType)
	}
	if string(got[2].body) != `plain words` || got[2].contentType != "text/plain" {
		t.Errorf("raw subscriber got %q as %s", got[2].body, got[2].contentType)
	}
}

func TestTTLExpiresUndeliveredMessages(t *testing.T) {
	fake := clock.NewFake(time.Unix(1_700_000_000, 0))
	cfg := testConfig()
	cfg.Clock = fake
	cfg.RetrySchedule = []time.Duration{10 * time.Second}
	h := newSilo(t, cfg)
	app := h.subscribe("a", subsJSON(Subscription{PubsubName: "pubsub", Topic: "t", Route: "/t"}))
	app.setRespond(func(d delivery, nth int) (int, string) {
		if d.ev["data"] == "first" {
			return http.StatusOK, `{"status":"RETRY"}`
		}
		return http.StatusOK, ""
	})
	h.publish("t", "?metadata.ttlInSeconds=5&metadata.partitionKey=k", "text/plain", "first")
	h.publish("t", "?metadata.partitionKey=k", "text/plain", "second")
	waitFor(t, "the first attempt", func() bool { return len(app.deliveries()) == 1 })
	settle()
	if n := len(app.deliveries()); n != 1 {
		t.Fatalf("%d deliveries while the first message waits for its retry", n)
	}
	// The retry comes after the message expired: it is skipped, and the
	// second message follows.
	waitFor(t, "the retry timer", func() bool { return fake.Pending() > 0 })
	fake.Advance(10 * time.Second)
	waitFor(t, "the second message", func() bool { return len(app.deliveries()) == 2 })
	if d := app.deliveries()[1]; d.ev["data"] != "second" {
		t.Fatalf("second delivery is %s", d.body)
	}

	// A TTL that is not a number is refused.
	rc := request("/v1.0/publish/pubsub/t?metadata.ttlInSeconds=soon", "text/plain", "x")
	if st, code := errorCode(h.svc.ServePublish(rc, "t")); st != 400 || code != ErrRequestMetadata {
		t.Fatalf("bad ttl: %d %s", st, code)
	}
}

func TestOrderPerPartitionKey(t *testing.T) {
	h := newSilo(t, testConfig())
	app := h.subscribe("a", subsJSON(Subscription{PubsubName: "pubsub", Topic: "t", Route: "/t"}))
	// Every fifth message fails once: it is retried before any later one.
	app.setRespond(func(d delivery, nth int) (int, string) {
		n, _ := d.ev["data"].(map[string]any)["n"].(float64)
		if int(n)%5 == 0 && nth == 1 {
			return http.StatusInternalServerError, ""
		}
		return http.StatusOK, `{"status":"SUCCESS"}`
	})
	const N = 60
	for i := range N {
		key := []string{"alpha", "beta", "gamma"}[i%3]
		h.publish("t", "?metadata.partitionKey="+key, "application/json", fmt.Sprintf(`{"n":%d,"key":%q}`, i, key))
	}
	waitFor(t, "all deliveries", func() bool { return len(app.deliveries()) >= N+N/5 })
	last := map[string]int{"alpha": -1, "beta": -1, "gamma": -1}
	for _, d := range app.deliveries() {
		data := d.ev["data"].(map[string]any)
		n, key := int(data["n"].(float64)), data["key"].(string)
		if n < last[key] {
			t.Fatalf("key %s: message %d after %d", key, n, last[key])
		}
		last[key] = n
	}
	for key, n := range last {
		if n < N-3 {
			t.Errorf("key %s: last message %d", key, n)
		}
	}
}

func TestAppAnswers(t *testing.T) {
	tests := []struct {
		name    string
		respond func(nth int) (int, string)
		want    int // deliveries of the message
		dropLog bool
	}{
		{name: "empty 200", respond: func(int) (int, string) { return 200, "" }, want: 1},
		{name: "empty 204", respond: func(int) (int, string) { return 204, "" }, want: 1},
		{name: "SUCCESS", respond: func(int) (int, string) { return 200, `{"status":"SUCCESS"}` }, want: 1},
		{name: "RETRY twice then SUCCESS", respond: func(n int) (int, string) {
			if n <= 2 {
				return 200, `{"status":"RETRY"}`
			}
			return 200, `{"status":"SUCCESS"}`
		}, want: 3},
		{name: "DROP", respond: func(int) (int, string) { return 200, `{"status":"DROP"}` }, want: 1, dropLog: true},
		{name: "non-200", respond: func(n int) (int, string) {
			if n == 1 {
				return 503, "busy"
			}
			return 200, ""
		}, want: 2},
		{name: "404", respond: func(n int) (int, string) {
			if n == 1 {
				return 404, ""
			}
			return 200, ""
		}, want: 2},
		{name: "garbage body", respond: func(n int) (int, string) {
			if n == 1 {
				return 200, "<html>oops"
			}
			return 200, ""
		}, want: 2},
		{name: "unknown status", respond: func(n int) (int, string) {
			if n == 1 {
				return 200, `{"status":"MAYBE"}`
			}
			return 200, ""
		}, want: 2},
		{name: "hangs", respond: func(n int) (int, string) {
			if n == 1 {
				return 0, "" // hang
			}
			return 200, ""
		}, want: 2},
	}
	cfg := testConfig()
	cfg.DeliveryTimeout = 200 * time.Millisecond
	h := newSilo(t, cfg)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			topic := "t" + strconv.Itoa(i)
			app := h.subscribe("app"+strconv.Itoa(i), subsJSON(Subscription{PubsubName: "pubsub", Topic: topic, Route: "/r"}))
			app.setRespond(func(d delivery, nth int) (int, string) {
				if d.ev["data"] == "next" {
					return 200, ""
				}
				return tc.respond(nth)
			})
			h.publish(topic, "?metadata.partitionKey=k", "text/plain", "msg")
			h.publish(topic, "?metadata.partitionKey=k", "text/plain", "next")
			waitFor(t, "the next message", func() bool {
				ds := app.deliveries()
				return len(ds) > 0 && ds[len(ds)-1].ev["data"] == "next"
			})
			settle()
			ds := app.deliveries()
			if got := len(ds) - 1; got != tc.want {
				t.Fatalf("message delivered %d times, want %d", got, tc.want)
			}
			if tc.dropLog && !h.logs.find("dropped", "topic="+topic, "id="+ds[0].id()) {
				t.Errorf("no drop logged")
			}
		})
	}
}

func TestRetryLimit(t *testing.T) {
	h := newSilo(t, testConfig()) // three retries
	withDL := h.subscribe("dl-app", subsJSON(
		Subscription{PubsubName: "pubsub", Topic: "jobs", Route: "/jobs", DeadLetterTopic: "dead"},
		Subscription{PubsubName: "pubsub", Topic: "dead", Route: "/dead"},
	))
	withDL.setRespond(func(d delivery, _ int) (int, string) {
		if d.path == "/jobs" {
			return 500, ""
		}
		return 200, ""
	})
	without := h.subscribe("plain-app", subsJSON(Subscription{PubsubName: "pubsub", Topic: "jobs2", Route: "/jobs"}))
	without.setRespond(func(delivery, int) (int, string) { return 200, `{"status":"RETRY"}` })

	h.publish("jobs", "", "text/plain", "work")
	waitFor(t, "the dead letter", func() bool { return len(withDL.ids("/dead")) == 1 })
	if n := len(withDL.ids("/jobs")); n != 4 {
		t.Errorf("delivered %d times before dead-lettering, want 4 (1 + 3 retries)", n)
	}
	if withDL.ids("/dead")[0] != withDL.ids("/jobs")[0] {
		t.Errorf("dead letter %s is not the message %s", withDL.ids("/dead")[0], withDL.ids("/jobs")[0])
	}
	dead := withDL.deliveries()[len(withDL.deliveries())-1]
	if dead.ev["data"] != "work" {
		t.Errorf("dead letter carries %s", dead.body)
	}

	h.publish("jobs2", "", "text/plain", "work")
	waitFor(t, "the drop", func() bool { return h.logs.find("dropped after its last retry", "topic=jobs2") })
	ids := without.ids("/jobs")
	if len(ids) != 4 {
		t.Errorf("delivered %d times before dropping, want 4", len(ids))
	}
	if !h.logs.find("WARN", "dropped after its last retry", "pubsub=pubsub", "topic=jobs2", "app=plain-app", "id="+ids[0]) {
		t.Errorf("the drop log misses a field: %v", h.logs.recs)
	}
}

func TestRoutingRules(t *testing.T) {
	h := newSilo(t, testConfig())
	app := h.subscribe("a", subsJSON(
		Subscription{PubsubName: "pubsub", Topic: "t", Routes: &Routes{
			Rules: []Rule{
				{Match: `event.type == "widget"`, Path: "/widgets"},
				{Match: `this is not CEL (`, Path: "/broken"},
				{Match: `event.data.price > 100 && has(event.data.sku)`, Path: "/expensive"},
			},
			Default: "/other",
		}},
		Subscription{PubsubName: "pubsub", Topic: "norules", Routes: &Routes{
			Rules: []Rule{{Match: `event.data.keep == true`, Path: "/kept"}},
		}},
	))
	h.publish("t", "", "application/cloudevents+json", `{"specversion":"1.0","id":"w","source":"s","type":"widget","data":{"price":500,"sku":"x"}}`)
	h.publish("t", "", "application/json", `{"price":500,"sku":"y"}`)
	h.publish("t", "", "application/json", `{"price":5,"sku":"z"}`)
	h.publish("t", "", "application/json", `{"price":500}`)
	waitFor(t, "four deliveries", func() bool { return len(app.deliveries()) == 4 })
	paths := map[string]int{}
	for _, d := range app.deliveries() {
		paths[d.path]++
	}
	want := map[string]int{"/widgets": 1, "/expensive": 1, "/other": 2}
	if fmt.Sprint(paths) != fmt.Sprint(want) {
		t.Fatalf("routes %v, want %v", paths, want)
	}
	// Without a default, an unmatched message is acknowledged undelivered.
	h.publish("norules", "?metadata.partitionKey=k", "application/json", `{"keep":false}`)
	h.publish("norules", "?metadata.partitionKey=k", "application/json", `{"keep":true}`)
	waitFor(t, "the kept message", func() bool { return len(app.ids("/kept")) == 1 })
	settle()
	if n := len(app.deliveries()); n != 5 {
		t.Fatalf("%d deliveries, want 5", n)
	}
	infos := h.svc.Subscriptions("a")
	if len(infos) != 2 || len(infos[0].Rules) != 3 || infos[0].Rules[2].Path != "/other" || infos[0].Type != "programmatic" {
		t.Fatalf("Subscriptions: %+v", infos)
	}
}

func TestEachAppIDGetsEveryMessageOnce(t *testing.T) {
	h := newSilo(t, testConfig())
	sub := subsJSON(Subscription{PubsubName: "pubsub", Topic: "t", Route: "/t"})
	a := h.subscribe("a", sub)
	b := h.subscribe("b", sub)
	// Two instances of app c: each message reaches one of them.
	c1 := h.subscribe("c", sub)
	c2 := h.subscribe("c", sub)
	const N = 40
	for i := range N {
		h.publish("t", "", "application/json", strconv.Itoa(i))
	}
	count := func(apps ...*fakeApp) map[string]int {
		m := map[string]int{}
		for _, app := range apps {
			for _, id := range app.ids("") {
				m[id]++
			}
		}
		return m
	}
	waitFor(t, "all deliveries", func() bool {
		return len(count(a)) == N && len(count(b)) == N && len(count(c1, c2)) == N
	})
	settle()
	for name, m := range map[string]map[string]int{"a": count(a), "b": count(b), "c": count(c1, c2)} {
		for id, n := range m {
			if n != 1 {
				t.Errorf("app %s got %s %d times", name, id, n)
			}
		}
	}
	if len(c1.ids("")) == 0 || len(c2.ids("")) == 0 {
		t.Errorf("one instance of c got nothing: %d and %d", len(c1.ids("")), len(c2.ids("")))
	}
}

func TestTrimsDeliveredMessagesAndDeletesReminder(t *testing.T) {
	h := newSilo(t, testConfig())
	a := h.subscribe("a", subsJSON(Subscription{PubsubName: "pubsub", Topic: "t", Route: "/t"}))
	b := h.subscribe("b", subsJSON(Subscription{PubsubName: "pubsub", Topic: "t", Route: "/t"}))
	block := make(chan struct{})
	var once sync.Once
	b.setRespond(func(d delivery, nth int) (int, string) {
		<-block
		return 200, ""
	})
	t.Cleanup(func() { once.Do(func() { close(block) }) })
	const N = 10
	for i := range N {
		h.publish("t", "?metadata.partitionKey=k", "text/plain", strconv.Itoa(i))
	}
	pid := actor.ID{Type: h.svc.actorType, ID: fmt.Sprintf("%d.t", h.svc.partitionOf("k"))}
	stored := func() int {
		keys := make([]string, N)
		for i := range keys {
			keys[i] = statestore.ActorStateKey(pid.Type, pid.ID, msgKey(uint64(i)))
		}
		items, err := h.store.BulkGet(context.Background(), keys)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, it := range items {
			if it.Exists() {
				n++
			}
		}
		return n
	}
	reminder := func() bool {
		_, err := h.store.Get(context.Background(), statestore.ReminderKey(pid.Type, pid.ID, recoverReminder))
		return err == nil
	}
	waitFor(t, "a's deliveries", func() bool { return len(a.deliveries()) == N })
	settle()
	if n := stored(); n != N {
		t.Fatalf("%d messages stored while b has acknowledged none, want %d", n, N)
	}
	if !reminder() {
		t.Fatalf("no recover reminder while messages are undelivered")
	}
	once.Do(func() { close(block) })
	waitFor(t, "trimming", func() bool { return stored() == 0 })
	waitFor(t, "the reminder's deletion", func() bool { return !reminder() })
	item, err := h.store.Get(context.Background(), statestore.ActorStateKey(pid.Type, pid.ID, keyHead))
	if err != nil || string(item.Value) != strconv.Itoa(N) {
		t.Fatalf("head = %q, %v", item.Value, err)
	}
}

// killableStore fails every call once killed, as if its process had died.
type killableStore struct {
	statestore.Store
	mu     sync.Mutex
	killed bool
}

func (k *killableStore) kill() { k.mu.Lock(); k.killed = true; k.mu.Unlock() }
func (k *killableStore) dead() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.killed {
		return fmt.Errorf("process killed")
	}
	return nil
}
func (k *killableStore) Get(ctx context.Context, key string) (statestore.Item, error) {
	if err := k.dead(); err != nil {
		return statestore.Item{}, err
	}
	return k.Store.Get(ctx, key)
}
func (k *killableStore) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	if err := k.dead(); err != nil {
		return nil, err
	}
	return k.Store.BulkGet(ctx, keys)
}
func (k *killableStore) Transact(ctx context.Context, txn statestore.Txn) error {
	if err := k.dead(); err != nil {
		return err
	}
	return k.Store.Transact(ctx, txn)
}
func (k *killableStore) Scan(ctx context.Context, index, after string, limit int) ([]statestore.Item, error) {
	if err := k.dead(); err != nil {
		return nil, err
	}
	return k.Store.Scan(ctx, index, after, limit)
}
func (k *killableStore) Close() error { return nil }

func TestCrashResumesDeliveryFromReminders(t *testing.T) {
	mem := memstore.New()
	defer mem.Close()
	first := &killableStore{Store: mem}
	cfg := testConfig()
	cfg.RetrySchedule = []time.Duration{time.Hour} // the first silo never retries in time
	apps1 := newFakeApps()
	h1 := start(t, first, apps1, cfg)
	sub := subsJSON(Subscription{PubsubName: "pubsub", Topic: "t", Route: "/t"})
	app1 := h1.subscribe("a", sub)
	// The subscriber takes the first half and fails on the rest.
	const N = 40
	app1.setRespond(func(d delivery, _ int) (int, string) {
		if n, _ := strconv.Atoi(fmt.Sprint(d.ev["data"])); n < N/2 {
			return 200, ""
		}
		return 500, ""
	})
	published := map[string]bool{}
	for i := range N {
		rc := request("/v1.0/publish/pubsub/t", "text/plain", strconv.Itoa(i))
		if err := h1.svc.ServePublish(rc, "t"); err != nil {
			t.Fatal(err)
		}
		published[strconv.Itoa(i)] = true
	}
	// Every partition holding messages of the second half has tried one.
	waitFor(t, "deliveries on the first silo", func() bool { return len(app1.deliveries()) >= N/2 })
	settle()
	first.kill() // nothing the first silo does from now on reaches the store
	h1.stop()

	apps2 := newFakeApps()
	cfg.RetrySchedule = nil
	h2 := start(t, mem, apps2, cfg)
	app2 := newFakeApp(t, sub)
	apps2.add("a", app2.srv.URL) // no SyncApp: the stored subscription is used
	delivered := func() map[string]bool {
		m := map[string]bool{}
		for _, app := range []*fakeApp{app1, app2} {
			for _, d := range app.deliveries() {
				status := 200
				if app == app1 {
					if n, _ := strconv.Atoi(fmt.Sprint(d.ev["data"])); n >= N/2 {
						status = 500
					}
				}
				if status == 200 {
					m[fmt.Sprint(d.ev["data"])] = true
				}
			}
		}
		return m
	}
	waitFor(t, "every message delivered after the restart", func() bool { return len(delivered()) == N })
	for v := range delivered() {
		if !published[v] {
			t.Errorf("delivered %q, never published", v)
		}
	}
	if len(app2.deliveries()) < N/2 {
		t.Errorf("the second silo delivered %d, want at least %d", len(app2.deliveries()), N/2)
	}
	// Once everything is delivered the partitions delete their reminders.
	waitFor(t, "the reminders' deletion", func() bool {
		for _, id := range partitionIDs(h2, "t") {
			if _, err := mem.Get(context.Background(), statestore.ReminderKey(id.Type, id.ID, recoverReminder)); err == nil {
				return false
			}
		}
		return true
	})
}

func TestMalformedRequests(t *testing.T) {
	h := newSilo(t, testConfig())
	tests := []struct {
		name, topic, query, contentType, body string
		status                                int
		code                                  string
	}{
		{"empty topic", "", "", "text/plain", "x", 404, ErrTopicNameEmpty},
		{"topic too long", strings.Repeat("x", 2000), "", "text/plain", "x", 400, ErrMalformedRequest},
		{"topic not UTF-8", "a\xffb", "", "text/plain", "x", 400, ErrMalformedRequest},
		{"cloudevent not JSON", "t", "", "application/cloudevents+json", "{nope", 400, ErrMalformedRequest},
		{"cloudevent not an object", "t", "", "application/cloudevents+json", `[1]`, 400, ErrMalformedRequest},
		{"cloudevent bad id", "t", "", "application/cloudevents+json", `{"id":5}`, 400, ErrMalformedRequest},
		{"cloudevent bad specversion", "t", "", "application/cloudevents+json", `{"specversion":"0.3"}`, 400, ErrMalformedRequest},
		{"bad rawPayload", "t", "?metadata.rawPayload=perhaps", "text/plain", "x", 400, ErrRequestMetadata},
		{"bad ttl", "t", "?metadata.ttlInSeconds=-1", "text/plain", "x", 400, ErrRequestMetadata},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := request("/v1.0/publish/pubsub/x"+tc.query, tc.contentType, tc.body)
			st, code := errorCode(h.svc.ServePublish(rc, tc.topic))
			if st != tc.status || code != tc.code {
				t.Fatalf("got %d %s, want %d %s", st, code, tc.status, tc.code)
			}
		})
	}
	// Topics with characters actor IDs forbid are escaped, not refused.
	app := h.subscribe("a", subsJSON(Subscription{PubsubName: "pubsub", Topic: "a/b#c?d%e", Route: "/x"}))
	h.publish("a/b#c?d%e", "", "text/plain", "odd")
	waitFor(t, "the delivery", func() bool { return len(app.deliveries()) == 1 })
	if got := app.deliveries()[0].ev["topic"]; got != "a/b#c?d%e" {
		t.Fatalf("topic %v", got)
	}
}

func TestBulkPublish(t *testing.T) {
	h := newSilo(t, testConfig())
	app := h.subscribe("a", subsJSON(Subscription{PubsubName: "pubsub", Topic: "t", Route: "/t"}))
	body := `[
		{"entryId":"1","event":"first text","contentType":"text/plain"},
		{"entryId":"2","event":{"n":2},"contentType":"application/json"},
		{"entryId":"3","event":{"specversion":"1.0","id":"ce-3","source":"s","type":"x","data":3}},
		{"entryId":"4","event":"raw bytes","metadata":{"rawPayload":"true"}}
	]`
	rc := request("/v1.0-alpha1/publish/bulk/pubsub/t", "application/json", body)
	if err := h.svc.ServeBulkPublish(rc, "t"); err != nil || rc.Response.StatusCode() != 204 {
		t.Fatalf("bulk publish: %v %d %s", err, rc.Response.StatusCode(), rc.Response.Body())
	}
	waitFor(t, "four deliveries", func() bool { return len(app.deliveries()) == 4 })
	var texts []string
	for _, d := range app.deliveries() {
		switch {
		case d.ev["data"] != nil:
			b, _ := json.Marshal(d.ev["data"])
			texts = append(texts, string(b))
		default:
			texts = append(texts, fmt.Sprint(d.ev["data_base64"]))
		}
	}
	slices.Sort(texts)
	want := []string{`"first text"`, `3`, `cmF3IGJ5dGVz`, `{"n":2}`}
	if fmt.Sprint(texts) != fmt.Sprint(want) {
		t.Fatalf("delivered %v, want %v", texts, want)
	}
	// The object form.
	rc = request("/v1.0-alpha1/publish/bulk/pubsub/t", "application/json", `{"entries":[{"entryId":"x","event":"y"}]}`)
	if err := h.svc.ServeBulkPublish(rc, "t"); err != nil || rc.Response.StatusCode() != 204 {
		t.Fatalf("bulk publish of an object: %v %d", err, rc.Response.StatusCode())
	}

	for _, tc := range []struct{ name, body string }{
		{"not JSON", `nope`},
		{"no entries", `[]`},
		{"no entryId", `[{"event":"x"}]`},
		{"duplicate entryId", `[{"entryId":"1","event":"x"},{"entryId":"1","event":"y"}]`},
		{"no event", `[{"entryId":"1"}]`},
		{"bad cloudevent", `[{"entryId":"1","event":[1],"contentType":"application/cloudevents+json"}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := request("/v1.0-alpha1/publish/bulk/pubsub/t", "application/json", tc.body)
			if st, code := errorCode(h.svc.ServeBulkPublish(rc, "t")); st != 400 || code != ErrMalformedRequest {
				t.Fatalf("got %d %s", st, code)
			}
		})
	}
}

func TestBulkPublishPartialFailure(t *testing.T) {
	h := newSilo(t, testConfig())
	bad := h.svc.partitionOf("bad")
	badID, _ := topicActorID(bad, "t")
	h.actors.fail = func(id actor.ID) error {
		if id.ID == badID {
			return fmt.Errorf("store unavailable")
		}
		return nil
	}
	good := "good"
	for h.svc.partitionOf(good) == bad {
		good += "x"
	}
	body := fmt.Sprintf(`[{"entryId":"1","event":"a","metadata":{"partitionKey":"bad"}},{"entryId":"2","event":"b","metadata":{"partitionKey":%q}}]`, good)
	rc := request("/v1.0-alpha1/publish/bulk/pubsub/t", "application/json", body)
	if err := h.svc.ServeBulkPublish(rc, "t"); err != nil {
		t.Fatal(err)
	}
	var out struct {
		FailedEntries []struct{ EntryID, Error string }
		ErrorCode     string
	}
	if err := json.Unmarshal(rc.Response.Body(), &out); err != nil {
		t.Fatalf("answer %s: %v", rc.Response.Body(), err)
	}
	if rc.Response.StatusCode() != 500 || out.ErrorCode != ErrPublishMessage || len(out.FailedEntries) != 1 || out.FailedEntries[0].EntryID != "1" {
		t.Fatalf("answer %d %s", rc.Response.StatusCode(), rc.Response.Body())
	}
	// A single publish to the failing partition is a 500.
	rc = request("/v1.0/publish/pubsub/t?metadata.partitionKey=bad", "text/plain", "x")
	if st, code := errorCode(h.svc.ServePublish(rc, "t")); st != 500 || code != ErrPublishMessage {
		t.Fatalf("got %d %s", st, code)
	}
}

func TestSubscriptionsLifecycle(t *testing.T) {
	cfg := testConfig()
	cfg.Subscriptions = []Subscription{
		{PubsubName: "pubsub", Topic: "decl", Route: "/decl", Scopes: []string{"a"}},
		{PubsubName: "pubsub", Topic: "everyone", Route: "/all"},
		{PubsubName: "other", Topic: "elsewhere", Route: "/x"},
	}
	h := newSilo(t, cfg)
	a := h.subscribe("a", subsJSON(
		Subscription{PubsubName: "pubsub", Topic: "prog", Route: "/prog"},
		Subscription{PubsubName: "other", Topic: "prog", Route: "/other"},
	))
	b := h.subscribe("b", "") // 404: no programmatic subscriptions
	kinds := func(app string) []string {
		var out []string
		for _, s := range h.svc.Subscriptions(app) {
			out = append(out, s.Topic+":"+s.Type)
		}
		slices.Sort(out)
		return out
	}
	if got := fmt.Sprint(kinds("a")); got != "[decl:declarative everyone:declarative prog:programmatic]" {
		t.Fatalf("a: %s", got)
	}
	if got := fmt.Sprint(kinds("b")); got != "[everyone:declarative]" {
		t.Fatalf("b: %s", got)
	}
	h.publish("decl", "", "text/plain", "1")
	h.publish("everyone", "", "text/plain", "2")
	h.publish("prog", "", "text/plain", "3")
	waitFor(t, "deliveries", func() bool { return len(a.deliveries()) == 3 && len(b.deliveries()) == 1 })

	// Another silo on the same store sees the stored subscriptions.
	h2 := start(t, h.store, h.apps, testConfig())
	waitFor(t, "the other silo's view", func() bool { return len(h2.svc.Subscriptions("a")) == 1 })
	h2.stop()

	if err := h.svc.ForgetApp(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	h.publish("prog", "", "text/plain", "4")
	h.publish("everyone", "", "text/plain", "5")
	waitFor(t, "b's delivery", func() bool { return len(b.deliveries()) == 2 })
	settle()
	if n := len(a.deliveries()); n != 3 {
		t.Fatalf("a got %d deliveries after it was forgotten", n-3)
	}
}

func TestMatchExpressions(t *testing.T) {
	ev := map[string]any{
		"id": "1", "type": "order.created", "source": "shop", "subject": "",
		"data": map[string]any{"price": 150.0, "tags": []any{"a", "b"}, "customer": map[string]any{"name": "Ann"}, "qty": 3.0},
	}
	tests := []struct {
		expr    string
		want    bool
		compile bool // false: must not compile
	}{
		{`event.type == "order.created"`, true, true},
		{`event.type != "order.created"`, false, true},
		{`event.data.price > 100`, true, true},
		{`event.data.price >= 150.0 && event.data.price < 151`, true, true},
		{`event.data.qty == 3`, true, true},
		{`event.data.qty * 2 == 6 && event.data.qty % 2 == 1`, false, true}, // % of doubles is an error: no match
		{`int(event.data.qty) % 2 == 1`, true, true},
		{`"a" in event.data.tags`, true, true},
		{`"z" in event.data.tags`, false, true},
		{`"price" in event.data`, true, true},
		{`event.data.customer.name.startsWith("A")`, true, true},
		{`event.type.endsWith(".created") && event.source.contains("ho")`, true, true},
		{`event.type.matches("^order\\.")`, true, true},
		{`size(event.data.tags) == 2 && event.data.tags.size() == 2`, true, true},
		{`has(event.data.price) && !has(event.data.missing)`, true, true},
		{`event.data.missing == 1`, false, true},
		{`event.data.missing == 1 || event.type == "order.created"`, true, true},
		{`event.data.missing == 1 && false`, false, true},
		{`event.data.tags[1] == "b"`, true, true},
		{`event.data["price"] == 150`, true, true},
		{`event.subject == "" ? true : false`, true, true},
		{`[1, 2, 3] == [1, 2, 3] && {"a": 1}["a"] == 1`, true, true},
		{`'single' + "double" == "singledouble"`, true, true},
		{`r"\d" == "\\d"`, true, true},
		{`-event.data.qty < 0`, true, true},
		{`string(event.data.qty) == "3"`, true, true},
		{`event.data.price`, false, true}, // not a bool
		{`other.type == "x"`, false, false},
		{`event.type ==`, false, false},
		{`event.type == "x" )`, false, false},
		{`unknown(event)`, false, false},
		{`event.type.matches("(")`, false, true}, // a bad pattern fails at evaluation: no match
		{`"unterminated`, false, false},
		{``, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			p, err := compileMatch(tc.expr)
			if !tc.compile {
				if err == nil {
					t.Fatalf("compiled")
				}
				return
			}
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			if got := p.matches(ev); got != tc.want {
				t.Fatalf("matches = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTopicEscaping(t *testing.T) {
	for _, topic := range []string{"plain", "a/b", "%2F", "x?y#z", "tab\there", "..", "."} {
		id, err := topicActorID(3, topic)
		if err != nil {
			t.Fatalf("%q: %v", topic, err)
		}
		p, back, ok := parseActorID(id)
		if !ok || p != 3 || back != topic {
			t.Fatalf("%q → %q → %d %q", topic, id, p, back)
		}
	}
}
