// Package benchproc holds what the benchmark commands under bench/cmd share
// as programs: starting the processes they measure with their output in a log
// file, waiting until such a process answers over HTTP, stopping it with
// SIGTERM and then SIGKILL (and, on Linux, having the kernel kill it when the
// benchmark itself dies), reading a process's memory from /proc, and the
// plumbing of a command's output: progress lines, targets with their PASS or
// FAIL verdicts, and the JSON results file.
package benchproc

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a child process whose stdout and stderr go to a log file.
type Process struct {
	Name    string
	LogPath string // dir/Name.log

	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid once done is closed
}

// Start runs bin with args, its stdout and stderr going to dir/name.log. env,
// when not empty, is added to this program's environment for the child. On
// Linux the child gets its own process group, so a Ctrl-C at the terminal
// reaches only this program, which then stops the child in order, and the
// kernel kills the child if this program dies without stopping it.
func Start(name, dir, bin string, env []string, args ...string) (*Process, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	defer logFile.Close() // the child keeps its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err returns how the process ended once it has exited (nil for a zero exit
// status), and nil while it runs.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.waitErr
}

// Stop sends SIGTERM, waits up to grace for the process to exit, then kills
// it and waits for that too. Stopping a process that has exited does nothing.
func (p *Process) Stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	if err := signalProcess(p.cmd.Process, syscall.SIGTERM); err != nil && !p.Exited() {
		return fmt.Errorf("stop %s: %w", p.Name, err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	_ = signalProcess(p.cmd.Process, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.Name, grace)
}

// Lines returns the lines of the process's log, or one line saying why the
// log cannot be read.
func (p *Process) Lines() []string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return []string{fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)}
	}
	return strings.Split(strings.TrimRight(string(data), "\n"), "\n")
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	lines := p.Lines()
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// WaitForStatus repeats an HTTP request without a body until it answers
// want, the process exits, or timeout passes.
func (p *Process) WaitForStatus(ctx context.Context, method, url string, want int, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, method, url, nil)
		if err != nil {
			return fmt.Errorf("request %s %s: %w", method, url, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			last = "status " + strconv.Itoa(resp.StatusCode)
		} else {
			last = err.Error()
		}
		if p.Exited() {
			return fmt.Errorf("%s exited (%v) while waiting for %s %s", p.Name, p.waitErr, method, url)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s did not answer %d within %v (last: %s)", method, url, want, timeout, last)
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// FreePorts returns n distinct TCP ports that were free on 127.0.0.1 a moment ago.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer ln.Close() // held until all are chosen, so they differ
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}
