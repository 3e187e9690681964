package main

// The memory scenario: many registered reminders and the memory they hold.

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/bench/internal/benchproc"
)

func (b *bench) memory(ctx context.Context) (r result) {
	n := b.o.memoryN
	r.Title = "memory"
	r.Setup = fmt.Sprintf("%s; %d reminders (dueTime 1h, period 1h) on %d inactive Echo actors; resident memory of this process after runtime.GC",
		storeLabel(b.o.store), n, b.o.memoryActors)
	runtime.GC()
	debug.FreeOSMemory()
	start := readMemory()
	if start.err != nil {
		r.failf("reading resident memory: %v", start.err)
		return r
	}
	h, err := b.openHarness(ctx, b.o.store)
	if err != nil {
		r.fail(err)
		return r
	}
	defer h.closeInto(&r)
	ids := actorIDs("mem-", b.o.memoryActors)
	spec := func(int) actor.ReminderSpec { return actor.ReminderSpec{DueTime: "1h", Period: "1h"} }
	// Memory is read at half the reminders too: the growth from there to
	// all of them is the cost of a reminder without the fixed costs.
	half := n / 2
	b.progress("registering %d reminders", n)
	first, err := b.registerAll(ctx, h, ids, 0, half, spec)
	if err != nil {
		r.fail(err)
		return r
	}
	runtime.GC()
	mid := readMemory()
	second, err := b.registerAll(ctx, h, ids, half, n, spec)
	if err != nil {
		r.fail(err)
		return r
	}
	runtime.GC()
	end := readMemory()
	debug.FreeOSMemory()
	returned := readMemory()

	rss := mibMetric("RSS", end.rss)
	marginal := float64(sub(end.rss, mid.rss)) / float64(n-half)
	projected := mibMetric(fmt.Sprintf("RSS projected to %d reminders", memoryTargetCount),
		end.rss+uint64(marginal*float64(max(0, memoryTargetCount-n))))
	gib := float64(memoryTarget) / (1 << 20)
	if n >= memoryTargetCount {
		rss = rss.atMost(gib, "1 GiB")
	} else {
		projected = projected.atMost(gib, "1 GiB")
	}
	r.add(rss,
		mibMetric("RSS anonymous", end.rssAnon),
		mibMetric("RSS file-backed (binary, store mmap)", end.rssFile),
		mibMetric("Go heap in use", end.heapInuse),
		mibMetric("RSS at the start", start.rss),
		bytesMetric("RSS per reminder (from the start)", float64(sub(end.rss, start.rss))/float64(n)),
		bytesMetric("RSS per reminder (second half)", marginal),
		bytesMetric("Go heap per reminder (from the start)", float64(sub(end.heapInuse, start.heapInuse))/float64(n)),
		mibMetric("RSS after debug.FreeOSMemory", returned.rss))
	if h.dbPath != "" {
		if st, err := os.Stat(h.dbPath); err == nil {
			r.add(mibMetric("store file size", uint64(st.Size())))
		}
	}
	r.add(rateMetric("registrations/s", perSecond(n, first.elapsed+second.elapsed)))
	if n < memoryTargetCount {
		r.add(projected)
		r.note("with fewer than %d reminders the target applies to the RSS projected from the growth over the second half", memoryTargetCount)
	}
	return r
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// memory is a snapshot of the process's memory; sizes in bytes.
type memory struct {
	rss, rssAnon, rssFile uint64
	heapInuse             uint64
	err                   error // reading /proc/self/status
}

func readMemory() memory {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := memory{heapInuse: ms.HeapInuse}
	st, err := benchproc.Status(os.Getpid())
	if err != nil {
		m.err = err
		return m
	}
	m.rss, m.rssAnon, m.rssFile = st["VmRSS"], st["RssAnon"], st["RssFile"]
	return m
}
