//go:build race

package rawsock

import "sync/atomic"

// The race detector learns from the syscall package that what a write sends
// happens before what a read receives; raw system calls bypass it, so a
// Socket says so itself, as the syscall package does, through one variable.
var ioSync atomic.Int64

func releaseIO() { ioSync.Add(1) }
func acquireIO() { ioSync.Load() }
