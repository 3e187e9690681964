package benchproc

import (
	"os"
	"syscall"
)

// childAttr puts a child in its own process group and has the kernel kill it
// if this program dies without stopping it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalProcess signals the child's whole process group.
func signalProcess(p *os.Process, sig syscall.Signal) error {
	return syscall.Kill(-p.Pid, sig)
}
