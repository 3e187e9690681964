package testutil

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// maxKeptOutput bounds the output a Proc keeps for Output; the test log gets
// every line regardless.
const maxKeptOutput = 16 << 20

// Proc is a child process owned by one test.
type Proc struct {
	name    string
	cmd     *exec.Cmd
	out     *lineLog
	done    chan struct{} // closed once the process has been waited for
	waitErr error         // valid once done is closed
}

// Start starts cmd as a child process called name. Its stdout and stderr go
// to the test log line by line, prefixed with name, and are kept for Output.
// The child runs in a process group of its own (on Linux), so Kill reaches
// whatever it started. When the test ends the group is killed if anything is
// left, and the test fails if the output reports a data race.
func Start(t testing.TB, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{name: name, cmd: cmd, out: &lineLog{t: t, prefix: name}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if cmd.WaitDelay == 0 {
		// A grandchild holding the output pipe must not stall Wait.
		cmd.WaitDelay = 2 * time.Second
	}
	newProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s (%s): %v", name, cmd.Path, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		p.out.stop()
		if strings.Contains(p.Output(), "WARNING: DATA RACE") {
			t.Errorf("%s reported a data race; its output is in the log above", name)
		}
	})
	return p
}

// Name returns the name given to Start.
func (p *Proc) Name() string { return p.name }

// Pid returns the process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been waited for.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitExit waits up to timeout for the process to exit and reports whether it did.
func (p *Proc) WaitExit(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// Err returns the error of waiting for the exited process: nil after a clean
// exit with status 0, an *exec.ExitError after another status or a signal.
// It returns an error too while the process still runs.
func (p *Proc) Err() error {
	if !p.Exited() {
		return fmt.Errorf("%s is still running", p.name)
	}
	return p.waitErr
}

// ExitCode returns the exit status of the exited process, or -1 while it
// runs or when a signal ended it.
func (p *Proc) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Output returns what the process has written to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Signal sends sig to the process alone.
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return fmt.Errorf("%s has exited", p.name)
	}
	return p.cmd.Process.Signal(sig)
}

// SignalGroup sends sig to the process and everything it started, as a
// terminal's Ctrl-C does.
func (p *Proc) SignalGroup(sig syscall.Signal) error { return signalGroup(p.cmd.Process, sig) }

// Stop sends SIGTERM and waits up to grace for the process to exit. If it
// has not, Stop kills it and says so; otherwise it returns Err (nil for a
// clean exit with status 0).
func (p *Proc) Stop(grace time.Duration) error {
	if !p.Exited() {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !p.Exited() {
			p.Kill()
			return fmt.Errorf("sending SIGTERM to %s: %w", p.name, err)
		}
	}
	if !p.WaitExit(grace) {
		p.Kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM and was killed", p.name, grace)
	}
	return p.waitErr
}

// Kill sends SIGKILL to the process and everything it started, and waits for
// the process to exit.
func (p *Proc) Kill() {
	_ = signalGroup(p.cmd.Process, syscall.SIGKILL)
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// WaitHTTP polls url with GET until check accepts the answer. It fails the
// test when timeout passes first (with check's last complaint) or when the
// process exits meanwhile.
func (p *Proc) WaitHTTP(t testing.TB, url string, timeout time.Duration, check func(status int, body []byte) error) {
	t.Helper()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	poll(t, timeout, fmt.Sprintf("%s to answer GET %s", p.name, url), func() error {
		if p.Exited() {
			return giveUp{fmt.Errorf("%s exited (%v)", p.name, p.waitErr)}
		}
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		return check(resp.StatusCode, body)
	})
}

// Eventually calls cond every 50 ms until it returns nil. When timeout passes
// first, it fails the test with what was awaited and cond's last error.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	poll(t, timeout, what, cond)
}

// giveUp wraps an error after which waiting longer is pointless.
type giveUp struct{ error }

// poll runs cond until it returns nil, a giveUp, or timeout passes.
func poll(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	const interval = 50 * time.Millisecond
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if g, ok := err.(giveUp); ok {
			t.Fatalf("waiting for %s: %v", what, g.error)
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("waiting for %s: still not after %v: %v", what, timeout, err)
		}
		time.Sleep(min(interval, left))
	}
}

// lineLog is an io.Writer that passes each complete line to the test log and
// keeps all output.
type lineLog struct {
	t      testing.TB
	prefix string

	mu      sync.Mutex
	partial []byte
	all     bytes.Buffer
	dropped bool
	stopped bool
}

func (l *lineLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.all.Len()+len(b) <= maxKeptOutput {
		l.all.Write(b)
	} else {
		l.dropped = true
	}
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.emit(l.partial[:i])
		l.partial = l.partial[i+1:]
	}
	return len(b), nil
}

func (l *lineLog) emit(line []byte) {
	if !l.stopped {
		l.t.Logf("%s: %s", l.prefix, bytes.TrimRight(line, "\r"))
	}
}

// stop logs an unfinished last line and ends logging: a test must not log
// after it has finished.
func (l *lineLog) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.emit(l.partial)
		l.partial = nil
	}
	if l.dropped && !l.stopped {
		l.t.Logf("%s: kept only the first %d bytes of output for Output", l.prefix, maxKeptOutput)
	}
	l.stopped = true
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}
