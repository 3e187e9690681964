package main

import (
	"fmt"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
)

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
	if c.Granary, err = benchproc.ProcCPU(m.granaryPid); err != nil {
		return c, fmt.Errorf("granary: %w", err)
	}
	if c.App, err = benchproc.ProcCPU(m.appPid); err != nil {
		return c, fmt.Errorf("echoapp: %w", err)
	}
	if c.Client, err = benchproc.ProcCPU(0); err != nil {
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
