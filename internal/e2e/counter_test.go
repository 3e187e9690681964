package e2e

import (
	"net/http"
	"testing"
)

// TestCounterExamplesSurviveRestart runs each Counter example behind
// `granary dev`, stops both cleanly, starts them again on the same data
// directory and checks that the counts survived and counting goes on.
func TestCounterExamplesSurviveRestart(t *testing.T) {
	for _, app := range []counterApp{goCounter, pythonCounter, jsCounter} {
		t.Run(app.name, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, app)
			c.start()

			c.expectCount("a", "get", "", 0)
			c.expectCount("a", "increment", "", 1)
			c.expectCount("a", "increment", "", 2)
			c.expectCount("a", "increment", `{"by": 5}`, 7)
			c.expectCount("b", "increment", "", 1)
			c.expectCount("a", "get", "", 7)
			c.expectCount("b", "get", "", 1)
			c.expectActive(2)
			if n, ok := c.storedCount("a"); !ok || n != 7 {
				t.Fatalf("stored count of a is %d (present %v), want 7", n, ok)
			}
			if _, ok := c.storedCount("never-called"); ok {
				t.Fatal("an actor never called has a stored count")
			}

			// A clean stop of both, then a fresh start on the same data
			// directory: the app's cache is gone, so the counts can come
			// only from the store.
			c.stopGranary()
			c.stopApp()
			c.start()
			c.expectActive(0)

			c.expectCount("a", "get", "", 7)
			c.expectCount("b", "get", "", 1)
			c.expectCount("a", "increment", "", 8)
			c.expectCount("b", "increment", `{"by": 2}`, 3)
			c.expectCount("b", "reset", "", 0)
			c.expectCount("b", "get", "", 0)
			c.expectActive(2)
			if n, ok := c.storedCount("a"); !ok || n != 8 {
				t.Fatalf("stored count of a is %d (present %v), want 8", n, ok)
			}

			// Granary alone restarts while the app runs on. A clean
			// shutdown deactivates every actor, which tells the app to drop
			// the count it cached; a count written to the store behind the
			// app's back shows that it did.
			r := c.do(http.MethodPost, "/v1.0/actors/Counter/a/state",
				`[{"operation":"upsert","request":{"key":"count","value":100}}]`)
			if r.status != http.StatusNoContent {
				t.Fatalf("state transaction for the active actor a: %v, want 204", r)
			}
			c.expectCount("a", "get", "", 8) // the app answers from its cache
			c.stopGranary()
			c.startGranary()
			c.expectCount("a", "get", "", 100)
			c.expectCount("a", "increment", "", 101)

			c.stopGranary()
			c.stopApp()
		})
	}
}
