//go:build !unix

package main

import (
	"errors"
	"os/exec"
	"syscall"
)

// processGroupsSupported reports whether granary cluster can run here: it
// needs Unix process groups and signals.
const processGroupsSupported = false

func setOwnProcessGroup(*exec.Cmd) {}

func signalProcessGroup(int, syscall.Signal) error {
	return errors.New("process groups are not supported on this system")
}
