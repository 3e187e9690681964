//go:build !linux

package testutil

import (
	"os"
	"os/exec"
	"syscall"
)

// newProcessGroup does nothing here: the child shares the test's group.
func newProcessGroup(*exec.Cmd) {}

// signalGroup signals the child alone.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	return p.Signal(sig)
}
