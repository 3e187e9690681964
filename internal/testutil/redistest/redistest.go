// Package redistest gives tests a real Redis: a database of the shared server
// on 127.0.0.1:6379 that no other test process uses at the same time, and
// private redis-server processes that tests may stop, kill and restart.
//
// Tests never mock Redis. When redis-server is not installed, tests that need
// it are skipped with a loud message, except under CI=true, where they fail.
package redistest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/granaryhq/granary/internal/clock"
)

// SharedAddr is the address of the machine's shared Redis server.
const SharedAddr = "127.0.0.1:6379"

// Database claims on the shared server: a test process owns database n while
// it holds the key lockPrefix+n in database 0.
const (
	lockPrefix    = "granary-test-lock:"
	firstDB       = 1
	lastDB        = 15
	lockTTL       = 10 * time.Minute
	lockRefresh   = time.Minute
	claimPatience = time.Minute
)

// startupTimeout bounds how long a redis-server may take to answer.
const startupTimeout = 10 * time.Second

// URL returns a redis:// URL of a database on the shared server that this test
// process has claimed for itself; it was empty when claimed. The claim is held
// while any test that asked for it runs and is released (and the database
// flushed) when the last of them finishes. Tests sharing the URL must keep
// their keys apart, for example with a key prefix of their own.
//
// When nothing answers on 127.0.0.1:6379, URL starts a redis-server there.
func URL(t testing.TB) string {
	t.Helper()
	ensureShared(t)

	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.users == 0 {
		if err := shared.claim(); err != nil {
			t.Fatalf("redistest: %v", err)
		}
	}
	shared.users++
	db := shared.db
	t.Cleanup(shared.release)
	return fmt.Sprintf("redis://%s/%d", SharedAddr, db)
}

// missingAction says what a test does when redis-server is not installed.
func missingAction(ci string) (fail bool) { return ci == "true" }

const missingMessage = "REDIS IS MISSING: redis-server is not installed and nothing answers on " +
	SharedAddr + "; install redis-server to run this test"

// redisServerPath returns the redis-server binary, or skips or fails t when
// it is not installed.
func redisServerPath(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err == nil {
		return path
	}
	if missingAction(os.Getenv("CI")) {
		t.Fatalf("%s (CI=true, so this is a failure): %v", missingMessage, err)
	}
	t.Skipf("%s: %v", missingMessage, err)
	return ""
}

// ensureShared makes sure the shared server answers, starting it if needed.
func ensureShared(t testing.TB) {
	t.Helper()
	shared.startMu.Lock()
	defer shared.startMu.Unlock()
	if shared.up {
		return
	}
	if ping(SharedAddr, nil, time.Second) == nil {
		shared.up = true
		return
	}
	bin := redisServerPath(t)
	out, err := exec.Command(bin, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
		"--save", "", "--appendonly", "no").CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: start redis-server on %s: %v: %s", SharedAddr, err, out)
	}
	if err := waitUntilUp(SharedAddr, nil, nil); err != nil {
		t.Fatalf("redistest: redis-server started on %s but does not answer: %v", SharedAddr, err)
	}
	shared.up = true
}

// shared is this process's claim on a database of the shared server.
var shared = &sharedClaim{}

type sharedClaim struct {
	startMu sync.Mutex
	up      bool

	mu      sync.Mutex
	users   int
	db      int
	token   string
	locks   *redis.Client // database 0, where the claim locks live
	refresh clock.Timer
	gen     int // counts claims, so a refresh of an old claim does nothing
}

func newClient(addr string, db int, tlsConfig *tls.Config) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                     addr,
		DB:                       db,
		TLSConfig:                tlsConfig,
		DialTimeout:              2 * time.Second,
		MaxRetries:               -1,
		DialerRetries:            1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// claim takes the first free database and flushes it. Called with mu held.
func (c *sharedClaim) claim() error {
	ctx, cancel := context.WithTimeout(context.Background(), claimPatience)
	defer cancel()
	c.locks = newClient(SharedAddr, 0, nil)
	c.token = strconv.Itoa(os.Getpid())
	retry := time.NewTicker(200 * time.Millisecond)
	defer retry.Stop()
	for {
		for n := firstDB; n <= lastDB; n++ {
			ok, err := c.locks.SetNX(ctx, lockPrefix+strconv.Itoa(n), c.token, lockTTL).Result()
			if err != nil {
				c.locks.Close()
				return fmt.Errorf("claim a database on %s: %w", SharedAddr, err)
			}
			if !ok {
				continue
			}
			if err := flushDB(ctx, n); err != nil {
				c.unlock(n)
				c.locks.Close()
				return err
			}
			c.db = n
			c.gen++
			c.armRefresh()
			return nil
		}
		select {
		case <-ctx.Done():
			c.locks.Close()
			return fmt.Errorf("claim a database on %s: databases %d..%d stayed taken for %v by other test processes",
				SharedAddr, firstDB, lastDB, claimPatience)
		case <-retry.C:
		}
	}
}

// release drops one user of the claim; the last one flushes and frees the database.
func (c *sharedClaim) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.users--
	if c.users > 0 {
		return
	}
	c.refresh.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A failure leaves data behind for the next claimer, which flushes it first.
	_ = flushDB(ctx, c.db)
	c.unlock(c.db)
	c.locks.Close()
	c.locks = nil
}

// armRefresh schedules keepLock for the current claim. Called with mu held.
func (c *sharedClaim) armRefresh() {
	gen := c.gen
	c.refresh = clock.Real.AfterFunc(lockRefresh, func() { c.keepLock(gen) })
}

// keepLock extends claim gen while it is held and re-arms itself.
func (c *sharedClaim) keepLock(gen int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || c.users == 0 || c.locks == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = extendLock.Run(ctx, c.locks, []string{lockPrefix + strconv.Itoa(c.db)}, c.token, int(lockTTL/time.Second)).Err()
	c.armRefresh()
}

// unlock deletes the lock of database n if this process still holds it.
func (c *sharedClaim) unlock(n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = dropLock.Run(ctx, c.locks, []string{lockPrefix + strconv.Itoa(n)}, c.token).Err()
}

var (
	extendLock = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end return 0`)
	dropLock   = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)
)

func flushDB(ctx context.Context, db int) error {
	c := newClient(SharedAddr, db, nil)
	defer c.Close()
	if err := c.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("flush database %d on %s: %w", db, SharedAddr, err)
	}
	return nil
}

// errNotUp is returned by waitUntilUp when the server does not answer in time.
var errNotUp = errors.New("no answer within " + startupTimeout.String())
