package clock

import (
	"testing"
	"time"
)

func TestBoottimeAdvancesWithRealTime(t *testing.T) {
	b0, w0 := Boottime(), time.Now()
	time.Sleep(20 * time.Millisecond)
	db, dw := Boottime()-b0, time.Since(w0)
	if db <= 0 {
		t.Fatalf("boot time did not advance: %v", db)
	}
	if diff := db - dw; diff > 5*time.Millisecond || diff < -5*time.Millisecond {
		t.Fatalf("boot time advanced %v while the monotonic clock advanced %v", db, dw)
	}
}
