package clock

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestFakeFiresInOrderAndOnlyWhenDue(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	a := f.NewTimer(2 * time.Second)
	b := f.NewTimer(time.Second)
	f.Advance(500 * time.Millisecond)
	select {
	case <-b.C():
		t.Fatal("timer fired early")
	default:
	}
	f.Advance(time.Second)
	if got := <-b.C(); !got.Equal(start.Add(time.Second)) {
		t.Fatalf("b fired at %v, want %v", got, start.Add(time.Second))
	}
	select {
	case <-a.C():
		t.Fatal("a fired early")
	default:
	}
	if !a.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	f.Advance(time.Hour)
	select {
	case <-a.C():
		t.Fatal("stopped timer fired")
	default:
	}
	if f.Pending() != 0 {
		t.Fatalf("pending = %d", f.Pending())
	}
}

func TestFakeAfterFuncAndReset(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	var n atomic.Int32
	done := make(chan struct{}, 4)
	tm := f.AfterFunc(time.Second, func() { n.Add(1); done <- struct{}{} })
	if !tm.Reset(3 * time.Second) {
		t.Fatal("Reset of pending timer reported false")
	}
	f.Advance(2 * time.Second)
	if n.Load() != 0 {
		t.Fatal("fired before the reset deadline")
	}
	f.Advance(time.Second)
	<-done
	if tm.Reset(time.Second) {
		t.Fatal("Reset of a fired timer reported pending")
	}
	f.Advance(time.Second)
	<-done
	if n.Load() != 2 {
		t.Fatalf("fired %d times, want 2", n.Load())
	}
}
