package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Clients a run can use.
const (
	// ClientRaw writes requests and parses responses on raw connections
	// (the default): the cheapest client, so that it takes as little of a
	// small machine from the servers it measures as possible.
	ClientRaw = "raw"
	// ClientNetHTTP sends the same requests through net/http's client, one
	// Transport with one keep-alive connection per load connection: what
	// most Go clients of a gateway look like, at a higher cost per request.
	ClientNetHTTP = "net/http"
)

// netHTTPWorker drives one connection through a net/http client.
type netHTTPWorker struct {
	*worker
	client *http.Client
	url    string // scheme and host
}

func newNetHTTPWorker(w *worker) *netHTTPWorker {
	r := w.run
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: r.timeout}).DialContext,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableCompression:  true,
	}
	return &netHTTPWorker{worker: w, client: &http.Client{Transport: tr, Timeout: r.timeout}, url: "http://" + r.cfg.Addr}
}

func (w *netHTTPWorker) loop(ctx context.Context) {
	defer w.client.CloseIdleConnections()
	for !over(ctx, time.Now(), w.run.end) {
		w.roundTrip(ctx)
	}
}

// roundTrip sends one request through the client and reads its response.
func (w *netHTTPWorker) roundTrip(ctx context.Context) {
	r := w.run
	c := r.req
	n := r.seq.Add(1) - 1
	actor := ""
	if len(c.actors) > 0 {
		actor = c.actors[n%uint64(len(c.actors))]
	}
	w.reqBuf = c.path.render(w.reqBuf[:0], actor, n)
	w.bodyBuf = c.body.render(w.bodyBuf[:0], actor, n)
	var body io.Reader
	if len(w.bodyBuf) > 0 || c.sendCL {
		body = bytes.NewReader(w.bodyBuf)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, w.url+string(w.reqBuf), body)
	if err != nil {
		w.fail(time.Now(), fmt.Errorf("request %d: %w", n, err))
		return
	}
	for name, value := range c.headers {
		req.Header.Set(name, value)
	}
	start := time.Now()
	resp, err := w.client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	elapsed := time.Since(start)
	if over(ctx, start.Add(elapsed), r.end) {
		return
	}
	if err != nil {
		w.fail(start, fmt.Errorf("request %d: %w", n, err))
		w.client.CloseIdleConnections()
		return
	}
	measured := !start.Before(r.measureFrom)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if measured {
			w.hist.Record(elapsed)
		}
	case measured:
		w.errs.Status++
		w.codes[resp.StatusCode]++
		if w.firstErr == nil {
			w.firstErr = fmt.Errorf("request %d: HTTP status %d", n, resp.StatusCode)
		}
	default:
		w.warmupErrors++
	}
}
