package main

// The subscriber app the pub/sub runs deliver to, in this process.

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/bench/loadgen"
)

// payload is the data of every message published.
type payload struct {
	Run string `json:"run"`
	Seq uint64 `json:"seq"`
	T   int64  `json:"t"` // when the publish was sent, Unix ns
}

// appendPayload appends the JSON of a message's data.
func appendPayload(dst []byte, run string, seq uint64, t int64) []byte {
	dst = append(dst, `{"run":"`...)
	dst = append(dst, run...)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"t":`...)
	dst = strconv.AppendInt(dst, t, 10)
	return append(dst, '}')
}

// cloudEvent is the part of a delivered CloudEvent the subscriber reads.
type cloudEvent struct {
	ID    string          `json:"id"`
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
}

// ---- subscriber ----

// subscriber is the app the messages are delivered to. It keeps, per run,
// the distinct messages delivered, the duplicates, and the latency of each
// first delivery (delivery time minus the send time in the message).
type subscriber struct {
	now func() time.Time

	mu        sync.Mutex
	runs      map[string]*runStats
	unknown   int64 // deliveries of a run not begun
	malformed int64
	firstBad  string
}

// runStats is what the subscriber saw of one run.
type runStats struct {
	seen      map[uint64]struct{}
	dups      int64
	latency   loadgen.Histogram
	first     time.Time // first delivery
	last      time.Time // latest delivery of a message not seen before
	delivered int64     // distinct messages
}

func newSubscriber(now func() time.Time) *subscriber {
	return &subscriber{now: now, runs: map[string]*runStats{}}
}

// begin starts counting the deliveries of run.
func (s *subscriber) begin(run string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs[run] == nil {
		s.runs[run] = &runStats{seen: map[uint64]struct{}{}}
	}
}

// deliver takes one delivery's body and returns the answer: SUCCESS, or
// DROP for a body that is not a CloudEvent with the benchmark's payload.
func (s *subscriber) deliver(body []byte) []byte {
	now := s.now()
	var ev cloudEvent
	var p payload
	err := json.Unmarshal(body, &ev)
	if err == nil {
		if len(ev.Data) == 0 {
			err = fmt.Errorf("no data")
		} else {
			err = json.Unmarshal(ev.Data, &p)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || p.Run == "" || p.T <= 0 {
		s.malformed++
		if s.firstBad == "" {
			if err == nil {
				err = fmt.Errorf("no run or send time in the data")
			}
			s.firstBad = fmt.Sprintf("%v: %.200s", err, body)
		}
		return answerDrop
	}
	st := s.runs[p.Run]
	if st == nil {
		s.unknown++
		return answerSuccess
	}
	if _, dup := st.seen[p.Seq]; dup {
		st.dups++
		return answerSuccess
	}
	st.seen[p.Seq] = struct{}{}
	st.delivered++
	st.latency.Record(now.Sub(time.Unix(0, p.T)))
	if st.first.IsZero() {
		st.first = now
	}
	st.last = now
	return answerSuccess
}

// runView is a copy of what the subscriber saw of a run.
type runView struct {
	delivered, dups int64
	first, last     time.Time
	latency         loadgen.Histogram
}

func (s *subscriber) view(run string) runView {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.runs[run]
	if st == nil {
		return runView{}
	}
	return runView{delivered: st.delivered, dups: st.dups, first: st.first, last: st.last, latency: st.latency}
}

// delivered returns how many distinct messages of run arrived.
func (s *subscriber) delivered(run string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.runs[run]; st != nil {
		return st.delivered
	}
	return 0
}

// missing returns how many of the acknowledged seqs of run did not arrive,
// and how many that arrived were not acknowledged (their publish failed or
// timed out, yet the message was stored).
func (s *subscriber) missing(run string, acked []uint64) (missing, unacked int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.runs[run]
	if st == nil {
		return int64(len(acked)), 0
	}
	ack := make(map[uint64]struct{}, len(acked))
	for _, seq := range acked {
		ack[seq] = struct{}{}
		if _, ok := st.seen[seq]; !ok {
			missing++
		}
	}
	for seq := range st.seen {
		if _, ok := ack[seq]; !ok {
			unacked++
		}
	}
	return missing, unacked
}

// oddities returns the deliveries that were not of a run begun, and those
// that could not be read with the first of them.
func (s *subscriber) oddities() (unknown, malformed int64, firstBad string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unknown, s.malformed, s.firstBad
}

// duplicates returns the duplicate deliveries of every run, warm-ups and
// probes included.
func (s *subscriber) duplicates() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, st := range s.runs {
		n += st.dups
	}
	return n
}

// serve is the subscriber app's HTTP handler.
func (s *subscriber) serve(ctx *fasthttp.RequestCtx) {
	method, path := string(ctx.Method()), string(ctx.Path())
	switch {
	case method == "GET" && path == "/dapr/subscribe":
		ctx.SetContentType("application/json")
		ctx.SetBodyString(subscription)
	case method == "GET" && path == "/healthz":
		ctx.SetStatusCode(fasthttp.StatusOK)
	case method == "POST" && path == route:
		ctx.SetContentType("application/json")
		ctx.SetBody(s.deliver(ctx.PostBody()))
	default: // GET /dapr/config included: the app hosts no actors
		ctx.SetStatusCode(fasthttp.StatusNotFound)
	}
}

// startSubscriber serves s on a free port of 127.0.0.1; stop ends it.
func startSubscriber(s *subscriber) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("subscriber: %w", err)
	}
	srv := &fasthttp.Server{Handler: s.serve, Name: "blocksbench-subscriber", ReadTimeout: time.Minute, IdleTimeout: time.Minute}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return ln.Addr().String(), func() {
		_ = srv.Shutdown()
		<-done
	}, nil
}

// ---- publisher ----
