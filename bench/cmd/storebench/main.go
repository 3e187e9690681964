// Command storebench measures actor state through Granary's HTTP gateway with
// the embedded bbolt store and with Redis. For each store it starts
// `granary dev` in front of the echo app, activates every actor once and
// writes its state key, then drives keep-alive clients round-robin over the
// actors with state transactions and afterwards with state reads, each load
// measured by bench/loadgen. It prints one table for both stores with the
// Redis share of the embedded store's transaction throughput checked against
// the target, and stops every process it started, also on Ctrl-C or failure.
// `make bench-store` builds the binaries and runs it:
//
//	storebench --granary bin/granary --echoapp bin/echoapp [--redis redis://127.0.0.1:6379/13] [--duration 20s] [--json out.json]
//
// The Redis database is flushed before and after its run. On the machine's
// shared server (127.0.0.1:6379) the benchmark first claims the database the
// way the test helpers do (a lock key in database 0), so it never flushes a
// database a test process is using, and a test never flushes it mid-run.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/granaryhq/granary/bench/loadgen"
)

// minRatio is the target: Redis transaction throughput as a share of the
// embedded store's, with the same clients and actors.
const minRatio = 0.70

// What the loads send.
const (
	actorType   = "Echo"
	actorPrefix = "actor-"
	stateKey    = "k"
	// txnTemplate is the body of every transaction: one upsert of stateKey
	// whose value carries the request's sequence number.
	txnTemplate = `[{"operation":"upsert","request":{"key":"` + stateKey + `","value":{"n":` + loadgen.SeqPlaceholder + `}}}]`
	txnPath     = "/v1.0/actors/" + actorType + "/" + loadgen.ActorPlaceholder + "/state"
	getPath     = "/v1.0/actors/" + actorType + "/" + loadgen.ActorPlaceholder + "/state/" + stateKey
	invokePath  = "/v1.0/actors/" + actorType + "/" + loadgen.ActorPlaceholder + "/method/x"
)

// The two stores, in the order they run.
const (
	storeBolt  = "bbolt"
	storeRedis = "redis"
)

type options struct {
	granary, echoapp string
	redisURL         string
	duration, warmup time.Duration
	clients, actors  int
	jsonPath         string
	strict           bool
	stopGrace        time.Duration
	claimPatience    time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	rep, err := bench(ctx, o, stdout)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "storebench: interrupted; processes stopped")
			return 130
		}
		fmt.Fprintln(stderr, "storebench:", err)
		return 1
	}
	printReport(stdout, rep)
	if o.jsonPath != "" {
		if err := writeJSON(o.jsonPath, rep); err != nil {
			fmt.Fprintln(stderr, "storebench:", err)
			return 1
		}
		fmt.Fprintln(stdout, "results written to", o.jsonPath)
	}
	if o.strict && !rep.Pass {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("storebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.granary, "granary", "bin/granary", "path of the granary binary")
	fs.StringVar(&o.echoapp, "echoapp", "bin/echoapp", "path of the echoapp binary (bench/echoapp)")
	fs.StringVar(&o.redisURL, "redis", "redis://127.0.0.1:6379/13", "Redis database for the Redis run; flushed before and after it (database 0 is refused)")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "measured time of each load")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "unmeasured warm-up before each load")
	fs.IntVar(&o.clients, "clients", 64, "concurrent keep-alive clients")
	fs.IntVar(&o.actors, "actors", 1000, "actors the clients go round-robin over")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results to this JSON file")
	fs.BoolVar(&o.strict, "strict", false, "exit with status 1 when a target is missed")
	fs.DurationVar(&o.stopGrace, "stop-timeout", 15*time.Second, "how long a process may take to exit after SIGTERM before it is killed")
	fs.DurationVar(&o.claimPatience, "claim-timeout", time.Minute, "how long to wait for the Redis database while a test process holds it")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	fail := func(err error) (options, error) {
		fmt.Fprintln(stderr, "storebench:", err)
		return o, err
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	for _, bin := range []string{o.granary, o.echoapp} {
		if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return fail(fmt.Errorf("%s is not an executable file (build it first; `make bench-store` does)", bin))
		}
	}
	if o.duration <= 0 || o.warmup < 0 || o.clients <= 0 || o.actors <= 0 || o.claimPatience < 0 {
		return fail(errors.New("--duration, --clients and --actors must be positive and --warmup and --claim-timeout not negative"))
	}
	if _, err := parseRedisTarget(o.redisURL); err != nil {
		return fail(fmt.Errorf("--redis: %w", err))
	}
	return o, nil
}

// bench starts the echo app, measures both stores in turn and stops everything.
func bench(ctx context.Context, o options, out io.Writer) (report, error) {
	rep := report{
		Duration: o.duration.String(), Warmup: o.warmup.String(),
		Clients: o.clients, Actors: o.actors,
	}
	progress := func(format string, args ...any) {
		fmt.Fprintf(out, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	dir, err := os.MkdirTemp("", "storebench-")
	if err != nil {
		return rep, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	ports, err := freePorts(1)
	if err != nil {
		return rep, err
	}
	appAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	app, err := startProcess("echoapp", dir, o.echoapp, "--port", strconv.Itoa(ports[0]))
	if err != nil {
		return rep, err
	}
	defer func() {
		if err := app.stop(o.stopGrace); err != nil {
			fmt.Fprintln(out, "storebench:", err)
		}
	}()
	began := time.Now()
	if err := waitForStatus(ctx, app, "GET", "http://"+appAddr+"/healthz", 200, 10*time.Second); err != nil {
		fmt.Fprintf(out, "--- last lines of echoapp's log ---\n%s\n", app.tail(30))
		return rep, fmt.Errorf("echoapp not ready: %w", err)
	}
	progress("echoapp ready on %s (pid %d) after %v", appAddr, app.pid(), time.Since(began).Round(time.Millisecond))

	b := &storeBench{o: o, dir: dir, appAddr: appAddr, ids: loadgen.ActorIDs(actorPrefix, o.actors), progress: progress, out: out}
	for _, store := range []string{storeBolt, storeRedis} {
		sr, err := b.measure(ctx, store)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", store, err)
		}
		rep.Stores = append(rep.Stores, sr)
	}
	rep.evaluate()
	return rep, nil
}

// storeBench is what the runs of both stores share.
type storeBench struct {
	o        options
	dir      string // temporary directory for logs and the embedded store
	appAddr  string
	ids      []string
	progress func(format string, args ...any)
	out      io.Writer
}

// measure runs granary with one store, activates and seeds the actors, and
// runs the transaction load and then the read load.
func (b *storeBench) measure(ctx context.Context, store string) (sr storeReport, err error) {
	sr.Store = store
	var storeArgs []string
	switch store {
	case storeBolt:
		dataDir := filepath.Join(b.dir, "data")
		if err := os.Mkdir(dataDir, 0o755); err != nil {
			return sr, fmt.Errorf("data directory: %w", err)
		}
		storeArgs = []string{"--data-dir", dataDir}
		sr.Where = dataDir
	case storeRedis:
		target, err := parseRedisTarget(b.o.redisURL)
		if err != nil {
			return sr, err
		}
		db, err := prepareRedis(ctx, target, b.o.claimPatience, b.progress)
		if err != nil {
			return sr, err
		}
		defer func() {
			if cerr := db.close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
		storeArgs = []string{"--state-store", b.o.redisURL}
		sr.Where = target.redacted
	default:
		return sr, fmt.Errorf("unknown store %q", store)
	}

	ports, err := freePorts(1)
	if err != nil {
		return sr, err
	}
	gwAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	args := append([]string{"dev", "--http-port", strconv.Itoa(ports[0]), "--app-url", "http://" + b.appAddr,
		"--log-level", "warn"}, storeArgs...)
	granary, err := startProcess("granary-"+store, b.dir, b.o.granary, args...)
	if err != nil {
		return sr, err
	}
	defer func() {
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(b.out, "--- last lines of %s's log ---\n%s\n", granary.name, granary.tail(30))
		}
		if stopErr := granary.stop(b.o.stopGrace); stopErr != nil {
			fmt.Fprintln(b.out, "storebench:", stopErr)
		}
	}()
	began := time.Now()
	if err := waitForStatus(ctx, granary, "GET", "http://"+gwAddr+"/v1.0/healthz", 204, 15*time.Second); err != nil {
		return sr, fmt.Errorf("granary not ready: %w", err)
	}
	b.progress("granary (%s store, %s) ready on %s (pid %d) after %v", store, sr.Where, gwAddr, granary.pid(),
		time.Since(began).Round(time.Millisecond))

	began = time.Now()
	client := newHTTPClient(b.o.clients)
	defer client.CloseIdleConnections()
	if err := prime(ctx, client, "http://"+gwAddr, b.ids, min(b.o.clients, 16)); err != nil {
		return sr, err
	}
	if err := checkRead(ctx, client, "http://"+gwAddr, b.ids); err != nil {
		return sr, err
	}
	b.progress("      %d actors activated and their state written in %v", len(b.ids), time.Since(began).Round(time.Millisecond))

	loads := []struct {
		name   string
		method string
		path   string
		body   string
		dst    *loadgen.Result
		detail *string
	}{
		{"transact", "POST", txnPath, txnTemplate, &sr.Transact, &sr.TransactError},
		{"get", "GET", getPath, "", &sr.Get, &sr.GetError},
	}
	for _, l := range loads {
		b.progress("%s %s: %s %s, %d actors, %d clients, %v warm-up + %v",
			store, l.name, l.method, l.path, len(b.ids), b.o.clients, b.o.warmup, b.o.duration)
		res, err := loadgen.Run(ctx, loadgen.Config{
			Addr: gwAddr, Connections: b.o.clients, Warmup: b.o.warmup, Duration: b.o.duration,
			Request: loadgen.Request{Method: l.method, Path: l.path, Body: l.body, Actors: b.ids},
		})
		if err != nil {
			return sr, err
		}
		b.progress("      %v", res)
		if granary.exited() {
			return sr, fmt.Errorf("granary exited during the %s load: %v", l.name, granary.waitErr)
		}
		*l.dst = res
		if res.Errors.Total() > 0 {
			*l.detail = errorDetail(ctx, client, "http://"+gwAddr, l.method, l.path, l.body, b.ids, res)
		}
	}
	b.progress("stopping granary (%s store)", store)
	return sr, nil
}

// newHTTPClient is the client for everything but the measured loads.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxIdleConns: conns},
	}
}

// maxErrorBody bounds the part of an error response quoted in messages.
const maxErrorBody = 512

// fill returns a path or body template with {actor} and {n} filled in.
func fill(template, actor string, n int) string {
	s := strings.ReplaceAll(template, loadgen.ActorPlaceholder, actor)
	return strings.ReplaceAll(s, loadgen.SeqPlaceholder, strconv.Itoa(n))
}

// call sends one request and checks its status. It returns the start of the
// response body, which the error also quotes.
func call(ctx context.Context, client *http.Client, method, url, body string, want int) ([]byte, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	switch {
	case resp.StatusCode != want:
		return data, fmt.Errorf("%s %s: status %d (want %d): %s", method, url, resp.StatusCode, want, strings.TrimSpace(string(data)))
	case err != nil:
		return data, fmt.Errorf("%s %s: reading the response: %w", method, url, err)
	}
	return data, nil
}

// checkRead reads back the state prime wrote for the first actor, so that a
// read load answered by 204 (no such key) cannot pass for a working one.
func checkRead(ctx context.Context, client *http.Client, base string, ids []string) error {
	got, err := call(ctx, client, "GET", base+fill(getPath, ids[0], 0), "", http.StatusOK)
	if err != nil {
		return fmt.Errorf("reading back actor %s's state: %w", ids[0], err)
	}
	if want := `{"n":0}`; string(got) != want {
		return fmt.Errorf("reading back actor %s's state: got %q, want %q", ids[0], got, want)
	}
	return nil
}

// prime makes every actor active on the silo (state transactions need an
// active actor) by calling a method on it, and writes its state key so that
// the read load finds it. It stops at the first failure and returns it.
func prime(ctx context.Context, client *http.Client, base string, ids []string, workers int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for i := range next {
				id := ids[i]
				_, err := call(ctx, client, "POST", base+fill(invokePath, id, i), "", http.StatusOK)
				if err == nil {
					_, err = call(ctx, client, "POST", base+fill(txnPath, id, i), fill(txnTemplate, id, i), http.StatusNoContent)
				}
				if err != nil {
					cancel(fmt.Errorf("preparing actor %s: %w", id, err))
				}
			}
		})
	}
feed:
	for i := range ids {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// probeTries bounds the requests errorDetail sends.
const probeTries = 100

// errorDetail describes the failures of a load: loadgen's first error, and,
// because loadgen does not keep response bodies, the body of the first
// failure among up to probeTries requests of the same kind sent afterwards.
func errorDetail(ctx context.Context, client *http.Client, base, method, path, body string, ids []string, res loadgen.Result) string {
	detail := res.FirstError
	if res.Errors.Status == 0 {
		return detail
	}
	tries := min(probeTries, len(ids))
	for i := range tries {
		want := http.StatusOK
		if method == "POST" {
			want = http.StatusNoContent
		}
		_, err := call(ctx, client, method, base+fill(path, ids[i], i), fill(body, ids[i], i), want)
		if err != nil {
			return detail + "; then " + err.Error()
		}
	}
	return fmt.Sprintf("%s; the next %d requests of this kind all succeeded", detail, tries)
}

// ---- Redis ----

// sharedRedisAddr is the machine's shared Redis server, whose databases test
// processes claim with lock keys in database 0.
const sharedRedisAddr = "127.0.0.1:6379"

// The database claim of the test helpers (internal/testutil/redistest).
const (
	lockPrefix  = "granary-test-lock:"
	lockTTL     = 10 * time.Minute
	lockRefresh = time.Minute
)

// redisTarget is the database the Redis run uses.
type redisTarget struct {
	opts     *redis.Options
	db       int
	shared   bool   // on the shared server: claim the database first
	redacted string // the URL without its password
}

// parseRedisTarget checks the --redis URL. Database 0 is refused: it is the
// default database and holds the test helpers' claims, and it would be flushed.
func parseRedisTarget(rawURL string) (redisTarget, error) {
	var t redisTarget
	if !strings.HasPrefix(rawURL, "redis://") && !strings.HasPrefix(rawURL, "rediss://") {
		return t, fmt.Errorf("%q: want redis://host:port/db or rediss://…", rawURL)
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return t, fmt.Errorf("%q: %w", rawURL, err)
	}
	if opts.DB <= 0 {
		return t, fmt.Errorf("%q: name a database other than 0 (for example /13): the benchmark flushes it", rawURL)
	}
	host, port, _ := strings.Cut(opts.Addr, ":")
	u, err := url.Parse(rawURL)
	if err != nil {
		return t, fmt.Errorf("%q: %w", rawURL, err)
	}
	return redisTarget{
		opts:     opts,
		db:       opts.DB,
		shared:   port == "6379" && (host == "127.0.0.1" || host == "localhost") && opts.TLSConfig == nil,
		redacted: u.Redacted(),
	}, nil
}

func redisClient(opts redis.Options, db int) *redis.Client {
	opts.DB = db
	opts.DialTimeout = 2 * time.Second
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return redis.NewClient(&opts)
}

// redisDB is the database of a Redis run, flushed and claimed.
type redisDB struct {
	client *redis.Client
	lock   *dbLock // nil off the shared server
}

// prepareRedis makes sure the shared server answers (starting redis-server as
// the project's guide does when nothing answers there), claims the database
// on the shared server, and flushes it.
func prepareRedis(ctx context.Context, t redisTarget, patience time.Duration, progress func(string, ...any)) (*redisDB, error) {
	d := &redisDB{client: redisClient(*t.opts, t.db)}
	if err := ping(ctx, d.client); err != nil {
		if !t.shared {
			d.client.Close()
			return nil, fmt.Errorf("redis at %s does not answer: %w", t.opts.Addr, err)
		}
		progress("nothing answers on %s; starting redis-server", t.opts.Addr)
		if err := startSharedRedis(ctx, d.client); err != nil {
			d.client.Close()
			return nil, err
		}
	}
	if t.shared {
		locks := redisClient(*t.opts, 0)
		lock, err := claimDB(ctx, lockConfig{
			client: locks, key: lockPrefix + strconv.Itoa(t.db), token: "storebench-" + strconv.Itoa(os.Getpid()),
			ttl: lockTTL, refresh: lockRefresh, patience: patience, retry: 200 * time.Millisecond,
		})
		if err != nil {
			locks.Close()
			d.client.Close()
			return nil, fmt.Errorf("database %d of %s: %w", t.db, t.opts.Addr, err)
		}
		d.lock = lock
	}
	if err := d.client.FlushDB(ctx).Err(); err != nil {
		_ = d.close()
		return nil, fmt.Errorf("flush database %d of %s: %w", t.db, t.opts.Addr, err)
	}
	progress("redis database %d on %s flushed", t.db, t.opts.Addr)
	return d, nil
}

// close flushes the database, releases the claim and closes the clients.
func (d *redisDB) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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

// startSharedRedis starts the shared server the way the project's guide
// does, and waits until it answers.
func startSharedRedis(ctx context.Context, c *redis.Client) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("nothing answers on %s and redis-server is not installed: %w", sharedRedisAddr, err)
	}
	out, err := exec.CommandContext(ctx, bin, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
		"--save", "", "--appendonly", "no").CombinedOutput()
	if err != nil {
		return fmt.Errorf("start redis-server on %s: %v: %s", sharedRedisAddr, err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(ctx, c)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("redis-server started on %s but does not answer: %w", sharedRedisAddr, err)
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// lockConfig describes a claim on a database: the key is held while its
// value is token, and expires after ttl unless refreshed.
type lockConfig struct {
	client   *redis.Client
	key      string
	token    string
	ttl      time.Duration
	refresh  time.Duration // how often the expiry is pushed back
	patience time.Duration // how long to wait while another holder has it
	retry    time.Duration // pause between attempts
}

// dbLock is a held claim; it is refreshed until released.
type dbLock struct {
	cfg  lockConfig
	stop chan struct{}
	done chan struct{}
}

var (
	extendLock = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end return 0`)
	dropLock   = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)
)

// claimDB takes the lock key, waiting up to cfg.patience while someone else holds it.
func claimDB(ctx context.Context, cfg lockConfig) (*dbLock, error) {
	deadline := time.Now().Add(cfg.patience)
	for {
		ok, err := cfg.client.SetNX(ctx, cfg.key, cfg.token, cfg.ttl).Result()
		if err != nil {
			return nil, fmt.Errorf("claim %s: %w", cfg.key, err)
		}
		if ok {
			l := &dbLock{cfg: cfg, stop: make(chan struct{}), done: make(chan struct{})}
			go l.keep()
			return l, nil
		}
		if !time.Now().Before(deadline) {
			holder, _ := cfg.client.Get(ctx, cfg.key).Result()
			return nil, fmt.Errorf("%s is held by %q (a test process using the database) for longer than %v; "+
				"try again later or pick another database with --redis", cfg.key, holder, cfg.patience)
		}
		t := time.NewTimer(cfg.retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// keep pushes the lock's expiry back every refresh interval until released.
func (l *dbLock) keep() {
	defer close(l.done)
	tick := time.NewTicker(l.cfg.refresh)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = extendLock.Run(ctx, l.cfg.client, []string{l.cfg.key}, l.cfg.token, int(l.cfg.ttl/time.Second)).Err()
			cancel()
		}
	}
}

// release stops the refresh and deletes the key if this claim still holds it.
func (l *dbLock) release() {
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = dropLock.Run(ctx, l.cfg.client, []string{l.cfg.key}, l.cfg.token).Err()
}

// ---- processes ----

// process is a child process whose output goes to a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid once done is closed
}

// startProcess runs bin with args, its stdout and stderr going to
// dir/name.log. The child gets its own process group, so a Ctrl-C at the
// terminal reaches only this program, which then stops the child in order.
func startProcess(name, dir, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	defer logFile.Close() // the child keeps its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace for the process to exit, then kills
// it and waits for that too.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := signalProcess(p.cmd.Process, syscall.SIGTERM); err != nil && !p.exited() {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	_ = signalProcess(p.cmd.Process, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.name, grace)
}

// tail returns the last n lines of the process's log.
func (p *process) tail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.logPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePorts returns n distinct TCP ports that were free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer ln.Close() // held until all are chosen, so they differ
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// waitForStatus repeats an HTTP request until it answers want, the process
// exits, or timeout passes.
func waitForStatus(ctx context.Context, p *process, method, url string, want int, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, method, url, nil)
		if err != nil {
			return fmt.Errorf("request %s %s: %w", method, url, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			last = "status " + strconv.Itoa(resp.StatusCode)
		} else {
			last = err.Error()
		}
		if p.exited() {
			return fmt.Errorf("%s exited (%v) while waiting for %s %s", p.name, p.waitErr, method, url)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s did not answer %d within %v (last: %s)", method, url, want, timeout, last)
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// ---- report ----

// storeReport is what one store measured.
type storeReport struct {
	Store         string         `json:"store"` // "bbolt" or "redis"
	Where         string         `json:"where"` // data directory or Redis URL (no password)
	Transact      loadgen.Result `json:"transact"`
	Get           loadgen.Result `json:"get"`
	TransactError string         `json:"transact_error,omitempty"` // first failure and its response body
	GetError      string         `json:"get_error,omitempty"`
}

type target struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Pass  bool   `json:"pass"`
}

// report is everything a run found; it is also the JSON written by --json.
type report struct {
	Duration         string        `json:"duration"`
	Warmup           string        `json:"warmup"`
	Clients          int           `json:"clients"`
	Actors           int           `json:"actors"`
	Stores           []storeReport `json:"stores"`
	TransactRatio    float64       `json:"transact_ratio"`     // redis rps / bbolt rps
	TransactP99Ratio float64       `json:"transact_p99_ratio"` // redis p99 / bbolt p99
	GetRatio         float64       `json:"get_ratio"`          // redis rps / bbolt rps
	Targets          []target      `json:"targets"`
	Pass             bool          `json:"pass"`
}

func (r *report) store(name string) storeReport {
	for _, s := range r.Stores {
		if s.Store == name {
			return s
		}
	}
	return storeReport{Store: name}
}

// evaluate computes the ratios and checks the targets.
func (r *report) evaluate() {
	bolt, rds := r.store(storeBolt), r.store(storeRedis)
	r.TransactRatio = ratio(rds.Transact.RPS, bolt.Transact.RPS)
	r.TransactP99Ratio = ratio(float64(rds.Transact.P99), float64(bolt.Transact.P99))
	r.GetRatio = ratio(rds.Get.RPS, bolt.Get.RPS)
	var failed int64
	for _, s := range r.Stores {
		failed += s.Transact.Errors.Total() + s.Get.Errors.Total()
	}
	measured := bolt.Transact.Requests > 0 && rds.Transact.Requests > 0
	r.Targets = []target{
		{fmt.Sprintf("redis transaction rps ≥ %.0f%% of bbolt", 100*minRatio),
			fmt.Sprintf("%.0f%%", 100*r.TransactRatio), measured && r.TransactRatio >= minRatio},
		{"no failed requests", strconv.FormatInt(failed, 10), failed == 0},
	}
	r.Pass = true
	for _, t := range r.Targets {
		r.Pass = r.Pass && t.Pass
	}
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func printReport(w io.Writer, r report) {
	fmt.Fprintf(w, "\nActor state through the gateway: %d clients over %d actors, %s per load after %s warm-up\n\n",
		r.Clients, r.Actors, r.Duration, r.Warmup)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-5s\t%-8s\trps\tp50\tp90\tp99\terrors\t\n", "store", "load")
	for _, s := range r.Stores {
		for _, l := range []struct {
			name string
			res  loadgen.Result
		}{{"transact", s.Transact}, {"get", s.Get}} {
			fmt.Fprintf(tw, "%-5s\t%-8s\t%.0f\t%s\t%s\t%s\t%d\t\n", s.Store, l.name, l.res.RPS,
				loadgen.FormatDuration(l.res.P50), loadgen.FormatDuration(l.res.P90),
				loadgen.FormatDuration(l.res.P99), l.res.Errors.Total())
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nredis/bbolt: transactions %.0f%% of the rps at %.2f× the p99; reads %.0f%% of the rps\n",
		100*r.TransactRatio, r.TransactP99Ratio, 100*r.GetRatio)
	for _, s := range r.Stores {
		for _, l := range []struct {
			name, detail string
			res          loadgen.Result
		}{{"transact", s.TransactError, s.Transact}, {"get", s.GetError, s.Get}} {
			if l.res.Errors.Total() == 0 {
				continue
			}
			fmt.Fprintf(w, "%s %s errors: status %d %v, io %d, protocol %d; first: %s\n", s.Store, l.name,
				l.res.Errors.Status, l.res.StatusCodes, l.res.Errors.IO, l.res.Errors.Protocol, l.detail)
		}
	}
	fmt.Fprintln(w, "\ntargets:")
	for _, t := range r.Targets {
		fmt.Fprintf(w, "  %s  %-38s %s\n", verdict(t.Pass), t.Name, t.Value)
	}
	fmt.Fprintf(w, "overall: %s\n", verdict(r.Pass))
}

func verdict(pass bool) string {
	if pass {
		return "PASS"
	}
	return "FAIL"
}

func writeJSON(path string, rep report) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	return nil
}
