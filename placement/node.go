package placement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/granaryhq/granary/placement/table"
)

// Files and directories under Config.DataDir.
const (
	raftDBFile     = "raft.db"
	clusterIDFile  = "cluster-id"
	snapshotRetain = 2
)

const (
	// transportTimeout bounds one Raft RPC's I/O.
	transportTimeout = 10 * time.Second
	// transportPool is the number of idle connections kept per peer.
	transportPool = 3
	// leaderSetupTimeout bounds each step of taking up leadership.
	leaderSetupTimeout = 5 * time.Second
	// leaderSetupRetry is the pause before a failed setup is tried again.
	leaderSetupRetry = 100 * time.Millisecond
)

var (
	// ErrNotLeader is wrapped by the errors of calls that only the leader
	// serves; errors.As with *NotLeaderError tells where the leader is.
	ErrNotLeader = errors.New("not the placement leader")
	// ErrClosed is wrapped by the errors of calls made after Close, or
	// after the node stopped itself (see Node.Err).
	ErrClosed = errors.New("placement node closed")
	// ErrClusterIDMismatch is wrapped when the node's cluster ID and the
	// one in its Raft data or its configuration differ.
	ErrClusterIDMismatch = errors.New("cluster ID mismatch")
)

// Status describes a node for operators.
type Status struct {
	ID string
	// State is Raft's state: Follower, Candidate, Leader or Shutdown.
	State string
	// Leading is IsLeader.
	Leading        bool
	LeaderID       string
	LeaderGRPCAddr string
	Term           uint64
	LastIndex      uint64
	AppliedIndex   uint64
	ClusterID      string
	TableVersion   uint64
	Members        int
	// Servers is the latest Raft configuration.
	Servers []Peer
	// LeaderChanges counts the changes of leader this node has seen,
	// losing the leader included, since it started.
	LeaderChanges uint64
}

// Node is one running placement node: a Raft server with the placement FSM.
type Node struct {
	cfg    Config
	logger *slog.Logger
	fsm    *FSM
	raft   *raft.Raft
	store  *raftboltdb.BoltStore

	leaderChanges atomic.Uint64

	mu sync.Mutex
	// clusterID is the cluster ID this node belongs to, "" while none is
	// known; clusterIDFrom says where it came from, clusterIDSaved whether
	// the cluster-id file holds it.
	clusterID      string
	clusterIDFrom  string
	clusterIDSaved bool
	// proposal is the cluster ID this node commits if it leads before any
	// is known: the first start was given none.
	proposal string
	// leading and event describe leadership as last reported.
	leading bool
	event   LeaderEvent
	subs    map[chan LeaderEvent]struct{}
	opened  bool
	closed  bool
	failure error

	stop      chan struct{}
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open starts a placement node on cfg.DataDir. A first start (no Raft data)
// needs cfg.Peers and bootstraps the cluster with them; a restart rejoins
// with the stored data, and cfg.Peers, if given, must match the stored Raft
// configuration.
func Open(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:    cfg,
		logger: cfg.Logger.With("placementNode", cfg.ID),
		subs:   map[chan LeaderEvent]struct{}{},
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("placement node %s: creating the data directory: %w", cfg.ID, err)
	}
	stored, err := readClusterID(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("placement node %s: %w", cfg.ID, err)
	}
	switch {
	case stored != "" && cfg.ClusterID != "" && stored != cfg.ClusterID:
		return nil, fmt.Errorf("placement node %s: %w: --cluster-id is %q, but %s holds %q, the cluster this node's data belongs to",
			cfg.ID, ErrClusterIDMismatch, cfg.ClusterID, filepath.Join(cfg.DataDir, clusterIDFile), stored)
	case stored != "":
		n.clusterID, n.clusterIDFrom, n.clusterIDSaved = stored, filepath.Join(cfg.DataDir, clusterIDFile), true
	case cfg.ClusterID != "":
		n.clusterID, n.clusterIDFrom = cfg.ClusterID, "--cluster-id"
	}

	var closers []func() error
	defer func() {
		if n.raft == nil {
			for _, c := range slices.Backward(closers) {
				_ = c()
			}
		}
	}()
	rlog := newRaftLogger(n.logger)

	store, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(cfg.DataDir, raftDBFile),
		BoltOptions: &bbolt.Options{Timeout: time.Second},
	})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			err = fmt.Errorf("%w (is another placement node running on this data directory?)", err)
		}
		return nil, fmt.Errorf("placement node %s: opening %s: %w", cfg.ID, filepath.Join(cfg.DataDir, raftDBFile), err)
	}
	closers = append(closers, store.Close)
	n.store = store
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotRetain, rlog.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("placement node %s: opening the snapshot store: %w", cfg.ID, err)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.Logger = rlog
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("placement node %s: Raft config: %w", cfg.ID, err)
	}

	hasState, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return nil, fmt.Errorf("placement node %s: reading the Raft state in %s: %w", cfg.ID, cfg.DataDir, err)
	}
	bootstrap := false
	switch {
	case !hasState && len(cfg.Peers) == 0:
		return nil, fmt.Errorf("placement node %s: %s holds no Raft state, and a first start needs --peers "+
			"listing every placement node (id=host:port,...), this one included", cfg.ID, cfg.DataDir)
	case !hasState:
		if err := checkClusterSize(len(cfg.Peers)); err != nil {
			return nil, fmt.Errorf("placement node %s: --peers %s: %w", cfg.ID, FormatPeers(cfg.Peers), err)
		}
		bootstrap = true
	case len(cfg.Peers) > 0:
		if err := checkStoredPeers(rc, store, snaps, cfg); err != nil {
			return nil, fmt.Errorf("placement node %s: %w", cfg.ID, err)
		}
	}

	advertise, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("placement node %s: resolving the Raft address: %w", cfg.ID, err)
	}
	var trans *raft.NetworkTransport
	if cfg.RaftStream == nil {
		trans, err = raft.NewTCPTransportWithLogger(cfg.RaftAddr, advertise, transportPool, transportTimeout, rlog.Named("transport"))
	} else {
		var ln net.Listener
		if ln, err = net.Listen("tcp", cfg.RaftAddr); err == nil {
			trans = raft.NewNetworkTransportWithLogger(cfg.RaftStream(ln, advertise), transportPool, transportTimeout, rlog.Named("transport"))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("placement node %s: listening for Raft on %s: %w", cfg.ID, cfg.RaftAddr, err)
	}
	closers = append(closers, trans.Close)

	if bootstrap {
		servers := make([]raft.Server, len(cfg.Peers))
		for i, p := range cfg.Peers {
			servers[i] = raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)}
		}
		if err := raft.BootstrapCluster(rc, store, store, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
			return nil, fmt.Errorf("placement node %s: bootstrapping with peers %s: %w", cfg.ID, FormatPeers(cfg.Peers), err)
		}
		n.logger.Info("placement: bootstrapped a new cluster", "peers", FormatPeers(cfg.Peers), "dataDir", cfg.DataDir)
		if n.clusterID != "" && !n.clusterIDSaved {
			if err := writeClusterID(cfg.DataDir, n.clusterID); err != nil {
				return nil, fmt.Errorf("placement node %s: %w", cfg.ID, err)
			}
			n.clusterIDSaved = true
		}
	}
	if n.clusterID == "" {
		// Nothing committed names the cluster yet. If this node leads
		// before another has committed an ID, it commits this one.
		if n.proposal, err = randomClusterID(); err != nil {
			return nil, fmt.Errorf("placement node %s: %w", cfg.ID, err)
		}
	}

	n.fsm = NewFSM(n.logger)
	n.fsm.onClusterID = n.adoptClusterID
	var logs raft.LogStore = store
	if cfg.wrapLogStore != nil {
		logs = cfg.wrapLogStore(store)
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, store, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("placement node %s: starting Raft: %w", cfg.ID, err)
	}
	n.raft = r
	n.wg.Add(2)
	go n.watchLeadership()
	go n.countLeaderChanges()

	n.mu.Lock()
	n.opened = true
	failure := n.failure
	n.mu.Unlock()
	if failure != nil {
		_ = n.Close()
		return nil, failure
	}
	n.logger.Info("placement: node started", "raftAddr", cfg.RaftAddr, "grpcAddr", cfg.GRPCAddr,
		"dataDir", cfg.DataDir, "clusterID", n.ClusterID(), "restarted", hasState)
	return n, nil
}

// checkStoredPeers compares cfg.Peers with the Raft configuration stored in
// the data directory; it reads the stores without joining the cluster.
func checkStoredPeers(rc *raft.Config, store *raftboltdb.BoltStore, snaps raft.SnapshotStore, cfg Config) error {
	probe := *rc
	probe.Logger = newRaftLogger(slog.New(slog.DiscardHandler))
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.RaftAddr))
	defer trans.Close()
	conf, err := raft.GetConfiguration(&probe, NewFSM(slog.New(slog.DiscardHandler)), store, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("reading the Raft configuration stored in %s: %w", cfg.DataDir, err)
	}
	storedPeers := make([]Peer, len(conf.Servers))
	for i, s := range conf.Servers {
		storedPeers[i] = Peer{ID: string(s.ID), RaftAddr: string(s.Address)}
	}
	if FormatPeers(storedPeers) != FormatPeers(cfg.Peers) {
		return fmt.Errorf("--peers %s differs from the Raft configuration stored in %s, %s; "+
			"start without --peers to use the stored one", FormatPeers(cfg.Peers), cfg.DataDir, FormatPeers(storedPeers))
	}
	return nil
}

// fail stops the node for good because of err, which Err then returns. It
// may run on Raft's FSM goroutine, so it closes the node in another.
func (n *Node) fail(err error) {
	n.mu.Lock()
	first := n.failure == nil
	if first {
		n.failure = err
	}
	opened := n.opened
	n.mu.Unlock()
	if !first {
		return
	}
	n.logger.Error("placement: node stopping", "error", err)
	if opened {
		go func() { _ = n.Close() }()
	}
}

// Table returns the latest table this node has applied.
func (n *Node) Table() *table.Table { return n.fsm.Table() }

// ClusterID returns the cluster ID, "" until one is known (at the first
// start without --cluster-id, until the first leader commits one).
func (n *Node) ClusterID() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.clusterID
}

// NodeAddr returns the gRPC address committed for the placement node with
// the given Raft ID, "" when none is.
func (n *Node) NodeAddr(raftID string) string { return n.fsm.NodeAddr(raftID) }

// Apply commits cmd through Raft and returns the table after it. Only the
// leader applies; elsewhere the error wraps ErrNotLeader (see
// NotLeaderError). A command the FSM refuses returns its error and changes
// nothing. When ctx ends first, the command may still be committed.
func (n *Node) Apply(ctx context.Context, cmd Command) (*table.Table, error) {
	data, err := EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	if err := n.usable(); err != nil {
		return nil, err
	}
	if n.raft.State() != raft.Leader {
		return nil, fmt.Errorf("placement: apply %s: %w", cmd.op(), n.notLeader(nil))
	}
	timeout, err := timeoutOf(ctx)
	if err != nil {
		return nil, fmt.Errorf("placement: apply %s: %w", cmd.op(), err)
	}
	type outcome struct {
		table *table.Table
		err   error
	}
	done := make(chan outcome, 1)
	go func() {
		t, err := n.commitData(data, timeout)
		done <- outcome{t, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			return nil, fmt.Errorf("placement: apply %s: %w", cmd.op(), o.err)
		}
		return o.table, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("placement: apply %s: %w (it may still be committed)", cmd.op(), ctx.Err())
	}
}

// timeoutOf turns ctx's deadline into Raft's enqueue timeout (0: none).
func timeoutOf(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	d := time.Until(dl)
	if d <= 0 {
		return 0, context.DeadlineExceeded
	}
	return d, nil
}

func (n *Node) commit(cmd Command, timeout time.Duration) (*table.Table, error) {
	data, err := EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	t, err := n.commitData(data, timeout)
	if err != nil {
		return nil, fmt.Errorf("placement: apply %s: %w", cmd.op(), err)
	}
	return t, nil
}

func (n *Node) commitData(data []byte, timeout time.Duration) (*table.Table, error) {
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		return nil, n.raftError(err)
	}
	res, ok := f.Response().(Result)
	if !ok {
		return nil, fmt.Errorf("the FSM answered %T", f.Response())
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return res.Table, nil
}

// raftError translates Raft's errors into the package's.
func (n *Node) raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return n.notLeader(err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// usable returns an error wrapping ErrClosed once the node is closed.
func (n *Node) usable() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.failure != nil:
		return fmt.Errorf("%w: %w", ErrClosed, n.failure)
	case n.closed:
		return ErrClosed
	}
	return nil
}

// Status describes the node.
func (n *Node) Status() Status {
	st := Status{
		ID:           n.cfg.ID,
		State:        n.raft.State().String(),
		Leading:      n.IsLeader(),
		Term:         n.raft.CurrentTerm(),
		LastIndex:    n.raft.LastIndex(),
		AppliedIndex: n.raft.AppliedIndex(),
		ClusterID:    n.ClusterID(),
	}
	st.LeaderID, st.LeaderGRPCAddr = n.Leader()
	st.LeaderChanges = n.leaderChanges.Load()
	t := n.Table()
	st.TableVersion, st.Members = t.Version, len(t.Members)
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Servers = append(st.Servers, Peer{ID: string(s.ID), RaftAddr: string(s.Address)})
		}
	}
	return st
}

// countLeaderChanges counts Raft's leader observations until the node stops.
func (n *Node) countLeaderChanges() {
	defer n.wg.Done()
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	for {
		select {
		case <-n.stop:
			return
		case <-ch:
			n.leaderChanges.Add(1)
		}
	}
}

// Done is closed once the node has stopped, by Close or by itself.
func (n *Node) Done() <-chan struct{} { return n.done }

// Err returns why the node stopped itself (its cluster ID and the one in
// the Raft log differ, or it could not record the cluster ID), nil if it
// has not.
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.failure
}

// Close stops Raft and closes the stores. It is idempotent; a leader that
// closes does not hand over leadership, the others elect a new one.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.stop)
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("stopping Raft: %w", err))
		}
		n.wg.Wait()
		n.setLeading(false, 0, time.Time{})
		n.mu.Lock()
		n.closed = true
		for ch := range n.subs {
			close(ch)
		}
		clear(n.subs)
		n.mu.Unlock()
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing %s: %w", raftDBFile, err))
		}
		if err := errors.Join(errs...); err != nil {
			n.closeErr = fmt.Errorf("placement node %s: %w", n.cfg.ID, err)
		}
		n.logger.Info("placement: node closed")
		close(n.done)
	})
	return n.closeErr
}
