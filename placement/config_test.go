package placement

import (
	"context"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestParsePeers(t *testing.T) {
	for _, tc := range []struct {
		name, list, self string
		want             []Peer
		err              string // a fragment of the error; "" for success
	}{
		{name: "empty", list: "", want: nil},
		{name: "blank", list: "  ", want: nil},
		{name: "one", list: "a=127.0.0.1:7001", self: "a", want: []Peer{{"a", "127.0.0.1:7001"}}},
		{name: "three with spaces", list: " a=10.0.0.1:7001 , b = 10.0.0.2:7001,c=host-c:7001", self: "b",
			want: []Peer{{"a", "10.0.0.1:7001"}, {"b", "10.0.0.2:7001"}, {"c", "host-c:7001"}}},
		{name: "IPv6", list: "a=[::1]:7001", want: []Peer{{"a", "[::1]:7001"}}},
		{name: "self not checked when not given", list: "a=h:1,b=h:2", want: []Peer{{"a", "h:1"}, {"b", "h:2"}}},
		{name: "no equals", list: "a:7001", err: `entry "a:7001" is not id=host:port`},
		{name: "trailing comma", list: "a=h:1,", err: `entry "" is not id=host:port`},
		{name: "empty ID", list: "=h:1", err: "empty node ID"},
		{name: "ID with space", list: "a b=h:1", err: "whitespace"},
		{name: "no port", list: "a=host", err: "not host:port"},
		{name: "no host", list: "a=:7001", err: "has no host"},
		{name: "unspecified host", list: "a=0.0.0.0:7001", err: "not one other nodes can dial"},
		{name: "port zero", list: "a=h:0", err: "from 1 to 65535"},
		{name: "port too large", list: "a=h:70000", err: "from 1 to 65535"},
		{name: "port not a number", list: "a=h:raft", err: "from 1 to 65535"},
		{name: "duplicate ID", list: "a=h:1,b=h:2,a=h:3", err: `ID "a" is listed twice`},
		{name: "duplicate address", list: "a=h:1,b=h:1", err: "a and b have the same address h:1"},
		{name: "self missing", list: "a=h:1,b=h:2", self: "c", err: `this node's ID "c" is not in the list`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePeers(tc.list, tc.self)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParsePeers(%q, %q) = %v, %v; want an error containing %q", tc.list, tc.self, got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePeers(%q, %q): %v", tc.list, tc.self, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParsePeers(%q, %q) = %v, want %v", tc.list, tc.self, got, tc.want)
			}
			if len(got) > 0 {
				again, err := ParsePeers(FormatPeers(got), tc.self)
				if err != nil || FormatPeers(again) != FormatPeers(got) {
					t.Errorf("FormatPeers(%v) = %q does not parse back: %v, %v", got, FormatPeers(got), again, err)
				}
			}
		})
	}
}

func TestFormatPeersSortsByID(t *testing.T) {
	got := FormatPeers([]Peer{{"c", "h:3"}, {"a", "h:1"}, {"b", "h:2"}})
	if want := "a=h:1,b=h:2,c=h:3"; got != want {
		t.Fatalf("FormatPeers = %q, want %q", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	base := Config{ID: "a", RaftAddr: "127.0.0.1:7001", GRPCAddr: "127.0.0.1:7101", DataDir: "/tmp/x",
		Peers: []Peer{{"a", "127.0.0.1:7001"}, {"b", "127.0.0.1:7002"}, {"c", "127.0.0.1:7003"}}}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		err    string
	}{
		{"valid", func(*Config) {}, ""},
		{"valid without peers", func(c *Config) { c.Peers = nil }, ""},
		{"no ID", func(c *Config) { c.ID = "" }, "empty node ID"},
		{"bad Raft address", func(c *Config) { c.RaftAddr = "nope" }, "Raft address"},
		{"no gRPC address", func(c *Config) { c.GRPCAddr = "" }, "gRPC address"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data directory"},
		{"lease above heartbeat", func(c *Config) { c.LeaderLeaseTimeout = time.Second }, "leader lease timeout"},
		{"election below heartbeat", func(c *Config) { c.ElectionTimeout = 100 * time.Millisecond }, "election timeout"},
		{"self missing", func(c *Config) { c.ID = "d"; c.RaftAddr = "127.0.0.1:7004" }, `do not include this node "d"`},
		{"self at another address", func(c *Config) { c.RaftAddr = "127.0.0.1:7009" }, "its Raft address is 127.0.0.1:7009"},
		{"duplicate peer", func(c *Config) { c.Peers = append(c.Peers, Peer{"b", "127.0.0.1:7005"}) }, "listed twice"},
		{"bad peer address", func(c *Config) { c.Peers[1].RaftAddr = "x" }, "peer b=x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.Peers = append([]Peer(nil), base.Peers...)
			tc.change(&c)
			err := c.withDefaults().validate()
			if tc.err == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("validate = %v, want an error containing %q", err, tc.err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.HeartbeatTimeout != 300*time.Millisecond || c.ElectionTimeout != 300*time.Millisecond ||
		c.LeaderLeaseTimeout != 150*time.Millisecond || c.CommitTimeout != 20*time.Millisecond {
		t.Fatalf("defaults %v/%v/%v/%v", c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout)
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		t.Fatal("the default lease exceeds the default heartbeat timeout")
	}
	if c.Logger == nil || c.Clock == nil {
		t.Fatal("no default logger or clock")
	}
	kept := Config{HeartbeatTimeout: time.Second}.withDefaults()
	if kept.HeartbeatTimeout != time.Second {
		t.Fatalf("withDefaults replaced a given heartbeat timeout with %v", kept.HeartbeatTimeout)
	}
}

func TestCheckClusterSize(t *testing.T) {
	for n := 0; n <= 7; n++ {
		err := checkClusterSize(n)
		if ok := n == 1 || n == 3 || n == 5; ok != (err == nil) {
			t.Errorf("checkClusterSize(%d) = %v", n, err)
		}
		if err != nil && !strings.Contains(err.Error(), "1, 3 or 5") {
			t.Errorf("checkClusterSize(%d) = %v, want it to say which sizes work", n, err)
		}
	}
}

// recordHandler keeps the records it handles.
type recordHandler struct {
	level   slog.Level
	records *[]slog.Record
	attrs   []slog.Attr
}

func (h recordHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	*h.records = append(*h.records, r)
	return nil
}
func (h recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return h
}
func (h recordHandler) WithGroup(string) slog.Handler { return h }

func attrsOf(r slog.Record) map[string]string {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	return m
}

func TestRaftLoggerGoesToSlog(t *testing.T) {
	var records []slog.Record
	var l hclog.Logger = newRaftLogger(slog.New(recordHandler{level: slog.LevelInfo, records: &records}))
	l.Debug("hidden", "k", 1)
	if l.IsDebug() || !l.IsInfo() || l.GetLevel() != hclog.Info {
		t.Errorf("IsDebug %v IsInfo %v GetLevel %v with an Info handler", l.IsDebug(), l.IsInfo(), l.GetLevel())
	}
	l.Named("snapshot").With("id", "s1").Warn("slow", "took", hclog.Fmt("%dms", 42))
	l.Error("failed", "error", "boom")
	l.StandardLogger(nil).Print("from the standard logger")
	if len(records) != 3 {
		t.Fatalf("got %d records, want 3 (debug hidden): %v", len(records), records)
	}
	if r := records[0]; r.Level != slog.LevelWarn || r.Message != "slow" {
		t.Errorf("first record %v %q", r.Level, r.Message)
	}
	if got := attrsOf(records[0]); got["logger"] != "raft.snapshot" || got["id"] != "s1" || got["took"] != "42ms" {
		t.Errorf("first record's attributes %v", got)
	}
	if r := records[1]; r.Level != slog.LevelError || attrsOf(r)["error"] != "boom" {
		t.Errorf("second record %v %v", r.Level, attrsOf(r))
	}
	if r := records[2]; r.Message != "from the standard logger" || attrsOf(r)["logger"] != "raft" {
		t.Errorf("standard logger record %q %v", r.Message, attrsOf(r))
	}
	if _, err := l.StandardWriter(nil).Write([]byte("written\n")); err != nil {
		t.Fatal(err)
	}
	if len(records) != 4 || records[3].Message != "written" {
		t.Errorf("after a write to the standard writer: %d records", len(records))
	}
}
