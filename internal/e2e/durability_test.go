package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
)

// TestAcknowledgedWritesSurviveKill checks that every increment granary
// acknowledged with 200 is still there after granary is killed with
// SIGKILL: first after N acknowledged increments in a row, then with
// increments of several actors in flight at the moment of the kill.
func TestAcknowledgedWritesSurviveKill(t *testing.T) {
	t.Parallel()
	c := newCluster(t, goCounter)
	c.start()

	const n = 40
	for i := int64(1); i <= n; i++ {
		c.expectCount("seq", "increment", "", i)
	}

	// Several actors counting at once, each acknowledged increment recorded,
	// and the kill lands while they are still going.
	const workers = 4
	const killAfter = 60 // acknowledged increments, all workers together
	var (
		acked   [workers]atomic.Int64
		total   atomic.Int64
		enough  = make(chan struct{})
		once    sync.Once
		wg      sync.WaitGroup
		oddity  [workers]atomic.Pointer[string] // an answer other than the next count
		stopped [workers]atomic.Pointer[string] // why the worker stopped
	)
	for w := range workers {
		wg.Go(func() {
			id := fmt.Sprintf("w%d", w)
			for {
				r, err := c.try(http.MethodPost, "/v1.0/actors/Counter/"+id+"/method/increment", "")
				if err != nil {
					msg := err.Error()
					stopped[w].Store(&msg)
					return
				}
				got, err := countOf(r)
				if err != nil || got != acked[w].Load()+1 {
					msg := fmt.Sprintf("after %d acknowledged increments: %v (count %d)", acked[w].Load(), err, got)
					oddity[w].Store(&msg)
					return
				}
				acked[w].Store(got)
				if total.Add(1) >= killAfter {
					once.Do(func() { close(enough) })
				}
			}
		})
	}
	<-enough
	c.granaryProc.Kill()
	wg.Wait()
	for w := range workers {
		if msg := oddity[w].Load(); msg != nil {
			t.Fatalf("worker %d got an unexpected answer before the kill: %s", w, *msg)
		}
		if msg := stopped[w].Load(); msg != nil {
			t.Logf("worker %d stopped after %d acknowledged increments: %s", w, acked[w].Load(), *msg)
		}
	}
	if code := c.granaryProc.ExitCode(); code == 0 {
		t.Fatal("granary exited 0 after SIGKILL; the kill did not land")
	}

	// A fresh app (its cache could hide a lost write) and granary on the
	// same data directory.
	c.appProc.Kill()
	c.client.CloseIdleConnections()
	c.start()

	if got, ok := c.storedCount("seq"); !ok || got != n {
		t.Fatalf("after kill -9 the stored count of seq is %d (present %v), want %d", got, ok, n)
	}
	c.expectCount("seq", "get", "", n)
	for w := range workers {
		id := fmt.Sprintf("w%d", w)
		want := acked[w].Load()
		got, _ := c.storedCount(id)
		// The increment in flight at the kill may have been saved without
		// being acknowledged; an acknowledged one must never be missing.
		if got != want && got != want+1 {
			t.Errorf("after kill -9 the stored count of %s is %d; %d increments were acknowledged", id, got, want)
		}
		c.expectCount(id, "increment", "", got+1)
	}
	c.expectCount("seq", "increment", "", n+1)
	c.stopGranary()
}
