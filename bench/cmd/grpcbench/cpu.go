package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/granaryhq/granary/bench/loadgen"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ),
// 100 per second on every Linux build Go runs on.
const clockTick = 10 * time.Millisecond

// procCPU returns the CPU time (user + system, all threads) a process has
// used, from /proc/<pid>/stat; pid 0 means this process.
func procCPU(pid int) (time.Duration, error) {
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
		return 0, fmt.Errorf("unexpected /proc stat line %q", truncate([]byte(s), 80))
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc stat line %q", truncate([]byte(s), 80))
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

// cpuTimes is the CPU time used by the silo, the app and this program (the
// load's clients).
type cpuTimes struct {
	Granary time.Duration `json:"granary_ns"`
	App     time.Duration `json:"app_ns"`
	Client  time.Duration `json:"client_ns"`
}

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{Granary: c.Granary - o.Granary, App: c.App - o.App, Client: c.Client - o.Client}
}

func (c cpuTimes) add(o cpuTimes) cpuTimes {
	return cpuTimes{Granary: c.Granary + o.Granary, App: c.App + o.App, Client: c.Client + o.Client}
}

// total is the CPU time of all three.
func (c cpuTimes) total() time.Duration { return c.Granary + c.App + c.Client }

// cpuMeter samples the CPU time of the silo, the app and this program. The
// first failure to read it is kept in err, and the CPU figures are then
// left out of the report; it does not stop the benchmark.
type cpuMeter struct {
	granaryPid, appPid int
	err                error
}

func (m *cpuMeter) sample() (cpuTimes, error) {
	var c cpuTimes
	var err error
	if c.Granary, err = procCPU(m.granaryPid); err != nil {
		return c, fmt.Errorf("granary: %w", err)
	}
	if c.App, err = procCPU(m.appPid); err != nil {
		return c, fmt.Errorf("echoapp: %w", err)
	}
	if c.Client, err = procCPU(0); err != nil {
		return c, fmt.Errorf("this program: %w", err)
	}
	return c, nil
}

// during runs a load whose measured part begins warmup after it starts and
// returns the load's result and the CPU time used from then until the load
// returned (a load winds down within milliseconds of its end). It returns
// the load's error; a failure to read the CPU time is kept in m.err.
func (m *cpuMeter) during(warmup time.Duration, load func() (loadgen.Result, error)) (loadgen.Result, cpuTimes, error) {
	type sampled struct {
		c   cpuTimes
		err error
	}
	first := make(chan sampled, 1)
	t := time.AfterFunc(warmup, func() {
		c, err := m.sample()
		first <- sampled{c, err}
	})
	res, err := load()
	if err != nil {
		t.Stop()
		return res, cpuTimes{}, err
	}
	if t.Stop() {
		m.fail(fmt.Errorf("a load returned before its warm-up of %v ended", warmup))
		return res, cpuTimes{}, nil
	}
	s := <-first
	last, err := m.sample()
	if s.err != nil {
		err = s.err
	}
	if err != nil {
		m.fail(err)
		return res, cpuTimes{}, nil
	}
	return res, last.sub(s.c), nil
}

func (m *cpuMeter) fail(err error) {
	if m.err == nil {
		m.err = err
	}
}
