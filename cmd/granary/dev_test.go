package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	if f.httpPort != 4000 || f.dataDir != "./.granary" || f.host != "127.0.0.1" {
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
		{[]string{"--app-url", "ftp://x"}, ""},
		{[]string{"--app-url", "a=http://x:1", "--app-url", "a=http://y:2"}, "given twice"},
		{[]string{"--no-such-flag"}, ""},
		{[]string{"stray"}, ""},
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
