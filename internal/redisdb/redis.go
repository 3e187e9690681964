// Package redisdb gives the benchmark commands under bench/cmd and the
// chaos suite a Redis database they may flush. It checks the database's URL (database 0 is
// refused), starts the machine's shared server when nothing answers there,
// and on that server claims the database the way the test helpers of
// internal/testutil/redistest do, with a lock key in database 0 that is
// refreshed while held, so that a benchmark never flushes a database a test
// process is using and a test never sees it flushed mid-run.
package redisdb

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// SharedAddr is the machine's shared Redis server, whose databases test
// processes claim with lock keys in database 0.
const SharedAddr = "127.0.0.1:6379"

// The database claim of the test helpers (internal/testutil/redistest): a
// process owns database n of the shared server while it holds the key
// lockPrefix+n in database 0.
const (
	lockPrefix  = "granary-test-lock:"
	lockTTL     = 10 * time.Minute
	lockRefresh = time.Minute
	claimRetry  = 200 * time.Millisecond
)

// Target is a Redis database named by a URL.
type Target struct {
	Options  *redis.Options
	DB       int
	Shared   bool   // on the shared server: claim the database before use
	Redacted string // the URL without its password
}

// ParseTarget checks a redis:// or rediss:// URL. Database 0 is refused: it
// is the default database and holds the test helpers' claims, and the
// benchmark flushes the database it uses.
func ParseTarget(rawURL string) (Target, error) {
	if !strings.HasPrefix(rawURL, "redis://") && !strings.HasPrefix(rawURL, "rediss://") {
		return Target{}, fmt.Errorf("%q: want redis://host:port/db or rediss://…", rawURL)
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return Target{}, fmt.Errorf("%q: %w", rawURL, err)
	}
	if opts.DB <= 0 {
		return Target{}, fmt.Errorf("%q: name a database other than 0 (for example /13): the benchmark flushes it", rawURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return Target{}, fmt.Errorf("%q: %w", rawURL, err)
	}
	host, port, _ := strings.Cut(opts.Addr, ":")
	return Target{
		Options:  opts,
		DB:       opts.DB,
		Shared:   port == "6379" && (host == "127.0.0.1" || host == "localhost") && opts.TLSConfig == nil,
		Redacted: u.Redacted(),
	}, nil
}

// Client returns a client of the target's database.
func (t Target) Client() *redis.Client { return newClient(*t.Options, t.DB) }

// newClient returns a client of database db of the server opts names; like
// the test helpers' clients it fails fast when the server does not answer.
func newClient(opts redis.Options, db int) *redis.Client {
	opts.DB = db
	opts.DialTimeout = 2 * time.Second
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return redis.NewClient(&opts)
}

// DB is a database a benchmark has flushed and, on the shared server, claimed.
type DB struct {
	client *redis.Client
	lock   *dbLock // nil off the shared server
}

// Prepare makes sure the server answers (starting the shared one as the test
// helpers do when nothing answers there), claims the database on the shared
// server, and flushes it. owner names the benchmark in the claim, which
// waits up to patience while a test process holds the database; progress
// is told when a server is started.
func Prepare(ctx context.Context, t Target, owner string, patience time.Duration, progress func(format string, args ...any)) (*DB, error) {
	d := &DB{client: t.Client()}
	if err := ping(ctx, d.client); err != nil {
		if !t.Shared {
			d.client.Close()
			return nil, fmt.Errorf("redis at %s does not answer: %w", t.Options.Addr, err)
		}
		progress("nothing answers on %s; starting redis-server", t.Options.Addr)
		if err := startShared(ctx, d.client); err != nil {
			d.client.Close()
			return nil, err
		}
	}
	if t.Shared {
		locks := newClient(*t.Options, 0)
		lock, err := claimDB(ctx, lockConfig{
			client: locks, key: lockPrefix + strconv.Itoa(t.DB), token: owner + "-" + strconv.Itoa(os.Getpid()),
			ttl: lockTTL, refresh: lockRefresh, patience: patience, retry: claimRetry,
		})
		if err != nil {
			locks.Close()
			d.client.Close()
			return nil, fmt.Errorf("database %d of %s: %w", t.DB, t.Options.Addr, err)
		}
		d.lock = lock
	}
	if err := d.client.FlushDB(ctx).Err(); err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("flush database %d of %s: %w", t.DB, t.Options.Addr, err)
	}
	return d, nil
}

// Client returns the client of the database.
func (d *DB) Client() *redis.Client { return d.client }

// Close flushes the database, releases the claim and closes the clients.
func (d *DB) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := d.client.FlushDB(ctx).Err()
	if err != nil {
		err = fmt.Errorf("flush the benchmark's redis database after the run: %w", err)
	}
	if d.lock != nil {
		d.lock.release()
		d.lock.cfg.client.Close()
	}
	d.client.Close()
	return err
}

func ping(ctx context.Context, c *redis.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// startShared starts the shared server the way the test helpers do, and
// waits until it answers.
func startShared(ctx context.Context, c *redis.Client) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("nothing answers on %s and redis-server is not installed: %w", SharedAddr, err)
	}
	out, err := exec.CommandContext(ctx, bin, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
		"--save", "", "--appendonly", "no").CombinedOutput()
	if err != nil {
		return fmt.Errorf("start redis-server on %s: %v: %s", SharedAddr, err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(ctx, c)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("redis-server started on %s but does not answer: %w", SharedAddr, err)
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}
