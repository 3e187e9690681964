//go:build !linux

package benchproc

import (
	"os"
	"syscall"
)

// childAttr leaves the child's attributes as they are; process groups and
// parent-death signals are set up on Linux only.
func childAttr() *syscall.SysProcAttr { return nil }

// signalProcess signals the child.
func signalProcess(p *os.Process, sig syscall.Signal) error {
	return p.Signal(sig)
}
