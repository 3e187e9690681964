package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/granaryhq/granary/internal/testutil"
	"github.com/granaryhq/granary/internal/testutil/redistest"
)

// claimOf reads the claim a dev silo serves under from its metadata.
func (c *cluster) claimOf() (claim string, version uint64) {
	c.t.Helper()
	md := c.metadata()
	if md.Placement.Claim == "" {
		c.t.Fatalf("metadata shows no claim: %+v", md.Placement)
	}
	return md.Placement.Claim, md.Placement.TableVersion
}

// TestSecondDevOnOneRedisServesNoneOfTheFirstsShards starts two granary dev
// processes, each with its own app and port, on one Redis. The first claims
// the Counter shards; the second is refused them: it says so at start, at
// error level, naming the first as the holder, and its actor calls answer an
// error naming it too, while the first goes on serving.
func TestSecondDevOnOneRedisServesNoneOfTheFirstsShards(t *testing.T) {
	srv := redistest.StartServer(t, false)
	first := newCluster(t, goCounter)
	first.granaryArgs = []string{"--state-store", srv.URL()}
	first.start()
	first.expectCount("a", "increment", "", 1)
	holder, _ := first.claimOf()
	holderSilo := strings.Split(holder, "/")[1]
	if !strings.HasSuffix(holderSilo, "-"+strconv.Itoa(first.httpPort)) {
		t.Fatalf("the first dev's silo ID %q does not end with its port %d", holderSilo, first.httpPort)
	}

	second := newCluster(t, goCounter)
	second.granaryArgs = []string{"--state-store", srv.URL()}
	second.start()
	testutil.Eventually(t, readyTimeout, "the second dev logs the refusal naming the holder", func() error {
		for line := range strings.SplitSeq(second.granaryProc.Output(), "\n") {
			if strings.Contains(line, "level=ERROR") && strings.Contains(line, holder) {
				return nil
			}
		}
		return fmt.Errorf("no error line naming %s in:\n%s", holder, second.granaryProc.Output())
	})

	for _, id := range []string{"a", "b", "c"} {
		r := second.do(http.MethodPost, "/v1.0/actors/Counter/"+id+"/method/increment", "")
		e := expectError(t, "increment on the second dev", r, http.StatusNotFound, "ERR_ACTOR_NO_ADDRESS")
		if !strings.Contains(e.Message, holderSilo) {
			t.Fatalf("the second dev's answer %q does not name the holder %s", e.Message, holderSilo)
		}
	}
	r := second.do(http.MethodPost, "/v1.0/actors/Counter/a/reminders/r", `{"dueTime":"1h"}`)
	expectError(t, "reminder registration on the second dev", r, http.StatusNotFound, "ERR_ACTOR_NO_ADDRESS")

	// The first dev's actors are untouched and it keeps serving them.
	first.expectCount("a", "increment", "", 2)
	first.expectCount("b", "increment", "", 1)
	second.stopGranary()
	first.stopGranary()
}

// TestDevRestartedAfterKill9ServesItsActors kills granary dev with SIGKILL,
// so it releases nothing, and starts it again on the same data: the new
// process claims its predecessor's shards at the next version, under a new
// incarnation, and serves the actors with their state. It runs on both
// stores; on Redis no take-over helps, only the version.
func TestDevRestartedAfterKill9ServesItsActors(t *testing.T) {
	for _, store := range []string{"bbolt", "redis"} {
		t.Run(store, func(t *testing.T) {
			c := newCluster(t, goCounter)
			if store == "redis" {
				c.granaryArgs = []string{"--state-store", redistest.StartServer(t, false).URL()}
			}
			c.start()
			for i := int64(1); i <= 3; i++ {
				c.expectCount("a", "increment", "", i)
			}
			c.expectCount("b", "increment", "", 1)
			before, version := c.claimOf()

			c.granaryProc.Kill()
			if code := c.granaryProc.ExitCode(); code == 0 {
				t.Fatal("granary exited 0 after SIGKILL; the kill did not land")
			}
			// A fresh app too: its memory could hide lost state.
			c.appProc.Kill()
			c.client.CloseIdleConnections()
			c.start()

			after, next := c.claimOf()
			if next != version+1 {
				t.Fatalf("claim version %d after the restart, want %d (was %s)", next, version+1, before)
			}
			if after == before || strings.Split(after, "/")[1] != strings.Split(before, "/")[1] {
				t.Fatalf("claim %s after the restart of %s: want the same silo under a new incarnation", after, before)
			}
			if got, ok := c.storedCount("a"); !ok || got != 3 {
				t.Fatalf("stored count of a after the restart: %d (present %v), want 3", got, ok)
			}
			c.expectCount("a", "increment", "", 4)
			c.expectCount("b", "increment", "", 2)
			c.expectCount("fresh", "increment", "", 1)
			c.stopGranary()
		})
	}
}
