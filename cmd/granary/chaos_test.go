package main

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/chaos/nemesis"
	"github.com/granaryhq/granary/chaos/runner"
)

func TestParseChaosRunFlags(t *testing.T) {
	o, err := parseChaosRunFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Duration != runner.DefaultDuration || !slices.Equal(o.Nemeses, nemesis.All) || o.Silos != 3 || o.StoreURL != runner.DefaultStoreURL {
		t.Fatalf("defaults %+v", o)
	}
	o, err = parseChaosRunFlags([]string{"--seed", "42", "--duration", "90s", "--nemeses", "kill-silo,bridge",
		"--silo-args", "--lease-period 3s  --heartbeat-interval 200ms", "--silos", "4"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Seed != 42 || o.Duration != 90*time.Second || !slices.Equal(o.Nemeses, []string{"kill-silo", "bridge"}) || o.Silos != 4 ||
		!slices.Equal(o.SiloArgs, []string{"--lease-period", "3s", "--heartbeat-interval", "200ms"}) {
		t.Fatalf("flags %+v", o)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--duration", "0s"}, "--duration"},
		{[]string{"--silos", "1"}, "--silos"},
		{[]string{"--clients", "0"}, "--clients"},
		{[]string{"--nemeses", "kill-everything"}, "unknown nemesis"},
		{[]string{"stray"}, ""},
	} {
		_, err := parseChaosRunFlags(c.args, io.Discard)
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
