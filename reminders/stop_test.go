package reminders_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/statestore/memstore"
)

// A fire stuck in an actor that ignores its cancelled context (an app that
// never answers) does not hold Stop past StopTimeout and a short grace: the
// shutdown goes on, and that fire's due time stays as stored, so it is
// delivered again after a restart.
func TestStopDoesNotWaitForAStuckFire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPinger()
		stuck := make(chan struct{})
		p.block["a"] = stuck
		h := start(t, memstore.New(), p, reminders.Config{StopTimeout: 2 * time.Second})
		h.create("a", "r", "0s", "1h", "")
		h.create("b", "r", "0s", "1h", "")
		synctest.Wait()
		stopped := make(chan struct{})
		begin := time.Now()
		var took time.Duration
		go func() { h.svc.Stop(); took = time.Since(begin); close(stopped) }()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		select {
		case <-stopped:
		default:
			close(stuck)
			<-stopped
			t.Fatal("Stop waited for a fire stuck in its actor")
		}
		if took > 3*time.Second {
			t.Errorf("Stop took %v with StopTimeout 2s", took)
		}
		info, ok := h.stored("b", "r")
		if !ok || !info.NextFire.After(begin) {
			t.Errorf("the delivered fire's next due time was not written: %+v %v", info, ok)
		}
		close(stuck)
		h.rt.Close(t.Context())
	})
}
