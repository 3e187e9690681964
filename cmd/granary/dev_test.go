package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

func TestParseDevFlags(t *testing.T) {
	f, err := parseDevFlags([]string{
		"--http-port", "4000",
		"--app-url", "http://127.0.0.1:3000",
		"--app-url", "shop=http://127.0.0.1:3001/base",
		"--app-url", "http://127.0.0.1:3002",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if f.httpPort != 4000 || f.dataDir != "./.granary" || f.host != "127.0.0.1" || f.busyPoll != 100*time.Microsecond {
		t.Fatalf("flags %+v", f)
	}
	want := []appSpec{{"app", "http://127.0.0.1:3000"}, {"shop", "http://127.0.0.1:3001/base"}, {"app-3", "http://127.0.0.1:3002"}}
	if len(f.apps) != len(want) {
		t.Fatalf("apps %v, want %v", f.apps, want)
	}
	for i := range want {
		if f.apps[i] != want[i] {
			t.Errorf("app %d = %v, want %v", i, f.apps[i], want[i])
		}
	}

	bad := []struct {
		args []string
		want string // substring of the error; "" means a usage error
	}{
		{[]string{"--http-port", "70000"}, "not a port"},
		{[]string{"--max-body-size", "0"}, "must be positive"},
		{[]string{"--busy-poll", "-1us"}, "--busy-poll"},
		{[]string{"--busy-poll", "2ms"}, "--busy-poll"},
		{[]string{"--app-url", "ftp://x"}, ""},
		{[]string{"--app-url", "a=http://x:1", "--app-url", "a=http://y:2"}, "given twice"},
		{[]string{"--no-such-flag"}, ""},
		{[]string{"stray"}, ""},
		{[]string{"--silo-id", "a/b"}, "--silo-id"},
		{[]string{"--silo-id", "a b"}, "--silo-id"},
	}
	for _, c := range bad {
		_, err := parseDevFlags(c.args, io.Discard)
		switch {
		case err == nil:
			t.Errorf("%q accepted", c.args)
		case c.want == "" && !errors.Is(err, errUsage):
			t.Errorf("%q: %v, want a usage error", c.args, err)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%q: %v, want it to mention %q", c.args, err, c.want)
		}
	}
}

// Two dev silos on one machine listen on two ports, so by default they have
// two silo IDs, and so two clusters: neither serves the other's shards.
func TestDefaultSiloIDFollowsThePort(t *testing.T) {
	a, err := parseDevFlags([]string{"--http-port", "3500"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseDevFlags([]string{"--http-port", "3600"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if a.siloID == b.siloID || !strings.HasSuffix(a.siloID, "-3500") || !strings.HasSuffix(b.siloID, "-3600") {
		t.Fatalf("silo IDs %q and %q for ports 3500 and 3600", a.siloID, b.siloID)
	}
	if err := checkSiloID(a.siloID); err != nil {
		t.Fatalf("default silo ID %q: %v", a.siloID, err)
	}
	c, err := parseDevFlags([]string{"--silo-id", "mine"}, io.Discard)
	if err != nil || c.siloID != "mine" {
		t.Fatalf("--silo-id mine: %+v, %v", c, err)
	}
}

// A restarted dev silo draws the next version of its cluster and a new
// incarnation, and wins the shards its predecessor held.
func TestDevPlacementRestartsAtTheNextVersion(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := memstore.New()
	f := &devFlags{siloID: "h-3500"}
	first, err := devPlacement(ctx, store, f, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.ClaimTypes(ctx, "Counter"); err != nil {
		t.Fatal(err)
	}
	second, err := devPlacement(ctx, store, f, log)
	if err != nil {
		t.Fatal(err)
	}
	a, b := first.Held(), second.Held()
	if a.Cluster != "dev/h-3500" || b.Cluster != a.Cluster || a.Silo != "h-3500" || b.Silo != a.Silo {
		t.Fatalf("claims %+v and %+v, want cluster dev/h-3500 and silo h-3500", a, b)
	}
	if b.Version != a.Version+1 || b.Incarnation == a.Incarnation {
		t.Fatalf("restart claims %+v after %+v, want the next version and a new incarnation", b, a)
	}
	if err := second.ClaimTypes(ctx, "Counter"); err != nil {
		t.Fatalf("the restarted silo is refused its predecessor's shards: %v", err)
	}
	// A dev silo of another ID is refused them, naming the holder.
	other, err := devPlacement(ctx, store, &devFlags{siloID: "h-3600"}, log)
	if err != nil {
		t.Fatal(err)
	}
	err = other.ClaimTypes(ctx, "Counter")
	var ce *statestore.ClaimRefusedError
	if !errors.As(err, &ce) || ce.Holder != b {
		t.Fatalf("another dev silo's claim: %v, want refused by %+v", err, b)
	}
}

func TestOpenStore(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "new", "dir")
	s, name, err := openStore(ctx, "", dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(name, "bbolt") {
		t.Errorf("embedded store described as %q", name)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err != nil {
		t.Errorf("no state.db under the data dir: %v", err)
	}
	// A second process (here: a second open) is refused, not blocked forever.
	if _, _, err := openStore(ctx, "", dir, log); err == nil {
		t.Error("a second open of the same data dir succeeded")
	}
	s.Close()

	for _, u := range []string{"postgres://x", "://", "redis://127.0.0.1:1/0"} {
		if _, _, err := openStore(ctx, u, dir, log); err == nil {
			t.Errorf("--state-store %q accepted", u)
		}
	}
	if _, _, err := openStore(ctx, "redis://user:secret@127.0.0.1:1/0", dir, log); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("unreachable Redis with a password: %v (must fail without showing the password)", err)
	}
}

func TestParseSiloPeerAddrs(t *testing.T) {
	base := []string{"--id", "s1", "--state-store", "redis://127.0.0.1:6379/0"}
	f, err := parseSiloFlags(append(base, "--peer-addr", "s2=127.0.0.1:9002", "--peer-addr", "s3=127.0.0.1:9003"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.peerAddrs) != 2 || f.peerAddrs["s2"] != "127.0.0.1:9002" || f.peerAddrs["s3"] != "127.0.0.1:9003" {
		t.Fatalf("peer addresses %v", f.peerAddrs)
	}
	f, err = parseSiloFlags(append(base, "--placement", "p1=127.0.0.1:8001,127.0.0.1:8002, p3=127.0.0.1:8003"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.placementAddrs, []string{"127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"}) ||
		len(f.placementNodes) != 2 || f.placementNodes["p1"] != "127.0.0.1:8001" || f.placementNodes["p3"] != "127.0.0.1:8003" {
		t.Fatalf("placement %v, nodes %v", f.placementAddrs, f.placementNodes)
	}
	for _, bad := range [][]string{
		{"--placement", "p1=127.0.0.1:1,p1=127.0.0.1:2"},
		{"--placement", "=127.0.0.1:1"},
		{"--placement", "127.0.0.1"},
		{"--peer-addr", "s2"},
		{"--peer-addr", "=127.0.0.1:1"},
		{"--peer-addr", "s2=nowhere"},
		{"--peer-addr", "a/b=127.0.0.1:1"},
		{"--peer-addr", "s2=127.0.0.1:1", "--peer-addr", "s2=127.0.0.1:2"},
	} {
		if _, err := parseSiloFlags(append(base, bad...), io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A silo of a cluster refuses the embedded store, whose data one process
// owns, and says what to give instead.
func TestSiloRefusesTheEmbeddedStore(t *testing.T) {
	for _, store := range []string{"", "bbolt", "embedded", " BBolt "} {
		args := []string{"--id", "s1"}
		if store != "" {
			args = append(args, "--state-store", store)
		}
		_, err := parseSiloFlags(args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--state-store must name the cluster's shared store (redis://") {
			t.Errorf("--state-store %q: %v, want refused, naming a redis:// store", store, err)
		}
	}
	f, err := parseSiloFlags([]string{"--id", "s1", "--state-store", "redis://127.0.0.1:6379/3"}, io.Discard)
	if err != nil || f.takeOver {
		t.Errorf("a Redis store: %v, take-over %v (want off by default)", err, f != nil && f.takeOver)
	}
	if f, err := parseSiloFlags([]string{"--id", "s1", "--state-store", "redis://127.0.0.1:6379/3", "--take-over"}, io.Discard); err != nil || !f.takeOver {
		t.Errorf("--take-over: %v", err)
	}
}
