//go:build unix

package launch

import (
	"errors"
	"os/exec"
	"syscall"
)

// Supported reports whether processes can be started here: it needs Unix
// process groups and signals.
const Supported = true

// sigCont resumes a stopped process.
const sigCont = syscall.SIGCONT

// setOwnProcessGroup makes the child the leader of a new process group.
func setOwnProcessGroup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
}

// signalGroup signals the process group that pid leads.
func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}

// isNoSuchProcess reports whether err says the process or group is gone.
func isNoSuchProcess(err error) bool {
	return errors.Is(err, syscall.ESRCH)
}
