package redisstore

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/testutil/redistest"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url       string
		addr      string
		user      string
		password  string
		db        int
		tls       bool
		poolSize  int
		wantError string
	}{
		{url: "redis://127.0.0.1:6379/0", addr: "127.0.0.1:6379"},
		{url: "redis://127.0.0.1:6379/3", addr: "127.0.0.1:6379", db: 3},
		{url: "redis://localhost", addr: "localhost:6379"},
		{url: "redis://:secret@h:1/2", addr: "h:1", password: "secret", db: 2},
		{url: "redis://alice:secret@h:1", addr: "h:1", user: "alice", password: "secret"},
		{url: "rediss://h:6380/1", addr: "h:6380", db: 1, tls: true},
		{url: "redis://[::1]:7000/0", addr: "[::1]:7000"},
		{url: "redis://h/0?pool_size=7", addr: "h:6379", poolSize: 7},
		{url: "http://h:1/0", wantError: `unsupported URL scheme "http"`},
		{url: "h:6379", wantError: `unsupported URL scheme "h"`},
		{url: "", wantError: `unsupported URL scheme ""`},
		{url: "unix:///tmp/redis.sock", wantError: `unsupported URL scheme "unix"`},
		{url: "redis:h:1", wantError: "invalid URL"},
		{url: "redis://h:1/x", wantError: "invalid database number"},
		{url: "redis://h:1/-1", wantError: "negative database number"},
		{url: "redis://h:1/0/1", wantError: "invalid URL path"},
		{url: "redis://h:1/0?bogus=1", wantError: "unexpected option"},
		{url: "redis://user:p%zz@h:1", wantError: "invalid URL"},
		{url: "redis://h:port/0", wantError: "invalid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			ro, err := parseURL(tt.url)
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ro.Addr != tt.addr || ro.Username != tt.user || ro.Password != tt.password || ro.DB != tt.db ||
				(ro.TLSConfig != nil) != tt.tls || ro.PoolSize != tt.poolSize {
				t.Errorf("got addr %q user %q password %q db %d tls %v pool %d", ro.Addr, ro.Username, ro.Password, ro.DB, ro.TLSConfig != nil, ro.PoolSize)
			}
		})
	}
}

const fuzzSecret = "Sekr3tPassw0rd"

// FuzzParseURL: parseURL never panics, never accepts a database number
// below 0, and never repeats the password in an error.
func FuzzParseURL(f *testing.F) {
	for _, seed := range []string{"127.0.0.1:6379/0", "h/1?pool_size=3", "[::1]:1/2", "h:x/y", "%zz", "h/0?dial_timeout=1s", "h:1/-3"} {
		f.Add("redis", seed)
		f.Add("rediss", seed)
	}
	f.Fuzz(func(t *testing.T, scheme, rest string) {
		raw := scheme + "://user:" + fuzzSecret + "@" + rest
		ro, err := parseURL(raw)
		if err != nil {
			if strings.Contains(err.Error(), fuzzSecret) {
				t.Fatalf("error repeats the password: %v", err)
			}
			return
		}
		if s := strings.ToLower(scheme); s != "redis" && s != "rediss" {
			t.Fatalf("accepted scheme %q", scheme)
		}
		if ro.DB < 0 || ro.Addr == "" {
			t.Fatalf("accepted %q as addr %q db %d", raw, ro.Addr, ro.DB)
		}
	})
}

func TestOpenRefuses(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, redistest.URL(t), Options{KeyPrefix: "a{b}:"}); err == nil || !strings.Contains(err.Error(), `key prefix "a{b}:"`) {
		t.Errorf("prefix with a brace: %v", err)
	}
	if _, err := Open(ctx, "redis://:hunter22@h:1/0?bogus=1", Options{}); err == nil || strings.Contains(err.Error(), "hunter22") {
		t.Errorf("bad URL: %v (must fail without showing the password)", err)
	}
}

// TestOpenUnreachable: nothing listens on the port; Open fails at once with
// an error naming the address.
func TestOpenUnreachable(t *testing.T) {
	srv := redistest.StartServer(t, false)
	srv.Kill()
	start := time.Now()
	_, err := Open(context.Background(), srv.URL(), Options{})
	if err == nil {
		t.Fatal("Open succeeded with the server down")
	}
	if want := "redis store " + srv.Addr() + ": ping: "; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error = %q, want it to start with %q and say connection refused", err, want)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Open took %v to fail", d)
	}
}

func TestPasswordAndUser(t *testing.T) {
	srv := redistest.StartServer(t, false)
	ctx := context.Background()
	admin := openAt(t, srv.URL(), Options{})
	if err := admin.client.Do(ctx, "ACL", "SETUSER", "alice", "on", ">wonderland", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.client.ConfigSet(ctx, "requirepass", "s3cret").Err(); err != nil {
		t.Fatal(err)
	}
	base := "redis://" + srv.Addr() + "/0"
	withUser := func(u *url.Userinfo) string {
		parsed, _ := url.Parse(base)
		parsed.User = u
		return parsed.String()
	}
	for _, good := range []string{withUser(url.UserPassword("", "s3cret")), withUser(url.UserPassword("alice", "wonderland"))} {
		s := openAt(t, good, Options{})
		mustTransact(t, s, put("k", "v"))
	}
	for _, bad := range []string{base, withUser(url.UserPassword("", "wrong")), withUser(url.UserPassword("alice", "s3cret"))} {
		_, err := Open(ctx, bad, Options{Logger: quiet})
		if err == nil {
			t.Errorf("Open without the right credentials succeeded")
			continue
		}
		if !strings.Contains(err.Error(), srv.Addr()) || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "wrong") {
			t.Errorf("error %q: want the address and no password", err)
		}
	}
}

func TestTLS(t *testing.T) {
	srv := redistest.StartTLSServer(t)
	ctx := context.Background()
	if !strings.HasPrefix(srv.URL(), "rediss://") {
		t.Fatalf("URL = %q", srv.URL())
	}
	// The throwaway CA is not among the system roots.
	if _, err := Open(ctx, srv.URL(), Options{Logger: quiet}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Open without the CA: %v, want a certificate error", err)
	}
	cfg := srv.TLSConfig()
	cfg.ServerName = "" // taken from the URL
	s := openAt(t, srv.URL(), Options{TLSConfig: cfg})
	mustTransact(t, s, put("k", "over tls"))
	if got := string(mustGet(t, s, "k").Value); got != "over tls" {
		t.Errorf("value = %q", got)
	}
	// A plain client gets no answer from a TLS port.
	plain := "redis://" + srv.Addr() + "/0"
	if _, err := Open(ctx, plain, Options{Logger: quiet, DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond}); err == nil {
		t.Error("plain client talked to a TLS server")
	}
}
