// Package redisstore is the Redis implementation of statestore.Store.
//
// It needs Redis 7.0 or newer. Open takes a redis:// or rediss:// (TLS) URL
// with optional user, password and database number:
//
//	redis://[[user]:password@]host[:port][/db][?option=value…]
//
// Under Options.KeyPrefix (default "granary:"), the store keeps:
//
//	<prefix>d:<key>    a HASH {v: value, e: ETag, x: expiry in Unix ms or
//	                   empty}; a TTL is also the key's own Redis expiry. Shard
//	                   fence records are items like any other.
//	<prefix>i:<index>  a ZSET of the keys of an index, all scored 0, so
//	                   ZRANGEBYLEX pages through them in bytewise order
//	<prefix>m:<index>  a HASH: key -> server time (ms) it was last added to the index
//
// A read is one HMGET. A transaction is one Lua script call that checks the
// fence record and every condition and only then applies all operations, so
// a stale activation cannot write between the check and the write. ETags
// never repeat (see etagSource). Data written under <prefix>f: by earlier
// versions (per-actor fence tokens) is not read.
//
// Every script call touches the keys of one transaction only, and the keys
// of one actor and its shard's fence record share a hash slot because the
// layout gives them the hash tag "{type/shard}" and the prefix may not
// contain "{". An index lives in a slot of
// its own, so it is kept up to date around the transaction rather than in
// it (see index.go). Internally the store uses redis.UniversalClient so that
// a cluster client can be plugged in; Open itself connects to a single node
// and parses no cluster URLs.
//
// Concurrent Get and Transact calls share pipelined round trips
// unless Options.NoCoalescing is set; BulkGet and Scan pipeline their own.
// Calls fail at once when Redis cannot be reached, with an error naming the
// address, and the store reconnects by itself when Redis is back.
//
// Durability is the server's: an acknowledged write survives a Redis crash
// only when the server runs with appendonly yes and appendfsync always. Open
// logs a warning when it can see that the server does not.
package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/granaryhq/granary/statestore"
)

// DefaultKeyPrefix is the KeyPrefix used when Options.KeyPrefix is empty.
const DefaultKeyPrefix = "granary:"

// Defaults of Options, used when neither Options nor the URL set a value.
const (
	DefaultPoolSize     = 128
	DefaultDialTimeout  = 2 * time.Second
	DefaultReadTimeout  = 3 * time.Second
	DefaultWriteTimeout = 3 * time.Second
)

// indexWindow is how long after marking a key in an index the transaction
// that marked it may still commit. A transaction that reaches Redis later is
// refused before it writes anything and marks again.
const indexWindow = 10 * time.Second

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// KeyPrefix is put in front of every Redis key the store uses, so several
	// stores can share a database. Default DefaultKeyPrefix. It may not
	// contain "{", which would displace the hash tags of the key layout.
	KeyPrefix string
	// PoolSize is the most connections the store opens. Default: the URL's
	// pool_size, else DefaultPoolSize (enough for well over 64 concurrent callers).
	PoolSize int
	// DialTimeout, ReadTimeout and WriteTimeout bound connecting and each
	// network read and write. Defaults: the URL's dial_timeout, read_timeout
	// and write_timeout, else the Default values above.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// TLSConfig replaces the TLS settings of a rediss:// URL (system roots,
	// server name from the URL), for servers with a private CA. Its
	// ServerName is taken from the URL when empty. Ignored for redis://.
	TLSConfig *tls.Config
	// NoCoalescing sends every Get and Transact on a round trip of its own. By default, concurrent calls share pipelined round trips, which
	// under load saves Redis and the store most of their system calls.
	NoCoalescing bool
	// Logger receives warnings. Default slog.Default().
	Logger *slog.Logger
}

// Store is a statestore.Store kept in Redis. It is safe for concurrent use.
type Store struct {
	client redis.UniversalClient
	addr   string
	prefix string
	log    *slog.Logger
	etags  *etagSource
	batch  *coalescer // nil with Options.NoCoalescing
	// Calls hold mu for reading while they run; Close takes it to wait for
	// them before it closes the connections.
	mu     sync.RWMutex
	closed bool
	window time.Duration // indexWindow; tests change it
	// readTimeout bounds each reply; the commit deadlines follow it.
	readTimeout time.Duration
	clock       serverClock
}

var _ statestore.Store = (*Store)(nil)

// Open connects to the Redis server named by rawURL and checks that it
// answers and runs the store's scripts.
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	ro, err := parseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis store: %w", err)
	}
	prefix := opts.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	if strings.Contains(prefix, "{") {
		return nil, fmt.Errorf("redis store: key prefix %q contains \"{\"", prefix)
	}
	applyOptions(ro, opts)
	routeClientLogs()

	s := &Store{
		client: redis.NewClient(ro),
		addr:   ro.Addr,
		prefix: prefix,
		log:    opts.Logger,
		etags:  newETagSource(),
		window: indexWindow,

		readTimeout: ro.ReadTimeout,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if err := s.client.Ping(ctx).Err(); err != nil {
		_ = s.client.Close()
		return nil, s.fail("ping", err)
	}
	if err := s.sampleClock(ctx); err != nil {
		_ = s.client.Close()
		return nil, s.fail("read the server's clock", err)
	}
	for _, script := range allScripts {
		if err := script.Load(ctx, s.client).Err(); err != nil {
			_ = s.client.Close()
			return nil, s.fail("load scripts (Redis 7.0 or newer is required)", err)
		}
	}
	s.warnIfNotDurable(ctx)
	if !opts.NoCoalescing {
		s.batch = newCoalescer(s.client)
	}
	return s, nil
}

// parseURL turns a redis:// or rediss:// URL into client options. Its errors
// never repeat the URL, which may hold a password.
func parseURL(rawURL string) (*redis.Options, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid URL: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("unsupported URL scheme %q: want redis:// or rediss://", u.Scheme)
	}
	if u.Opaque != "" {
		return nil, errors.New("invalid URL: want redis://host:port/db")
	}
	ro, err := redis.ParseURL(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid URL: %w", err)
	}
	if ro.DB < 0 {
		return nil, fmt.Errorf("invalid URL: negative database number %d", ro.DB)
	}
	return ro, nil
}

// applyOptions sets what opts says, and the store's defaults where neither
// opts nor the URL said anything.
func applyOptions(ro *redis.Options, opts Options) {
	pick := func(opt, fromURL, def time.Duration) time.Duration {
		switch {
		case opt != 0:
			return opt
		case fromURL != 0:
			return fromURL
		}
		return def
	}
	ro.DialTimeout = pick(opts.DialTimeout, ro.DialTimeout, DefaultDialTimeout)
	ro.ReadTimeout = pick(opts.ReadTimeout, ro.ReadTimeout, DefaultReadTimeout)
	ro.WriteTimeout = pick(opts.WriteTimeout, ro.WriteTimeout, DefaultWriteTimeout)
	switch {
	case opts.PoolSize > 0:
		ro.PoolSize = opts.PoolSize
	case ro.PoolSize == 0:
		ro.PoolSize = DefaultPoolSize
	}
	if ro.TLSConfig != nil && opts.TLSConfig != nil {
		serverName := ro.TLSConfig.ServerName
		ro.TLSConfig = opts.TLSConfig.Clone()
		if ro.TLSConfig.ServerName == "" {
			ro.TLSConfig.ServerName = serverName
		}
	}
	// A transaction retried after its connection broke may already have
	// committed; a second run would then report a false ETag mismatch.
	// Calls therefore fail at once and the caller decides.
	ro.MaxRetries = -1
	ro.DialerRetries = 1
	ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// warnIfNotDurable logs when the server's configuration, if it may be read,
// can lose acknowledged writes in a crash.
func (s *Store) warnIfNotDurable(ctx context.Context) {
	cfg, err := s.client.ConfigGet(ctx, "append*").Result()
	if err != nil {
		return
	}
	if cfg["appendonly"] != "yes" || cfg["appendfsync"] != "always" {
		s.log.Warn("redis store: the server can lose acknowledged writes in a crash; run it with appendonly yes and appendfsync always",
			"addr", s.addr, "appendonly", cfg["appendonly"], "appendfsync", cfg["appendfsync"])
	}
}

// Close waits for the calls under way and closes the connections. Calls
// after Close fail with statestore.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	wasClosed := s.closed
	s.closed = true
	s.mu.Unlock()
	if wasClosed {
		return nil
	}
	if s.batch != nil {
		s.batch.close()
	}
	if err := s.client.Close(); err != nil {
		return s.fail("close", err)
	}
	return nil
}

// begin starts a call, unless the store is closed; end finishes it.
func (s *Store) begin() bool {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return false
	}
	return true
}

func (s *Store) end() { s.mu.RUnlock() }

// Get returns the live item under key.
func (s *Store) Get(ctx context.Context, key string) (statestore.Item, error) {
	if !s.begin() {
		return statestore.Item{}, s.fail("get", statestore.ErrClosed)
	}
	defer s.end()
	res, err := s.run(ctx, readItem(s.dataKey(key))).Slice()
	if err != nil {
		return statestore.Item{}, s.failKey("get", key, err)
	}
	item, err := parseItem(key, res)
	if err != nil {
		return statestore.Item{}, s.failKey("get", key, err)
	}
	if !item.Exists() {
		return statestore.Item{}, s.failKey("get", key, statestore.ErrNotFound)
	}
	return item, nil
}

// BulkGet reads all keys in one pipelined round trip.
func (s *Store) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	if !s.begin() {
		return nil, s.fail("bulk get", statestore.ErrClosed)
	}
	defer s.end()
	items := make([]statestore.Item, len(keys))
	if len(keys) == 0 {
		return items, nil
	}
	cmds := make([]command, len(keys))
	for i, k := range keys {
		cmds[i] = readItem(s.dataKey(k))
	}
	for i, r := range runAll(ctx, s.client, cmds) {
		res, err := r.Slice()
		if err == nil {
			items[i], err = parseItem(keys[i], res)
		}
		if err != nil {
			return nil, s.failKey("bulk get", keys[i], err)
		}
	}
	return items, nil
}

// run sends one command, sharing a round trip with concurrent callers
// unless coalescing is off.
func (s *Store) run(ctx context.Context, cmd command) *redis.Cmd {
	if s.batch != nil {
		return s.batch.run(ctx, cmd)
	}
	return runOne(ctx, s.client, cmd)
}

func (s *Store) dataKey(key string) string    { return s.prefix + "d:" + key }
func (s *Store) indexKey(index string) string { return s.prefix + "i:" + index }
func (s *Store) marksKey(index string) string { return s.prefix + "m:" + index }

// fail wraps err with the server address and the operation.
func (s *Store) fail(op string, err error) error {
	return fmt.Errorf("redis store %s: %s: %w", s.addr, op, closedAs(err))
}

func (s *Store) failKey(op, key string, err error) error {
	return fmt.Errorf("redis store %s: %s %q: %w", s.addr, op, key, closedAs(err))
}

// closedAs reports the client's "closed" error, met by a call racing with
// Close, as statestore.ErrClosed.
func closedAs(err error) error {
	if errors.Is(err, redis.ErrClosed) && !errors.Is(err, statestore.ErrClosed) {
		return statestore.ErrClosed
	}
	return err
}
