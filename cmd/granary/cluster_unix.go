//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// processGroupsSupported reports whether granary cluster can run here.
const processGroupsSupported = true

// setOwnProcessGroup makes the child the leader of a new process group, so a
// Ctrl-C at the terminal reaches only the launcher, which then stops the
// cluster in order, and a signal to the group reaches whatever the child
// started.
func setOwnProcessGroup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
}

// signalProcessGroup signals the process group that pid leads.
func signalProcessGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
