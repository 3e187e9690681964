package benchproc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ),
// 100 per second on every Linux build Go runs on.
const clockTick = 10 * time.Millisecond

// ProcCPU returns the CPU time (user + system, all threads) a process has
// used, from /proc/<pid>/stat; pid 0 means this process.
func ProcCPU(pid int) (time.Duration, error) {
	name := "self"
	if pid != 0 {
		name = strconv.Itoa(pid)
	}
	data, err := os.ReadFile("/proc/" + name + "/stat")
	if err != nil {
		return 0, fmt.Errorf("reading CPU time: %w", err)
	}
	return parseStat(string(data))
}

// parseStat reads utime and stime (fields 14 and 15) from the text of
// /proc/<pid>/stat. The command name, field 2, is in parentheses and may
// hold spaces and parentheses itself, so the fields are counted from the
// last ')'.
func parseStat(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc stat line %q", s[:min(len(s), 80)])
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc stat line %q", s[:min(len(s), 80)])
	}
	var ticks uint64
	for _, v := range f[11:13] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected CPU time %q in /proc stat", v)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}
