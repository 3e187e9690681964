// Package cluster runs a Granary cluster for the chaos suite: placement
// nodes, silos and one workload app per silo as real processes on
// 127.0.0.1, with every link a nemesis may break — Raft between placement
// nodes, silo to placement, silo to silo, silo to the store — through a
// fault-injecting proxy of package chaos/proxy. It starts, kills, freezes,
// restarts and partitions them on request; what to do and when is the
// nemesis's business.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/granaryhq/granary/chaos/proxy"
	"github.com/granaryhq/granary/internal/launch"
)

// Config describes the cluster.
type Config struct {
	// Granary is the binary run as `granary placement`, `granary silo` and
	// `granary chaos app`.
	Granary string
	// RunDir receives the logs (RunDir/logs), the placement data and the
	// apps' histories (RunDir/history).
	RunDir string
	// Placement is the number of placement nodes (3 or 5).
	Placement int
	// Silos run from the start; Slots (≥ Silos) is the most that may run at
	// once: the rest join later.
	Silos, Slots int
	// StoreAddr is the Redis server's host:port and StoreDB its database;
	// the database is the cluster's alone.
	StoreAddr string
	StoreDB   int
	// SiloArgs and PlacementArgs are appended to every silo's and placement
	// node's command line.
	SiloArgs, PlacementArgs []string
	// ReadyTimeout bounds the wait for one process to answer.
	ReadyTimeout time.Duration
	// StopTimeout is how long a process may take to exit after SIGTERM.
	StopTimeout time.Duration
	Log         *slog.Logger
	// Progress receives a line per process started or stopped.
	Progress io.Writer
}

// Cluster is a running cluster.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client

	nodes []*Node
	silos []*Silo

	mu      sync.Mutex
	proxies []*proxy.Proxy // every proxy, for Heal and Close
}

// Node is a placement node.
type Node struct {
	Index     int
	Name      string
	RaftAddr  string
	GRPCAddr  string
	StatusURL string
	// raftFrom[j] carries node j's Raft traffic to this node.
	raftFrom map[int]*proxy.Proxy

	spec   launch.Spec
	mu     sync.Mutex
	wanted bool // the node should run: Supervise restarts it when it exits
	proc   *launch.Proc
}

// Silo is a slot for one silo and its app. A slot has two sides, each
// with its own gateway, internal and app ports and its own app: a silo
// restarted with the same ID while its old process is frozen (which still
// holds the old ports) runs on the other side, and the other silos' links
// to the slot are pointed there.
type Silo struct {
	Index int
	Name  string
	sides [2]side
	// toPlacement[i] carries this silo's stream to node i; toSilo[j] its
	// calls to silo j; toStore its store connections.
	toPlacement []*proxy.Proxy
	toSilo      map[int]*proxy.Proxy
	toStore     *proxy.Proxy
	siloArgs    []string // the arguments every process of the slot shares

	mu     sync.Mutex
	cur    int  // the side in use
	wanted bool // the silo should run: Supervise restarts it when it exits
	proc   *launch.Proc
	frozen []*launch.Proc // earlier processes of this silo, left frozen
}

// side is one set of ports of a slot.
type side struct {
	gatewayURL, internalAddr string
	gatewayPort              int
	appSpec                  launch.Spec
	app                      *launch.Proc
}

// GatewayURL is the gateway of the slot's current process.
func (s *Silo) GatewayURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sides[s.cur].gatewayURL
}

// spec is the command line of a process on side i.
func (s *Silo) spec(i int, logPath string) launch.Spec {
	sd := s.sides[i]
	argv := append([]string{s.siloArgs[0], "silo", "--id", s.Name, "--http-port", strconv.Itoa(sd.gatewayPort),
		"--internal-addr", sd.internalAddr, "--app-url", "http://" + sd.appSpec.ReadyAddr,
		"--metrics-port", "0", "--grpc-port", "0"}, s.siloArgs[1:]...)
	return launch.Spec{Name: s.Name, Argv: argv, LogPath: logPath, ReadyURL: sd.gatewayURL + "/v1.0/healthz"}
}

const (
	defaultReadyTimeout = 60 * time.Second
	defaultStopTimeout  = 10 * time.Second
)

// New lays out the cluster and opens its proxies; Start starts it.
func New(cfg Config) (*Cluster, error) {
	if cfg.Placement < 1 || cfg.Silos < 1 || cfg.Slots < cfg.Silos {
		return nil, fmt.Errorf("cluster: %d placement nodes, %d silos in %d slots: want at least one of each and slots ≥ silos", cfg.Placement, cfg.Silos, cfg.Slots)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = defaultReadyTimeout
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = defaultStopTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	c := &Cluster{cfg: cfg, log: cfg.Log,
		client: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}}}
	// The proxies listen on ports of the same batch: a proxy listening on
	// an ephemeral port could take one handed to a process.
	p, n := cfg.Placement, cfg.Slots
	proxies := p*(p-1) + n*p + n + n*(n-1)
	ports, err := launch.FreePorts(3*p + 6*n + proxies)
	if err != nil {
		return nil, err
	}
	if err := c.layout(ports); err != nil {
		c.closeProxies()
		return nil, err
	}
	return c, nil
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func (c *Cluster) newProxy(listen, target string) (*proxy.Proxy, error) {
	p, err := proxy.New(listen, target, c.log)
	if err != nil {
		return nil, fmt.Errorf("cluster: proxy to %s: %w", target, err)
	}
	c.mu.Lock()
	c.proxies = append(c.proxies, p)
	c.mu.Unlock()
	return p, nil
}

// layout assigns ports, opens the proxies and writes every command line.
func (c *Cluster) layout(ports []int) error {
	cfg := c.cfg
	logPath := func(name string) string { return filepath.Join(cfg.RunDir, "logs", name+".log") }
	next := 0
	take := func() int { next++; return ports[next-1] }

	for i := range cfg.Placement {
		n := &Node{Index: i, Name: fmt.Sprintf("p%d", i+1), RaftAddr: addr(take()), GRPCAddr: addr(take()), raftFrom: map[int]*proxy.Proxy{}}
		n.StatusURL = "http://" + addr(take()) + "/status"
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		for _, from := range c.nodes {
			if from != n {
				p, err := c.newProxy(addr(take()), n.RaftAddr)
				if err != nil {
					return err
				}
				n.raftFrom[from.Index] = p
			}
		}
	}
	for _, n := range c.nodes {
		// Each node reaches every other through the proxy for that link, so
		// each has a peer list of its own; the IDs agree, which is what the
		// Raft configuration is made of.
		peers := make([]string, len(c.nodes))
		for _, m := range c.nodes {
			a := m.RaftAddr
			if m != n {
				a = m.raftFrom[n.Index].Addr()
			}
			peers[m.Index] = m.Name + "=" + a
		}
		dataDir := filepath.Join(cfg.RunDir, n.Name)
		argv := []string{cfg.Granary, "placement", "--id", n.Name, "--raft-addr", n.RaftAddr, "--grpc-addr", n.GRPCAddr,
			"--http-addr", strings.TrimSuffix(strings.TrimPrefix(n.StatusURL, "http://"), "/status"),
			"--data-dir", dataDir, "--peers", strings.Join(peers, ","), "--metrics-port", "0"}
		n.spec = launch.Spec{Name: n.Name, Argv: append(argv, cfg.PlacementArgs...), DataDir: dataDir,
			LogPath: logPath(n.Name), ReadyURL: n.StatusURL}
	}

	for i := range cfg.Slots {
		s := &Silo{Index: i, Name: fmt.Sprintf("s%d", i+1), toSilo: map[int]*proxy.Proxy{}}
		for j := range s.sides {
			gatewayPort, appPort, internal := take(), take(), addr(take())
			appName := fmt.Sprintf("app%d", i+1)
			if j == 1 {
				appName += "b"
			}
			gatewayURL := "http://" + addr(gatewayPort)
			s.sides[j] = side{gatewayURL: gatewayURL, internalAddr: internal, gatewayPort: gatewayPort,
				appSpec: launch.Spec{Name: appName, Argv: []string{cfg.Granary, "chaos", "app"},
					Env: []string{"APP_HOST=127.0.0.1", "APP_PORT=" + strconv.Itoa(appPort), "GRANARY_URL=" + gatewayURL,
						"CHAOS_HISTORY=" + filepath.Join(cfg.RunDir, "history", appName+".jsonl")},
					LogPath: logPath(appName), ReadyAddr: addr(appPort)}}
		}
		c.silos = append(c.silos, s)
	}
	for _, s := range c.silos {
		var placementList []string
		for _, n := range c.nodes {
			p, err := c.newProxy(addr(take()), n.GRPCAddr)
			if err != nil {
				return err
			}
			s.toPlacement = append(s.toPlacement, p)
			placementList = append(placementList, n.Name+"="+p.Addr())
		}
		store, err := c.newProxy(addr(take()), cfg.StoreAddr)
		if err != nil {
			return err
		}
		s.toStore = store
		s.siloArgs = []string{cfg.Granary, "--placement", strings.Join(placementList, ","),
			"--state-store", fmt.Sprintf("redis://%s/%d", store.Addr(), cfg.StoreDB)}
		for _, t := range c.silos {
			if t == s {
				continue
			}
			p, err := c.newProxy(addr(take()), t.sides[0].internalAddr)
			if err != nil {
				return err
			}
			s.toSilo[t.Index] = p
			s.siloArgs = append(s.siloArgs, "--peer-addr", t.Name+"="+p.Addr())
		}
		s.siloArgs = append(s.siloArgs, cfg.SiloArgs...)
	}
	return nil
}

// Nodes returns the placement nodes.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Silos returns every silo slot, running or not.
func (c *Cluster) Silos() []*Silo { return c.silos }

// Start starts the placement nodes, then the first Silos apps and silos,
// and waits until each answers.
func (c *Cluster) Start(ctx context.Context) error {
	for _, n := range c.nodes {
		if err := c.StartNode(ctx, n, false); err != nil {
			return err
		}
	}
	for _, s := range c.silos[:c.cfg.Silos] {
		if err := c.StartSilo(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) start(ctx context.Context, spec launch.Spec, wait bool) (*launch.Proc, error) {
	p, err := launch.Start(spec)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c.cfg.Progress, "started %s (pid %d)\n", spec.Name, p.Pid())
	if !wait {
		return p, nil
	}
	if err := launch.AwaitReady(ctx, c.client, p, c.cfg.ReadyTimeout); err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

// StartNode starts node n, waiting for its status page unless async.
func (c *Cluster) StartNode(ctx context.Context, n *Node, async bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.Exited() {
		return fmt.Errorf("cluster: %s is running", n.Name)
	}
	p, err := c.start(ctx, n.spec, !async)
	if err != nil {
		return err
	}
	n.proc, n.wanted = p, true
	return nil
}

// StartSilo starts slot s's app (when it is not running) and silo, and
// waits until the silo's gateway answers.
func (c *Cluster) StartSilo(ctx context.Context, s *Silo) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.Exited() {
		return fmt.Errorf("cluster: %s is running", s.Name)
	}
	sd := &s.sides[s.cur]
	if sd.app == nil || sd.app.Exited() {
		app, err := c.start(ctx, sd.appSpec, true)
		if err != nil {
			return err
		}
		sd.app = app
	}
	p, err := c.start(ctx, s.spec(s.cur, filepath.Join(c.cfg.RunDir, "logs", s.Name+".log")), true)
	if err != nil {
		return err
	}
	s.proc, s.wanted = p, true
	return nil
}

// Running reports whether the slot's silo process runs (frozen or not).
func (s *Silo) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.Exited()
}

// Running reports whether the node's process runs (frozen or not).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc != nil && !n.proc.Exited()
}

// errNotRunning: the process to signal is not running.
var errNotRunning = errors.New("not running")

// Signal sends sig to the silo's current process.
func (s *Silo) Signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.Exited() {
		return fmt.Errorf("%s: %w", s.Name, errNotRunning)
	}
	return s.proc.Signal(sig)
}

// Kill kills the silo's current process with SIGKILL and waits for it.
func (s *Silo) Kill() {
	s.mu.Lock()
	p := s.proc
	s.wanted = false
	s.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// Stop stops the silo's current process with SIGTERM (it drains and
// leaves), killing it after timeout.
func (s *Silo) Stop(timeout time.Duration) {
	s.mu.Lock()
	p := s.proc
	s.wanted = false
	s.mu.Unlock()
	if p != nil {
		p.Stop(timeout)
	}
}

// Signal sends sig to the node's process.
func (n *Node) Signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || n.proc.Exited() {
		return fmt.Errorf("%s: %w", n.Name, errNotRunning)
	}
	return n.proc.Signal(sig)
}

// Kill kills the node's process with SIGKILL and waits for it.
func (n *Node) Kill() {
	n.mu.Lock()
	p := n.proc
	n.wanted = false
	n.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// Close stops every process — silos, then apps, then placement nodes — and
// closes the proxies.
func (c *Cluster) Close() {
	c.HealAll()
	var wg sync.WaitGroup
	stopAll := func(procs []*launch.Proc) {
		for _, p := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if p.Stop(c.cfg.StopTimeout) {
					fmt.Fprintf(c.cfg.Progress, "killed pid %d: it did not exit within %v of SIGTERM\n", p.Pid(), c.cfg.StopTimeout)
				}
			}()
		}
		wg.Wait()
	}
	var silos, apps, nodes []*launch.Proc
	for _, s := range c.silos {
		s.mu.Lock()
		for _, p := range append(s.frozen, s.proc) {
			if p != nil {
				silos = append(silos, p)
			}
		}
		for _, sd := range s.sides {
			if sd.app != nil {
				apps = append(apps, sd.app)
			}
		}
		s.mu.Unlock()
	}
	for _, n := range c.nodes {
		n.mu.Lock()
		if n.proc != nil {
			nodes = append(nodes, n.proc)
		}
		n.mu.Unlock()
	}
	stopAll(silos)
	stopAll(apps)
	stopAll(nodes)
	c.closeProxies()
	c.client.CloseIdleConnections()
}

func (c *Cluster) closeProxies() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.proxies {
		_ = p.Close()
	}
	c.proxies = nil
}
