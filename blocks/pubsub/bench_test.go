package pubsub

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/granaryhq/granary/statestore/memstore"
)

// BenchmarkPublishDeliver publishes b.N messages from 8 publishers to one
// topic (8 partitions, memstore) and measures until a subscriber on
// loopback HTTP has acknowledged all of them.
func BenchmarkPublishDeliver(b *testing.B) {
	store := memstore.New()
	defer store.Close()
	apps := newFakeApps()
	apps.httpc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	h := start(b, store, apps, testConfig())
	var got atomic.Int64
	done := make(chan struct{})
	var want atomic.Int64
	want.Store(-1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dapr/subscribe" {
			io.WriteString(w, subsJSON(Subscription{PubsubName: "pubsub", Topic: "bench", Route: "/bench"}))
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		if got.Add(1) == want.Load() {
			close(done)
		}
	}))
	defer srv.Close()
	apps.add("sub", srv.URL)
	if err := h.svc.SyncApp(context.Background(), "sub", srv.URL); err != nil {
		b.Fatal(err)
	}
	want.Store(int64(b.N))
	b.ResetTimer()
	start := time.Now()
	const publishers = 8
	var wg sync.WaitGroup
	var next atomic.Int64
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				rc := request("/v1.0/publish/pubsub/bench", "application/json", `{"order":42,"item":"widget"}`)
				if err := h.svc.ServePublish(rc, "bench"); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	published := time.Since(start)
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("delivered %d of %d", got.Load(), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/published.Seconds(), "published/s")
}
