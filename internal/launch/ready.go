package launch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// Readiness polling.
const (
	// PollInterval is how often AwaitReady probes a process.
	PollInterval = 100 * time.Millisecond
	// TailLines is how many lines of a log AwaitReady's errors quote.
	TailLines = 20
	// dialTimeout bounds one TCP readiness probe.
	dialTimeout = time.Second
)

// Probe checks once whether the process of spec is ready: whether GET
// spec.ReadyURL answers 2xx or, when ReadyURL is empty, whether
// spec.ReadyAddr accepts a TCP connection. With both empty it returns nil.
// A nil client is http.DefaultClient.
func Probe(ctx context.Context, client *http.Client, spec Spec) error {
	switch {
	case spec.ReadyURL != "":
	case spec.ReadyAddr != "":
		d := net.Dialer{Timeout: dialTimeout}
		conn, err := d.DialContext(ctx, "tcp", spec.ReadyAddr)
		if err != nil {
			return err
		}
		return conn.Close()
	default:
		return nil
	}
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, spec.ReadyURL, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// AwaitReady probes p every PollInterval, from now on, until it is ready.
// It fails when p exits first, with an error naming its exit status and
// quoting the end of its log; when p is not ready within timeout; and when
// ctx ends.
func AwaitReady(ctx context.Context, client *http.Client, p *Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s (pid %d) to answer %s: %w", p.Spec.Name, p.pid, p.Spec.Readiness(), ctx.Err())
		case <-p.done:
			return fmt.Errorf("%s (pid %d) exited before it answered %s: %s\n%s",
				p.Spec.Name, p.pid, p.Spec.Readiness(), p.ExitStatus(), LogTail(p.Spec.LogPath, TailLines))
		case <-timer.C:
		}
		if p.Exited() { // an exit is reported even when the timer was ready too
			continue
		}
		if lastErr != nil && !time.Now().Before(deadline) {
			return fmt.Errorf("%s (pid %d) did not answer %s within %v (last: %v)\n%s",
				p.Spec.Name, p.pid, p.Spec.Readiness(), timeout, lastErr, LogTail(p.Spec.LogPath, TailLines))
		}
		probeCtx, cancel := context.WithDeadline(ctx, deadline)
		lastErr = Probe(probeCtx, client, p.Spec)
		cancel()
		if lastErr == nil {
			return nil
		}
		timer.Reset(min(PollInterval, max(time.Until(deadline), 0)))
	}
}

// logTailMaxRead bounds how much of the end of a log LogTail reads.
const logTailMaxRead = 64 << 10

// LogTail returns the last lines (at most lines; every line read when lines
// is not positive) of the log at path, indented, with a heading naming the
// file. It reads at most the last 64 KiB.
func LogTail(path string, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("  (log %s: %v)\n", path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > logTailMaxRead {
		_, _ = f.Seek(st.Size()-logTailMaxRead, io.SeekStart)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("  (log %s: %v)\n", path, err)
	}
	if len(data) == 0 {
		return fmt.Sprintf("  (log %s is empty)\n", path)
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if lines > 0 && len(all) > lines {
		all = all[len(all)-lines:]
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "  last lines of %s:\n", path)
	for _, line := range all {
		fmt.Fprintf(&b, "    %s\n", line)
	}
	return b.String()
}
