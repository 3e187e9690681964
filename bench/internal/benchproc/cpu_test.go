package benchproc

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "4242 (gran (a) ry) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 1000000 2000 18446744073709551615"
	got, err := parseStat(line)
	if err != nil || got != 3250*time.Millisecond {
		t.Errorf("parseStat = %v, %v; want 3.25s", got, err)
	}
	for _, bad := range []string{"", "4242 granary S 1", "4242 (granary) S 1 2 3", "4242 (g) S 1 4242 4242 0 -1 4194560 1234 0 0 0 x 75 0"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("NO /proc ON THIS SYSTEM: CPU time cannot be read here")
	}
	before, err := ProcCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	var ru syscall.Rusage
	used := func() time.Duration {
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for start := used(); used()-start < 60*time.Millisecond; {
	}
	after, err := ProcCPU(os.Getpid())
	if err != nil || after-before < 20*time.Millisecond {
		t.Errorf("CPU time %v then %v (%v)", before, after, err)
	}
	if _, err := ProcCPU(-1); err == nil {
		t.Error("the CPU time of no process")
	}
}
