package main

// The HTTP scenario: granary dev and the Go Counter example app, reminders
// registered and fired over the callback protocol.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
)

const counterType = "Counter"

func (b *bench) http(ctx context.Context) (r result) {
	n := b.o.httpActors * b.o.httpPerActor
	r.Title = "registration and fires over HTTP (granary dev + examples/counter-go)"
	r.Setup = fmt.Sprintf("embedded bbolt store; %d Counter actors × %d reminders = %d, all due at one instant (period 1h); "+
		"%d keep-alive clients register; every fire is an HTTP callback that increments the actor's count in actor state",
		b.o.httpActors, b.o.httpPerActor, n, b.o.httpClients)
	for _, bin := range []string{b.o.granary, b.o.app} {
		if !benchproc.Executable(bin) {
			r.failf("%s is not an executable file (`make build` builds bin/granary and bin/counter-go)", bin)
			return r
		}
	}
	dir, err := os.MkdirTemp(b.o.dataDir, "reminderbench-http-")
	if err != nil {
		r.fail(err)
		return r
	}
	defer os.RemoveAll(dir)
	ports, err := benchproc.FreePorts(2)
	if err != nil {
		r.fail(err)
		return r
	}
	gwPort, appPort := strconv.Itoa(ports[0]), strconv.Itoa(ports[1])
	gwURL := "http://127.0.0.1:" + gwPort

	app, err := benchproc.Start("counter-go", dir, b.o.app, []string{"APP_HOST=127.0.0.1", "APP_PORT=" + appPort, "DAPR_HTTP_PORT=" + gwPort})
	if err != nil {
		r.fail(err)
		return r
	}
	defer stopInto(app, &r)
	if err := app.WaitForStatus(ctx, "GET", "http://127.0.0.1:"+appPort+"/healthz", http.StatusOK, 15*time.Second); err != nil {
		r.failf("counter-go not ready: %v; its log ends:\n%s", err, app.Tail(20))
		return r
	}
	granary, err := benchproc.Start("granary", dir, b.o.granary, nil, "dev", "--http-port", gwPort,
		"--app-url", "http://127.0.0.1:"+appPort, "--data-dir", filepath.Join(dir, "data"), "--log-level", "warn")
	if err != nil {
		r.fail(err)
		return r
	}
	defer stopInto(granary, &r)
	if err := granary.WaitForStatus(ctx, "GET", gwURL+"/v1.0/healthz", http.StatusNoContent, 15*time.Second); err != nil {
		r.failf("granary not ready: %v; its log ends:\n%s", err, granary.Tail(20))
		return r
	}
	b.progress("granary dev (pid %d) on %s, counter-go (pid %d) on port %s", granary.Pid(), gwURL, app.Pid(), appPort)

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: b.o.httpClients, MaxIdleConnsPerHost: b.o.httpClients, MaxConnsPerHost: b.o.httpClients,
	}}
	defer client.CloseIdleConnections()
	ids := make([]string, b.o.httpActors)
	for i := range ids {
		ids[i] = "c-" + strconv.Itoa(i)
	}
	methodURL := func(id, method string) string {
		return gwURL + "/v1.0/actors/" + counterType + "/" + url.PathEscape(id) + "/method/" + method
	}
	// The app may still be registering its type right after the gateway
	// answers; the first call waits for it.
	if err := granary.WaitForStatus(ctx, "POST", methodURL(ids[0], "get"), http.StatusOK, 15*time.Second); err != nil {
		r.failf("the Counter type is not served: %v", err)
		return r
	}
	b.progress("activating %d Counter actors", len(ids))
	_, _, err = runParallel(ctx, len(ids), b.o.httpClients, b.o.every,
		func(done int, _ time.Duration) { b.progress("  activated %d/%d actors", done, len(ids)) },
		func(ctx context.Context, i int) error {
			_, err := benchproc.Call(ctx, client, "POST", methodURL(ids[i], "get"), "", http.StatusOK)
			return err
		})
	if err != nil {
		r.fail(err)
		return r
	}

	fires := &fireLog{}
	appLog, err := os.Open(app.LogPath)
	if err != nil {
		r.fail(err)
		return r
	}
	defer appLog.Close()
	if _, err := fires.readFrom(appLog); err != nil { // skip what the app logged so far
		r.fail(err)
		return r
	}
	fires.count = 0

	lead := b.o.httpLead
	if lead == 0 {
		lead = autoLead(n, 2000)
	}
	due := time.Now().Add(lead).UTC().Truncate(time.Millisecond)
	body := `{"dueTime":"` + due.Format(time.RFC3339Nano) + `","period":"1h"}`
	b.progress("registering %d reminders due at %s (in %v)", n, due.Format(time.RFC3339Nano), lead.Round(time.Millisecond))
	took, hist, err := runParallel(ctx, n, b.o.httpClients, b.o.every,
		func(done int, elapsed time.Duration) {
			b.progress("  registered %d/%d (%.0f/s)", done, n, perSecond(done, elapsed))
		},
		func(ctx context.Context, i int) error {
			id, name := ids[i%len(ids)], "r"+strconv.Itoa(i/len(ids))
			u := gwURL + "/v1.0/actors/" + counterType + "/" + url.PathEscape(id) + "/reminders/" + name
			_, err := benchproc.Call(ctx, client, "POST", u, body, http.StatusNoContent)
			return err
		})
	if err != nil {
		r.fail(err)
		return r
	}
	r.add(rateMetric("registrations/s", perSecond(n, took)),
		durationMetric("registration latency p50", hist.Quantile(0.50)),
		durationMetric("registration latency p99", hist.Quantile(0.99)))
	if late := time.Since(due); late > 0 {
		r.failf("registration ended %v after the due time, so fires overlapped registration; raise --http-lead", late.Round(time.Millisecond))
	} else {
		b.progress("registered in %v (%.0f/s); waiting %v for the due time", took.Round(time.Millisecond), perSecond(n, took), -late.Round(time.Millisecond))
	}

	// The app logs a line per reminder callback; count them as they come.
	allFired := make(chan struct{})
	var (
		logMu   sync.Mutex
		readErr error
	)
	stopTail := make(chan struct{})
	tailDone := make(chan struct{})
	go func() {
		defer close(tailDone)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			logMu.Lock()
			_, err := fires.readFrom(appLog)
			done := fires.count >= int64(n)
			if err != nil {
				readErr = err
			}
			logMu.Unlock()
			if done || err != nil {
				close(allFired)
				return
			}
			select {
			case <-stopTail:
				return
			case <-t.C:
			}
		}
	}()
	err = b.waitFires(ctx, allFired, "fired", func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return fmt.Sprintf("%d/%d callbacks logged by the app", fires.count, n)
	})
	close(stopTail)
	<-tailDone
	if err == nil && readErr != nil {
		err = fmt.Errorf("reading the app's log: %w", readErr)
	}
	if err != nil {
		r.fail(err)
		return r
	}
	span := fires.last.Sub(due)
	r.add(rateMetric("fires/s", perSecond(n, span)), durationMetric("due time to last callback", span))

	// Every reminder fired once, so the counts add up to n.
	var total atomic.Int64
	_, _, err = runParallel(ctx, len(ids), b.o.httpClients, b.o.every,
		func(done int, _ time.Duration) { b.progress("  read %d/%d counts", done, len(ids)) },
		func(ctx context.Context, i int) error {
			data, err := benchproc.Call(ctx, client, "POST", methodURL(ids[i], "get"), "", http.StatusOK)
			if err != nil {
				return err
			}
			var v struct {
				Count *int64 `json:"count"`
			}
			if err := json.Unmarshal(data, &v); err != nil || v.Count == nil {
				return fmt.Errorf("count of %s: unexpected answer %q", ids[i], data)
			}
			total.Add(*v.Count)
			return nil
		})
	if err != nil {
		r.fail(err)
		return r
	}
	r.add(countMetric("sum of the counts", total.Load()).atLeast(float64(n), strconv.Itoa(n)+" (one per reminder)"))
	if failed := linesWith(granary, "reminder fire failed"); len(failed) > 0 {
		r.note("granary logged %d failed fire attempts (see its log); first: %s", len(failed), failed[0])
	}
	return r
}

// fireLog counts the reminder callbacks in the Go Counter app's log (one
// slog text line `time=… level=INFO msg="reminder fired" …` per callback)
// and keeps the time of the last one.
type fireLog struct {
	count   int64
	last    time.Time
	partial []byte // an unfinished last line
	buf     []byte
}

var fireMarker = []byte(`msg="reminder fired"`)

// readFrom reads what r has beyond what was read before and counts it.
func (l *fireLog) readFrom(r io.Reader) (int64, error) {
	if l.buf == nil {
		l.buf = make([]byte, 256<<10)
	}
	var total int64
	for {
		n, err := r.Read(l.buf)
		if n > 0 {
			total += int64(n)
			l.feed(l.buf[:n])
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, nil
		}
	}
}

// feed counts the complete lines in data, keeping an unfinished last line for later.
func (l *fireLog) feed(data []byte) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			l.partial = append(l.partial, data...)
			return
		}
		line := data[:i]
		if len(l.partial) > 0 {
			line = append(l.partial, line...)
			l.partial = l.partial[:0]
		}
		l.line(line)
		data = data[i+1:]
	}
}

func (l *fireLog) line(line []byte) {
	if !bytes.Contains(line, fireMarker) {
		return
	}
	l.count++
	if ts, ok := bytes.CutPrefix(line, []byte("time=")); ok {
		if end := bytes.IndexByte(ts, ' '); end > 0 {
			if t, err := time.Parse(time.RFC3339Nano, string(ts[:end])); err == nil && t.After(l.last) {
				l.last = t
			}
		}
	}
}

// stopInto stops p and notes in r when it had to be killed.
func stopInto(p *benchproc.Process, r *result) {
	if err := p.Stop(60 * time.Second); err != nil {
		r.note("%v", err)
	}
}

// linesWith returns the lines of p's log that contain substr.
func linesWith(p *benchproc.Process, substr string) []string {
	var out []string
	for _, l := range p.Lines() {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}
