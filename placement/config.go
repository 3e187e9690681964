package placement

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/granaryhq/granary/internal/clock"
)

// Raft timing for a LAN. The leader sends heartbeats every
// HeartbeatTimeout/10. A follower that hears nothing from the leader for a
// random time between HeartbeatTimeout and twice that stops believing in
// it and stands; a follower still believing in the leader refuses its
// vote, so an election succeeds once a majority has timed out, 0.3 to
// 0.6 s after the crash, and one round of votes takes milliseconds on a
// LAN. A crashed leader is thus replaced in about half a second, well under
// one (BenchmarkLeaderFailover measures it). Raft's defaults (1 s, 1 s,
// 500 ms, 50 ms) are made for WANs and take two to three times as long.
const (
	// DefaultHeartbeatTimeout is how long a follower waits for the leader
	// (at least; Raft randomises up to twice as long) before it stands.
	DefaultHeartbeatTimeout = 300 * time.Millisecond
	// DefaultElectionTimeout is how long a candidate waits for votes before
	// it starts another round. Raft requires it ≥ HeartbeatTimeout.
	DefaultElectionTimeout = 300 * time.Millisecond
	// DefaultLeaderLeaseTimeout is how long a leader goes on without
	// hearing from a quorum before it steps down. Raft requires it ≤
	// HeartbeatTimeout: a cut-off leader then gives up leadership before
	// the others can elect a new one, so two nodes rarely both believe
	// they lead (VerifyLeader settles the rest).
	DefaultLeaderLeaseTimeout = 150 * time.Millisecond
	// DefaultCommitTimeout is how long an idle leader waits before it tells
	// followers the latest commit index, so they apply a change promptly.
	DefaultCommitTimeout = 20 * time.Millisecond
)

// Config configures one placement node.
type Config struct {
	// ID is the node's Raft server ID; it must not change across restarts.
	ID string
	// RaftAddr is the host:port the node's Raft transport listens on and
	// that the other nodes dial; the host must be an address others can
	// reach (not 0.0.0.0), written as in the peers list.
	RaftAddr string
	// GRPCAddr is the address of the node's gRPC service, which the leader
	// records in the Raft log so that followers can name it to silos.
	GRPCAddr string
	// DataDir holds raft.db (log and stable store), snapshots/ and
	// cluster-id.
	DataDir string
	// ClusterID is the cluster's ID. Empty means: the stored one, or at
	// the first start a random one. When given it must equal the stored one.
	ClusterID string
	// Peers are every node of the placement cluster, this one included.
	// They are needed for the first start, which bootstraps the cluster
	// with them, and optional afterwards, when they must match the Raft
	// configuration the node has stored.
	Peers []Peer

	// Raft timing; zero means the Default values above.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// Logger receives the node's logs and Raft's; nil means slog.Default().
	Logger *slog.Logger
	// Clock stamps leadership events; nil means clock.Real.
	Clock clock.Clock
	// RaftStream, when set, makes the stream layer of the Raft transport
	// from its listener (mutual TLS between the nodes); nil means plain TCP.
	RaftStream func(ln net.Listener, advertise net.Addr) raft.StreamLayer

	// wrapLogStore, in tests, stands between Raft and its log store (to
	// make its writes fail as on a full disk).
	wrapLogStore func(raft.LogStore) raft.LogStore
}

// Peer is one node of the placement cluster as Raft knows it.
type Peer struct {
	ID       string
	RaftAddr string
}

func (p Peer) String() string { return p.ID + "=" + p.RaftAddr }

// FormatPeers writes peers the way ParsePeers reads them, sorted by ID.
func FormatPeers(peers []Peer) string {
	sorted := slices.Clone(peers)
	slices.SortFunc(sorted, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
	parts := make([]string, len(sorted))
	for i, p := range sorted {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// ParsePeers parses a peers list, "a=10.0.0.1:7001,b=10.0.0.2:7001,...".
// An empty list is no peers. IDs and addresses must be unique; when self is
// not empty, the list must include a peer with that ID.
func ParsePeers(list, self string) ([]Peer, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var peers []Peer
	ids := map[string]bool{}
	addrs := map[string]string{}
	for entry := range strings.SplitSeq(list, ",") {
		entry = strings.TrimSpace(entry)
		id, addr, ok := strings.Cut(entry, "=")
		id, addr = strings.TrimSpace(id), strings.TrimSpace(addr)
		if !ok || entry == "" {
			return nil, fmt.Errorf("peers %q: entry %q is not id=host:port", list, entry)
		}
		if err := checkNodeID(id); err != nil {
			return nil, fmt.Errorf("peers %q: entry %q: %w", list, entry, err)
		}
		if err := checkHostPort(addr); err != nil {
			return nil, fmt.Errorf("peers %q: entry %q: %w", list, entry, err)
		}
		if ids[id] {
			return nil, fmt.Errorf("peers %q: ID %q is listed twice", list, id)
		}
		if other, dup := addrs[addr]; dup {
			return nil, fmt.Errorf("peers %q: %s and %s have the same address %s", list, other, id, addr)
		}
		ids[id] = true
		addrs[addr] = id
		peers = append(peers, Peer{ID: id, RaftAddr: addr})
	}
	if self != "" && !ids[self] {
		return nil, fmt.Errorf("peers %q: this node's ID %q is not in the list; list every placement node, this one included", list, self)
	}
	return peers, nil
}

func checkNodeID(id string) error {
	switch {
	case id == "":
		return errors.New("empty node ID")
	case strings.ContainsAny(id, "=, \t\n"):
		return fmt.Errorf("node ID %q contains '=', ',' or whitespace", id)
	}
	return nil
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q is not host:port: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("address %q is not one other nodes can dial", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("address %q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// withDefaults returns c with zero fields given their default values.
func (c Config) withDefaults() Config {
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = DefaultLeaderLeaseTimeout
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = DefaultCommitTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	return c
}

// validate checks a config that has its defaults.
func (c Config) validate() error {
	if err := checkNodeID(c.ID); err != nil {
		return fmt.Errorf("placement config: %w", err)
	}
	if err := checkHostPort(c.RaftAddr); err != nil {
		return fmt.Errorf("placement config: Raft %w", err)
	}
	if c.GRPCAddr == "" {
		return errors.New("placement config: empty gRPC address")
	}
	if c.DataDir == "" {
		return errors.New("placement config: empty data directory")
	}
	if strings.ContainsAny(c.ClusterID, " \t\n") {
		return fmt.Errorf("placement config: cluster ID %q contains whitespace", c.ClusterID)
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		return fmt.Errorf("placement config: the leader lease timeout (%v) must not exceed the heartbeat timeout (%v)", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		return fmt.Errorf("placement config: the election timeout (%v) must not be below the heartbeat timeout (%v)", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	if len(c.Peers) == 0 {
		return nil
	}
	ids := map[string]bool{}
	addrs := map[string]bool{}
	self := false
	for _, p := range c.Peers {
		if err := checkNodeID(p.ID); err != nil {
			return fmt.Errorf("placement config: peer %s: %w", p, err)
		}
		if err := checkHostPort(p.RaftAddr); err != nil {
			return fmt.Errorf("placement config: peer %s: %w", p, err)
		}
		if ids[p.ID] || addrs[p.RaftAddr] {
			return fmt.Errorf("placement config: peers %s: ID or address of %s listed twice", FormatPeers(c.Peers), p)
		}
		ids[p.ID], addrs[p.RaftAddr] = true, true
		if p.ID == c.ID {
			if p.RaftAddr != c.RaftAddr {
				return fmt.Errorf("placement config: peers list this node %q at %s, but its Raft address is %s", c.ID, p.RaftAddr, c.RaftAddr)
			}
			self = true
		}
	}
	if !self {
		return fmt.Errorf("placement config: peers %s do not include this node %q; list every placement node, this one included", FormatPeers(c.Peers), c.ID)
	}
	return nil
}

// checkClusterSize refuses cluster sizes other than 1, 3 and 5.
func checkClusterSize(n int) error {
	switch n {
	case 1, 3, 5:
		return nil
	}
	return fmt.Errorf("a placement cluster has 1, 3 or 5 nodes, not %d: a majority must agree on every change, "+
		"so 1 node is for development, 3 survive the loss of 1 and 5 the loss of 2; an even count survives "+
		"no more losses than one node fewer, and more than 5 only slows every change", n)
}

// raftLogger passes Raft's hclog output to a slog.Logger.
type raftLogger struct {
	base    *slog.Logger
	name    string
	implied []any
}

var _ hclog.Logger = (*raftLogger)(nil)

func newRaftLogger(l *slog.Logger) *raftLogger { return &raftLogger{base: l, name: "raft"} }

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (r *raftLogger) enabled(l hclog.Level) bool {
	return l != hclog.Off && r.base.Enabled(context.Background(), slogLevel(l))
}

func (r *raftLogger) Log(level hclog.Level, msg string, args ...any) {
	if !r.enabled(level) {
		return
	}
	attrs := make([]any, 0, 2+len(r.implied)+len(args))
	attrs = append(attrs, "logger", r.name)
	attrs = append(attrs, r.implied...)
	for _, a := range args {
		if f, ok := a.(hclog.Format); ok && len(f) > 0 {
			format, _ := f[0].(string)
			a = fmt.Sprintf(format, f[1:]...)
		}
		attrs = append(attrs, a)
	}
	r.base.Log(context.Background(), slogLevel(level), msg, attrs...)
}

func (r *raftLogger) Trace(msg string, args ...any) { r.Log(hclog.Trace, msg, args...) }
func (r *raftLogger) Debug(msg string, args ...any) { r.Log(hclog.Debug, msg, args...) }
func (r *raftLogger) Info(msg string, args ...any)  { r.Log(hclog.Info, msg, args...) }
func (r *raftLogger) Warn(msg string, args ...any)  { r.Log(hclog.Warn, msg, args...) }
func (r *raftLogger) Error(msg string, args ...any) { r.Log(hclog.Error, msg, args...) }

func (r *raftLogger) IsTrace() bool { return r.enabled(hclog.Trace) }
func (r *raftLogger) IsDebug() bool { return r.enabled(hclog.Debug) }
func (r *raftLogger) IsInfo() bool  { return r.enabled(hclog.Info) }
func (r *raftLogger) IsWarn() bool  { return r.enabled(hclog.Warn) }
func (r *raftLogger) IsError() bool { return r.enabled(hclog.Error) }

func (r *raftLogger) ImpliedArgs() []any { return slices.Clone(r.implied) }

func (r *raftLogger) With(args ...any) hclog.Logger {
	c := *r
	c.implied = append(slices.Clone(r.implied), args...)
	return &c
}

func (r *raftLogger) Name() string { return r.name }

func (r *raftLogger) Named(name string) hclog.Logger {
	c := *r
	c.name = r.name + "." + name
	return &c
}

func (r *raftLogger) ResetNamed(name string) hclog.Logger {
	c := *r
	c.name = name
	return &c
}

// SetLevel does nothing: the slog handler decides what is logged.
func (r *raftLogger) SetLevel(hclog.Level) {}

func (r *raftLogger) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if r.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

func (r *raftLogger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(r.base.With("logger", r.name).Handler(), slog.LevelInfo)
}

func (r *raftLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return r.StandardLogger(opts).Writer()
}
