package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/testutil"
)

// blockCall makes one call to a gateway and returns the answer.
func blockCall(t *testing.T, client *http.Client, method, url, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// eventSeqs reads the seq of every event an app's GET /events lists.
func eventSeqs(client *http.Client, appPort int) (map[int]int, error) {
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/events", appPort))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list []struct {
		Seq *int `json:"seq"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	seen := map[int]int{}
	for _, e := range list {
		if e.Seq != nil {
			seen[*e.Seq]++
		}
	}
	return seen, nil
}

// TestBlocksAcrossSilos: on three silos, state written through one is read
// through the others, invocation reaches an app attached to another silo,
// a publish through one silo reaches the apps of the others, and messages
// acknowledged while every subscriber was stuck are delivered after the
// silo holding part of the topic is killed with SIGKILL.
func TestBlocksAcrossSilos(t *testing.T) {
	m := newMultiSilo(t, 3)
	m.waitSettled(t, 60*time.Second)
	silos := m.silos

	// State.
	for i := range 30 {
		w, r := silos[i%3], silos[(i+1)%3]
		key := "k" + strconv.Itoa(i)
		if a := blockCall(t, m.client, "POST", w.base()+"/v1.0/state/statestore", fmt.Sprintf(`[{"key":%q,"value":%d}]`, key, i)); a.status != 204 {
			t.Fatalf("save %s through %s: %s", key, w.id, a)
		}
		got := blockCall(t, m.client, "GET", r.base()+"/v1.0/state/statestore/"+key, "")
		if got.status != 200 || string(got.body) != strconv.Itoa(i) {
			t.Fatalf("%s written through %s, read through %s: %s", key, w.id, r.id, got)
		}
		// A conditional write through the third silo with the ETag read.
		third := silos[(i+2)%3]
		body := fmt.Sprintf(`[{"key":%q,"value":%d,"etag":%q}]`, key, -i, got.header.Get("ETag"))
		if a := blockCall(t, m.client, "POST", third.base()+"/v1.0/state/statestore", body); a.status != 204 {
			t.Fatalf("conditional save of %s through %s: %s", key, third.id, a)
		}
		if a := blockCall(t, m.client, "POST", w.base()+"/v1.0/state/statestore", body); a.status != 409 {
			t.Fatalf("a second save of %s with a spent ETag through %s: %s, want 409", key, w.id, a)
		}
	}
	var ops []string
	for i := range 30 {
		ops = append(ops, fmt.Sprintf(`{"operation":"upsert","request":{"key":"k%d","value":"t%d"}}`, i, i))
	}
	if a := blockCall(t, m.client, "POST", silos[0].base()+"/v1.0/state/statestore/transaction", `{"operations":[`+strings.Join(ops, ",")+`]}`); a.status != 204 {
		t.Fatalf("transaction: %s", a)
	}
	bulk := blockCall(t, m.client, "POST", silos[2].base()+"/v1.0/state/statestore/bulk", `{"keys":["k0","k29"]}`)
	if bulk.status != 200 || !strings.Contains(string(bulk.body), `"data":"t0"`) || !strings.Contains(string(bulk.body), `"data":"t29"`) {
		t.Fatalf("bulk get after the transaction: %s", bulk)
	}

	// Invocation: an app registered with the third silo only.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dapr/config" {
			io.WriteString(w, `{"entities":[]}`)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Echo", "yes")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
	}))
	defer echo.Close()
	if a := blockCall(t, m.client, "PUT", silos[2].base()+"/v1.0-alpha1/apps/echo", fmt.Sprintf(`{"url":%q}`, echo.URL)); a.status != 204 {
		t.Fatalf("registering echo with %s: %s", silos[2].id, a)
	}
	for _, s := range silos {
		testutil.Eventually(t, 20*time.Second, "echo to be reachable through "+s.id, func() error {
			a := blockCall(t, m.client, "PUT", s.base()+"/v1.0/invoke/echo/method/orders/1?x=2", "hi")
			if a.status != 202 || string(a.body) != "PUT /orders/1?x=2 hi" || a.header.Get("X-Echo") != "yes" {
				return fmt.Errorf("%s", a)
			}
			return nil
		})
	}

	// Pub/sub: every app (app ID counter, on every silo) subscribes to
	// counter-events; each message goes to one of them.
	const n = 60
	for i := range n {
		s := silos[i%3]
		if a := blockCall(t, m.client, "POST", s.base()+"/v1.0/publish/pubsub/counter-events", fmt.Sprintf(`{"seq":%d}`, i)); a.status != 204 {
			t.Fatalf("publish %d through %s: %s", i, s.id, a)
		}
	}
	delivered := func(from, to int) error {
		all, apps := map[int]int{}, 0
		for _, s := range silos {
			seen, err := eventSeqs(m.client, s.appPort)
			if err != nil {
				return err
			}
			if len(seen) > 0 {
				apps++
			}
			for k, v := range seen {
				all[k] += v
			}
		}
		for i := from; i < to; i++ {
			if all[i] == 0 {
				return fmt.Errorf("message %d not delivered (%d of %d so far, on %d apps)", i, len(all), to, apps)
			}
		}
		if apps < 2 {
			return fmt.Errorf("every message went to one app")
		}
		return nil
	}
	testutil.Eventually(t, 30*time.Second, "every message delivered", func() error { return delivered(0, n) })

	// Every subscriber stuck: messages are acknowledged (stored) but not
	// delivered; the silo of the first partition is killed; then the apps
	// resume and what was acknowledged arrives through the other silos.
	for _, s := range silos {
		if err := s.app.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	stopped := true
	defer func() {
		if stopped {
			for _, s := range silos {
				s.app.Signal(syscall.SIGCONT)
			}
		}
	}()
	for i := n; i < 2*n; i++ {
		s := silos[1+i%2] // through the two silos that stay
		if a := blockCall(t, m.client, "POST", s.base()+"/v1.0/publish/pubsub/counter-events", fmt.Sprintf(`{"seq":%d}`, i)); a.status != 204 {
			t.Fatalf("publish %d through %s: %s", i, s.id, a)
		}
	}
	silos[0].proc.Kill()
	for _, s := range silos {
		s.app.Signal(syscall.SIGCONT)
	}
	stopped = false
	testutil.Eventually(t, 90*time.Second, "every message acknowledged before the kill delivered", func() error { return delivered(n, 2*n) })
}

// TestPubSubSurvivesKill: messages acknowledged while the subscriber is
// stuck are delivered once granary dev, killed with SIGKILL, is back.
func TestPubSubSurvivesKill(t *testing.T) {
	t.Parallel()
	c := newCluster(t, goCounter)
	c.start()
	if err := c.appProc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		r := c.do("POST", "/v1.0/publish/pubsub/counter-events?metadata.partitionKey=k"+strconv.Itoa(i%7), fmt.Sprintf(`{"seq":%d}`, i))
		if r.status != 204 {
			c.appProc.Signal(syscall.SIGCONT)
			t.Fatalf("publish %d: %s", i, r)
		}
	}
	c.granaryProc.Kill()
	c.appProc.Signal(syscall.SIGCONT)
	c.startGranary()
	testutil.Eventually(t, 60*time.Second, "every acknowledged message delivered after the restart", func() error {
		seen, err := eventSeqs(c.client, c.appPort)
		if err != nil {
			return err
		}
		for i := range n {
			if seen[i] == 0 {
				return fmt.Errorf("message %d not delivered (%d of %d)", i, len(seen), n)
			}
		}
		return nil
	})
}

// TestCounterExamplesPublishAndSubscribe: each Counter example publishes
// its count (announce) and receives what is published to counter-events.
func TestCounterExamplesPublishAndSubscribe(t *testing.T) {
	for _, app := range []counterApp{goCounter, pythonCounter, jsCounter} {
		t.Run(app.name, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, app)
			c.start()
			c.expectCount("a", "increment", `{"by": 4}`, 4)
			c.expectCount("a", "announce", "", 4)
			if r := c.do("POST", "/v1.0/publish/pubsub/counter-events", `{"seq":7}`); r.status != http.StatusNoContent {
				t.Fatalf("publish: %s", r)
			}
			testutil.Eventually(t, 20*time.Second, "both events received by the app", func() error {
				resp, err := c.client.Get(fmt.Sprintf("http://127.0.0.1:%d/events", c.appPort))
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				var list []map[string]any
				if err := json.Unmarshal(body, &list); err != nil {
					return fmt.Errorf("GET /events: %s: %v", body, err)
				}
				var announced, published bool
				for _, e := range list {
					announced = announced || (e["id"] == "a" && e["count"] == float64(4))
					published = published || e["seq"] == float64(7)
				}
				if !announced || !published {
					return fmt.Errorf("events %s", body)
				}
				return nil
			})
		})
	}
}
