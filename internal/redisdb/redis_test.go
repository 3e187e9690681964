package redisdb

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/granaryhq/granary/internal/testutil/redistest"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		url      string
		db       int
		shared   bool
		redacted string
		errSub   string
	}{
		{"redis://127.0.0.1:6379/13", 13, true, "redis://127.0.0.1:6379/13", ""},
		{"redis://localhost:6379/2", 2, true, "redis://localhost:6379/2", ""},
		{"redis://127.0.0.1:6380/2", 2, false, "redis://127.0.0.1:6380/2", ""},
		{"redis://10.0.0.5:6379/2", 2, false, "redis://10.0.0.5:6379/2", ""},
		{"rediss://127.0.0.1:6379/2", 2, false, "rediss://127.0.0.1:6379/2", ""},
		{"redis://user:s3cret@127.0.0.1:6379/4", 4, true, "redis://user:xxxxx@127.0.0.1:6379/4", ""},
		{"redis://127.0.0.1:6379/0", 0, false, "", "other than 0"},
		{"redis://127.0.0.1:6379", 0, false, "", "other than 0"},
		{"redis://127.0.0.1:6379/x", 0, false, "", "redis://127.0.0.1:6379/x"},
		{"127.0.0.1:6379/3", 0, false, "", "want redis://"},
		{"http://127.0.0.1:6379/3", 0, false, "", "want redis://"},
	}
	for _, tt := range tests {
		got, err := ParseTarget(tt.url)
		if tt.errSub != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errSub) {
				t.Errorf("%s: error %v, want one containing %q", tt.url, err, tt.errSub)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.url, err)
			continue
		}
		if got.DB != tt.db || got.Options.DB != tt.db || got.Shared != tt.shared || got.Redacted != tt.redacted {
			t.Errorf("%s: db %d (options %d) shared %v redacted %q; want %d %v %q", tt.url, got.DB, got.Options.DB,
				got.Shared, got.Redacted, tt.db, tt.shared, tt.redacted)
		}
	}
}

// testDB returns a client on a database of the shared Redis that this test
// process has claimed, and the database's URL.
func testDB(t *testing.T) (*redis.Client, string) {
	t.Helper()
	u := redistest.URL(t)
	target, err := ParseTarget(u)
	if err != nil {
		t.Fatal(err)
	}
	c := target.Client()
	t.Cleanup(func() { c.Close() })
	return c, u
}

func TestClaimDB(t *testing.T) {
	c, _ := testDB(t)
	ctx := context.Background()
	const key = "benchredis-test-lock"
	cfg := func(token string, patience time.Duration) lockConfig {
		return lockConfig{client: c, key: key, token: token, ttl: 30 * time.Second,
			refresh: 20 * time.Millisecond, patience: patience, retry: 10 * time.Millisecond}
	}
	one, err := claimDB(ctx, cfg("one", 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := claimDB(ctx, cfg("two", 100*time.Millisecond)); err == nil || !strings.Contains(err.Error(), `held by "one"`) {
		t.Fatalf("claiming a held database: %v", err)
	}

	// The holder keeps pushing the expiry back.
	if err := c.Expire(ctx, key, 2*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		ttl, err := c.TTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl > 10*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the claim's expiry was not refreshed (TTL %v)", ttl)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A waiting claimant gets the database once it is released.
	got := make(chan error, 1)
	var two *dbLock
	go func() {
		var err error
		two, err = claimDB(ctx, cfg("two", 10*time.Second))
		got <- err
	}()
	one.release()
	if err := <-got; err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	if v, _ := c.Get(ctx, key).Result(); v != "two" {
		t.Errorf("lock holds %q, want two", v)
	}

	// Releasing a claim that has been lost leaves the new holder alone.
	if err := c.Set(ctx, key, "other", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	two.release()
	if v, _ := c.Get(ctx, key).Result(); v != "other" {
		t.Errorf("after releasing a lost claim the lock holds %q, want other", v)
	}
	if err := c.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestPrepareFlushesBeforeAndAfter(t *testing.T) {
	c, u := testDB(t)
	ctx := context.Background()
	target, err := ParseTarget(u)
	if err != nil {
		t.Fatal(err)
	}
	// The claim on the shared server is this test process's own (redistest's);
	// the benchmark's claim is covered by TestClaimDB.
	target.Shared = false
	if err := c.Set(ctx, "left-over", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	db, err := Prepare(ctx, target, "benchredis-test", time.Second, func(string, ...any) {
		t.Error("tried to start a server that answers")
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Errorf("database holds %d keys after Prepare (%v)", n, err)
	}
	if err := c.Set(ctx, "written-by-the-run", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Errorf("database holds %d keys after Close (%v)", n, err)
	}
}

// On the shared server Prepare claims the database with the test helpers'
// lock key, so it neither flushes nor uses a database a test process holds.
func TestPrepareWaitsForATestProcessClaim(t *testing.T) {
	c, u := testDB(t) // claimed by this test process through redistest
	ctx := context.Background()
	target, err := ParseTarget(u)
	if err != nil {
		t.Fatal(err)
	}
	if !target.Shared {
		t.Fatalf("redistest's database %s is not on the shared server", u)
	}
	if err := c.Set(ctx, "a-test's-key", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	db, err := Prepare(ctx, target, "benchredis-test", 300*time.Millisecond, func(string, ...any) {})
	if db != nil {
		db.Close()
	}
	want := fmt.Sprintf("granary-test-lock:%d is held by %q", target.DB, strconv.Itoa(os.Getpid()))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("preparing a database a test process holds: %v; want an error containing %s", err, want)
	}
	if n, err := c.Exists(ctx, "a-test's-key").Result(); err != nil || n != 1 {
		t.Errorf("the test process's key is gone (%d, %v)", n, err)
	}
}

func TestPrepareUnreachable(t *testing.T) {
	target, err := ParseTarget("redis://127.0.0.1:1/3")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Prepare(context.Background(), target, "benchredis-test", time.Second, func(string, ...any) {
		t.Error("tried to start a server for an address other than the shared one")
	})
	if err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("unreachable Redis: %v", err)
	}
}
