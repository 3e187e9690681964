// Package launch starts, signals and stops local processes, each in its own
// process group with its output appended to a log file.
package launch

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Spec is one process, before it starts.
type Spec struct {
	Name    string   // p1, s1, app1
	Argv    []string // program and arguments
	Env     []string // NAME=value set over the parent's environment
	DataDir string   // created before the start; "" for none
	LogPath string   // stdout and stderr appended here (directory created if missing)
	// The process is ready once GET ReadyURL answers 2xx or, when ReadyURL
	// is empty, once ReadyAddr accepts a TCP connection. With both empty it
	// is ready at once.
	ReadyURL  string
	ReadyAddr string
}

// Readiness describes what makes the process of s ready, as "GET <url>" or
// "TCP connections on <addr>".
func (s Spec) Readiness() string {
	switch {
	case s.ReadyURL != "":
		return "GET " + s.ReadyURL
	case s.ReadyAddr != "":
		return "TCP connections on " + s.ReadyAddr
	}
	return "nothing (ready at once)"
}

// Proc is a started process, the leader of a process group of its own. Its
// methods are safe for concurrent use.
type Proc struct {
	Spec Spec

	cmd     *exec.Cmd
	pid     int
	started time.Time
	done    chan struct{} // closed once the process has been waited for
	waitErr error         // valid once done is closed
}

// errUnsupported is why Start fails where there are no process groups.
var errUnsupported = errors.New("process groups are not supported on this system")

// Start starts the process of spec in a new process group, so that a Ctrl-C
// at the terminal reaches only the caller and a signal to the group reaches
// whatever the process starts. It creates the data directory, and the log
// file and its directory, first; the process's stdout and stderr are
// appended to the log.
func Start(spec Spec) (*Proc, error) {
	if !Supported {
		return nil, fmt.Errorf("starting %s: %w", spec.Name, errUnsupported)
	}
	if len(spec.Argv) == 0 {
		return nil, fmt.Errorf("starting %s: no program given", spec.Name)
	}
	if spec.LogPath == "" {
		return nil, fmt.Errorf("starting %s: no log file given", spec.Name)
	}
	spec.Argv, spec.Env = slices.Clone(spec.Argv), slices.Clone(spec.Env)
	if spec.DataDir != "" {
		if err := os.MkdirAll(spec.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("%s: data directory: %w", spec.Name, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o755); err != nil {
		return nil, fmt.Errorf("%s: log directory: %w", spec.Name, err)
	}
	logFile, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", spec.Name, err)
	}
	defer logFile.Close() // the child has its own copy
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Env = EnvWith(os.Environ(), spec.Env)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	setOwnProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", spec.Name, spec.Argv[0], err)
	}
	p := &Proc{Spec: spec, cmd: cmd, pid: cmd.Process.Pid, started: time.Now(), done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process's id, which is also its process group's id.
func (p *Proc) Pid() int { return p.pid }

// Started returns when the process started.
func (p *Proc) Started() time.Time { return p.started }

// Done returns a channel closed once the process has exited and been waited for.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited and been waited for.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitStatus describes how the process ended, as "exit status 0" or
// "signal: killed"; it is "running" until the process has exited.
func (p *Proc) ExitStatus() string {
	if !p.Exited() {
		return "running"
	}
	if p.waitErr == nil {
		return "exit status 0"
	}
	return p.waitErr.Error()
}

// Signal sends sig to the whole process group of p. It returns nil when the
// group is already gone.
func (p *Proc) Signal(sig syscall.Signal) error {
	err := signalGroup(p.pid, sig)
	if err == nil || isNoSuchProcess(err) {
		return nil
	}
	return fmt.Errorf("signalling the process group of %s (pid %d) with %v: %w", p.Spec.Name, p.pid, sig, err)
}

// GroupAlive reports whether any process is left in p's process group,
// counting p itself until it has been waited for.
func (p *Proc) GroupAlive() bool {
	return !isNoSuchProcess(signalGroup(p.pid, 0))
}

// Kill sends SIGKILL to the process group of p and waits until p has been
// waited for.
func (p *Proc) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and then SIGCONT to the process group of p, so that a
// stopped process gets the SIGTERM too, and waits up to timeout for p and
// everything left in its group to exit. It kills the group if that takes
// longer, and reports whether it had to. A process whose group is already
// gone is left alone.
func (p *Proc) Stop(timeout time.Duration) (killed bool) {
	if p.gone() {
		return false
	}
	_ = p.Signal(syscall.SIGTERM)
	_ = p.Signal(sigCont)
	if p.awaitGone(time.Now().Add(timeout)) {
		return false
	}
	p.Kill()
	return true
}

// gone reports whether p has exited and nothing is left in its group.
func (p *Proc) gone() bool { return p.Exited() && !p.GroupAlive() }

// groupPollInterval is how often Stop checks for a process group that
// outlives its leader.
const groupPollInterval = 20 * time.Millisecond

// awaitGone waits until p has exited and nothing is left in its process
// group (a shell's child, say), or until deadline; it reports which came first.
func (p *Proc) awaitGone(deadline time.Time) bool {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		left := time.Until(deadline)
		if p.gone() {
			return true
		}
		if left <= 0 {
			return false
		}
		timer.Reset(min(left, groupPollInterval))
		done := p.done
		if p.Exited() {
			done = nil // only the group is awaited now
		}
		select {
		case <-done:
		case <-timer.C:
		}
	}
}
