//go:build !linux

package clock

import "time"

var processStart = time.Now()

// Boottime is the time since the process started on the monotonic clock.
// Outside Linux there is no portable clock that counts through a suspend, so
// leases there assume the machine is not suspended while it holds one.
func Boottime() time.Duration { return time.Since(processStart) }
