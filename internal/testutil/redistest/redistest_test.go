package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestMissingAction(t *testing.T) {
	for _, tt := range []struct {
		ci   string
		fail bool
	}{{"true", true}, {"", false}, {"false", false}, {"1", false}} {
		if got := missingAction(tt.ci); got != tt.fail {
			t.Errorf("missingAction(%q) = %v, want %v", tt.ci, got, tt.fail)
		}
	}
}

var urlPattern = regexp.MustCompile(`^redis://127\.0\.0\.1:6379/([0-9]+)$`)

func claimedDB(t *testing.T, url string) int {
	t.Helper()
	m := urlPattern.FindStringSubmatch(url)
	if m == nil {
		t.Fatalf("URL = %q", url)
	}
	n, _ := strconv.Atoi(m[1])
	if n < firstDB || n > lastDB {
		t.Fatalf("database %d outside %d..%d", n, firstDB, lastDB)
	}
	return n
}

func TestURLClaimsAndReleases(t *testing.T) {
	ctx := context.Background()
	locks := newClient(SharedAddr, 0, nil)
	defer locks.Close()
	pid := strconv.Itoa(os.Getpid())
	sentinel := fmt.Sprintf("redistest-sentinel-%d", os.Getpid())

	var db int
	t.Run("use", func(t *testing.T) {
		url := URL(t)
		db = claimedDB(t, url)
		if again := URL(t); again != url {
			t.Errorf("second URL in one process = %q, want %q", again, url)
		}
		if got, err := locks.Get(ctx, lockPrefix+strconv.Itoa(db)).Result(); err != nil || got != pid {
			t.Errorf("lock = %q, %v; want %q", got, err, pid)
		}
		if ttl, err := locks.TTL(ctx, lockPrefix+strconv.Itoa(db)).Result(); err != nil || ttl <= 0 || ttl > lockTTL {
			t.Errorf("lock TTL = %v, %v", ttl, err)
		}
		c := newClient(SharedAddr, db, nil)
		defer c.Close()
		if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
			t.Errorf("claimed database holds %d keys, %v; want it flushed", n, err)
		}
		if err := c.Set(ctx, sentinel, "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
	})

	// The last user is done: the lock is ours no more and the data is gone.
	if got, err := locks.Get(ctx, lockPrefix+strconv.Itoa(db)).Result(); err == nil && got == pid {
		t.Errorf("lock still held after cleanup")
	} else if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	c := newClient(SharedAddr, db, nil)
	defer c.Close()
	if n, err := c.Exists(ctx, sentinel).Result(); err != nil || n != 0 {
		t.Errorf("data left in database %d after cleanup: %d, %v", db, n, err)
	}
}

// TestProcessesGetDifferentDatabases runs this test binary again as a second
// process and checks that it claims another database than this one holds.
func TestProcessesGetDifferentDatabases(t *testing.T) {
	mine := claimedDB(t, URL(t))
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperClaim$", "-test.v")
	cmd.Env = append(os.Environ(), "REDISTEST_HELPER=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper process: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`claimed (redis://\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("helper process printed no URL:\n%s", out)
	}
	if theirs := claimedDB(t, string(m[1])); theirs == mine {
		t.Errorf("both processes claimed database %d", mine)
	}
}

// TestHelperClaim is the second process of TestProcessesGetDifferentDatabases;
// run directly, it does nothing.
func TestHelperClaim(t *testing.T) {
	if os.Getenv("REDISTEST_HELPER") != "1" {
		return
	}
	fmt.Println("claimed", URL(t))
}

// clientFor connects to url without retries, so a dead server fails at once.
func clientFor(t *testing.T, url string, tlsServer *Server) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig := opts.TLSConfig
	if tlsServer != nil {
		tlsConfig = tlsServer.TLSConfig()
	}
	return newClient(opts.Addr, opts.DB, tlsConfig)
}

func get(t *testing.T, url string, tlsServer *Server, key string) (string, error) {
	t.Helper()
	c := clientFor(t, url, tlsServer)
	defer c.Close()
	return c.Get(context.Background(), key).Result()
}

func set(t *testing.T, url string, key, value string) {
	t.Helper()
	c := clientFor(t, url, nil)
	defer c.Close()
	if err := c.Set(context.Background(), key, value, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestServerKillRestart(t *testing.T) {
	for _, persistent := range []bool{true, false} {
		t.Run(fmt.Sprintf("persistent=%v", persistent), func(t *testing.T) {
			s := StartServer(t, persistent)
			if !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") || !strings.HasSuffix(s.URL(), "/0") || !strings.Contains(s.URL(), s.Addr()) {
				t.Errorf("URL = %q, Addr = %q", s.URL(), s.Addr())
			}
			if s.TLSConfig() != nil {
				t.Error("plain server has a TLS config")
			}
			set(t, s.URL(), "k", "v")
			s.Kill()
			if _, err := get(t, s.URL(), nil, "k"); err == nil {
				t.Fatal("killed server answers")
			}
			s.Restart()
			got, err := get(t, s.URL(), nil, "k")
			if persistent && (err != nil || got != "v") {
				t.Errorf("persistent server lost k: %q, %v", got, err)
			}
			if !persistent && err != redis.Nil {
				t.Errorf("non-persistent server kept k: %q, %v", got, err)
			}
			set(t, s.URL(), "k2", "v2")
			s.Stop()
			s.Stop() // stopping twice does nothing
			s.Restart()
			if _, err := get(t, s.URL(), nil, "k2"); persistent && err != nil {
				t.Errorf("after Stop and Restart: %v", err)
			}
		})
	}
}

func TestTLSServer(t *testing.T) {
	s := StartTLSServer(t)
	if !strings.HasPrefix(s.URL(), "rediss://") {
		t.Errorf("URL = %q", s.URL())
	}
	if _, err := get(t, s.URL(), s, "absent"); err != redis.Nil {
		t.Errorf("GET over TLS: %v, want redis.Nil", err)
	}
}
