package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/testutil"
)

// The Counter example adds one to its count on every reminder fire, so an
// actor's stored count is the number of fires it received.

func (c *cluster) createReminder(id, name, body string) {
	c.t.Helper()
	r := c.do(http.MethodPost, "/v1.0/actors/Counter/"+id+"/reminders/"+name, body)
	if r.status != http.StatusNoContent {
		c.t.Fatalf("create reminder %s/%s: %v", id, name, r)
	}
}

func (c *cluster) count(id string) int64 {
	c.t.Helper()
	n, _ := c.storedCount(id)
	return n
}

// TestRemindersSurviveKill9 registers one-shot reminders due while the silo
// is down and a periodic one, kills granary dev with SIGKILL, and checks
// after restart that every one-shot fires exactly once and the periodic one
// catches up with a single fire, then resumes.
func TestRemindersSurviveKill9(t *testing.T) {
	c := newCluster(t, goCounter)
	c.start()
	const oneShots = 20
	due := time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339Nano)
	for i := range oneShots {
		c.createReminder(fmt.Sprintf("once%d", i), "wake", `{"dueTime":"`+due+`"}`)
	}
	c.createReminder("ticker", "tick", `{"dueTime":"0s","period":"1s"}`)
	testutil.Eventually(t, 10*time.Second, "the periodic reminder fires", func() error {
		if n := c.count("ticker"); n < 1 {
			return fmt.Errorf("ticker count %d", n)
		}
		return nil
	})

	before := c.count("ticker")
	c.granaryProc.Kill()
	<-c.granaryProc.Done()
	time.Sleep(5 * time.Second) // every one-shot falls due; the ticker misses ~5 fires
	c.startGranary()
	restarted := time.Now()

	testutil.Eventually(t, 15*time.Second, "every one-shot reminder fires after restart", func() error {
		for i := range oneShots {
			if n := c.count(fmt.Sprintf("once%d", i)); n != 1 {
				return fmt.Errorf("once%d count %d, want 1", i, n)
			}
		}
		return nil
	})
	testutil.Eventually(t, 10*time.Second, "fired one-shot reminders are deleted", func() error {
		for i := range oneShots {
			r := c.do(http.MethodGet, fmt.Sprintf("/v1.0/actors/Counter/once%d/reminders/wake", i), "")
			if r.status != http.StatusNotFound {
				return fmt.Errorf("once%d reminder: %v", i, r)
			}
		}
		return nil
	})
	if n := c.metadata().Reminders; n != 1 {
		t.Fatalf("metadata reports %d scheduled reminders, want 1 (the ticker)", n)
	}
	// The ticker fired once to catch up, not once per missed period.
	elapsed := time.Since(restarted)
	after := c.count("ticker")
	// Allowed: a fire between reading before and the kill, the catch-up,
	// one fire per second since the restart, and one for timing slack.
	if limit := before + 3 + int64(elapsed/time.Second); after > limit {
		t.Fatalf("ticker went from %d to %d within %v of the restart: a backlog of missed fires was delivered", before, after, elapsed)
	}
	testutil.Eventually(t, 10*time.Second, "the periodic reminder resumes", func() error {
		if n := c.count("ticker"); n < after+2 {
			return fmt.Errorf("ticker count %d, want at least %d", n, after+2)
		}
		return nil
	})
	for i := range oneShots {
		if n := c.count(fmt.Sprintf("once%d", i)); n != 1 {
			t.Fatalf("once%d fired %d times", i, n)
		}
	}
}
