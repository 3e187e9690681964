package redisdb

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

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
				"try again later or pick another database", cfg.key, holder, cfg.patience)
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
