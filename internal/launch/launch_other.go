//go:build !unix

package launch

import (
	"os/exec"
	"syscall"
)

// Supported reports whether processes can be started here: it needs Unix
// process groups and signals.
const Supported = false

// sigCont stands in for SIGCONT, which this system lacks; it is never sent,
// since Start fails here.
const sigCont = syscall.Signal(0)

func setOwnProcessGroup(*exec.Cmd) {}

func signalGroup(int, syscall.Signal) error { return errUnsupported }

func isNoSuchProcess(error) bool { return false }
