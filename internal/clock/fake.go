package clock

import (
	"container/heap"
	"sync"
	"time"
)

// Fake is a Clock that moves only when told to. Timers whose time has come fire
// during Advance or Set, in time order; AfterFunc callbacks run in their own
// goroutines as they would with the real clock.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers fakeHeap
	seq    uint64
}

// NewFake returns a fake clock reading start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the clock forward by d, firing every timer that falls due.
func (f *Fake) Advance(d time.Duration) { f.Set(f.Now().Add(d)) }

// Set moves the clock to t (never backwards), firing every timer that falls due.
func (f *Fake) Set(t time.Time) {
	for {
		f.mu.Lock()
		if len(f.timers) == 0 || f.timers[0].when.After(t) {
			if t.After(f.now) {
				f.now = t
			}
			f.mu.Unlock()
			return
		}
		ft := heap.Pop(&f.timers).(*fakeTimer)
		if ft.when.After(f.now) {
			f.now = ft.when
		}
		ft.index = -1
		now := f.now
		f.mu.Unlock()
		ft.fire(now)
	}
}

// Pending returns how many timers are waiting to fire.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// AfterFunc schedules f to run in its own goroutine once the clock passes d from now.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	return f.add(d, &fakeTimer{clock: f, fn: fn})
}

// NewTimer returns a timer whose channel receives once the clock passes d from now.
func (f *Fake) NewTimer(d time.Duration) Timer {
	return f.add(d, &fakeTimer{clock: f, ch: make(chan time.Time, 1)})
}

func (f *Fake) add(d time.Duration, t *fakeTimer) *fakeTimer {
	f.mu.Lock()
	t.index = -1
	f.schedule(t, d)
	f.mu.Unlock()
	if d <= 0 {
		f.Set(f.Now())
	}
	return t
}

// schedule requires f.mu.
func (f *Fake) schedule(t *fakeTimer, d time.Duration) {
	f.seq++
	t.when, t.seq = f.now.Add(d), f.seq
	heap.Push(&f.timers, t)
}

type fakeTimer struct {
	clock *Fake
	when  time.Time
	seq   uint64
	index int
	fn    func()
	ch    chan time.Time
}

func (t *fakeTimer) fire(now time.Time) {
	if t.fn != nil {
		go t.fn()
		return
	}
	select {
	case t.ch <- now:
	default:
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	f := t.clock
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&f.timers, t.index)
	t.index = -1
	return true
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	f := t.clock
	f.mu.Lock()
	pending := t.index >= 0
	if pending {
		heap.Remove(&f.timers, t.index)
	}
	f.schedule(t, d)
	f.mu.Unlock()
	if d <= 0 {
		f.Set(f.Now())
	}
	return pending
}

type fakeHeap []*fakeTimer

func (h fakeHeap) Len() int { return len(h) }
func (h fakeHeap) Less(i, j int) bool {
	if h[i].when.Equal(h[j].when) {
		return h[i].seq < h[j].seq
	}
	return h[i].when.Before(h[j].when)
}
func (h fakeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *fakeHeap) Push(x any) {
	t := x.(*fakeTimer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *fakeHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return t
}
