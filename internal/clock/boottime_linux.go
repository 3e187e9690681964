package clock

import (
	"time"

	"golang.org/x/sys/unix"
)

// Boottime is the time since the machine booted, counting time spent
// suspended (CLOCK_BOOTTIME). Leases are measured on it: Go's monotonic clock
// stops while a virtual machine is suspended, so a lease measured on it
// would outlive its real expiry by the length of the suspend.
func Boottime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		// CLOCK_BOOTTIME exists on every Linux since 2.6.39.
		panic("clock: CLOCK_BOOTTIME: " + err.Error())
	}
	return time.Duration(ts.Sec)*time.Second + time.Duration(ts.Nsec)
}
