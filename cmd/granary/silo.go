package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/actor/callback"
	"github.com/granaryhq/granary/gateway"
	"github.com/granaryhq/granary/internal/busypoll"
	"github.com/granaryhq/granary/placement/membership"
	"github.com/granaryhq/granary/placement/table"
	silopb "github.com/granaryhq/granary/proto/silo"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/silo"
	"github.com/granaryhq/granary/silo/forward"
	"github.com/granaryhq/granary/silo/ownership"
	"github.com/granaryhq/granary/silo/placementclient"
	"github.com/granaryhq/granary/silo/router"
	"github.com/granaryhq/granary/statestore/boltstore"
)

type siloFlags struct {
	hostFlags
	id        string
	placement string
	// placementAddrs and placementNodes are --placement parsed: every
	// address, and the addresses given with a node ID.
	placementAddrs []string
	placementNodes map[string]string
	internalAddr   string
	peerAddrs      peerAddrFlag
	stateStore     string
	routingWindow  time.Duration
	leasePeriod    time.Duration
	heartbeat      time.Duration
	takeOver       bool
	tls            tlsFlags
}

func parseSiloFlags(args []string, stderr io.Writer) (*siloFlags, error) {
	f := &siloFlags{}
	fs := flag.NewFlagSet("granary silo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.id, "id", "", "this silo's ID, stable across restarts (default: the host name and the internal port)")
	fs.StringVar(&f.placement, "placement", "127.0.0.1:7101", "gRPC addresses of the placement nodes, [id=]host:port,...; with the node's ID, a pointer to that node as leader is followed to this address instead of the one it advertises")
	f.register(fs)
	fs.StringVar(&f.internalAddr, "internal-addr", "127.0.0.1:7500", "host:port of the silo-to-silo gRPC service, as other silos reach it")
	fs.Var(&f.peerAddrs, "peer-addr", "ID=host:port: reach silo ID at this address instead of the internal address it advertises, e.g. through a NAT or a proxy (repeatable)")
	fs.StringVar(&f.stateStore, "state-store", "", "the cluster's shared state store: redis://[user:pass@]host:port/db (rediss:// for TLS); required")
	fs.DurationVar(&f.routingWindow, "routing-window", router.DefaultRoutingWindow, "how long a call waits for its actor's owner to be reachable before 503 (or 404 when no silo hosts the type)")
	fs.DurationVar(&f.leasePeriod, "lease-period", membership.DefaultLeasePeriod, "how long an acknowledged heartbeat keeps the lease; must equal the placement nodes' --lease-period")
	fs.DurationVar(&f.heartbeat, "heartbeat-interval", 250*time.Millisecond, "how often the silo heartbeats to the placement leader")
	fs.BoolVar(&f.takeOver, "take-over", false, "claim actor shards whose fence records belong to another cluster ID, as after placement was bootstrapped again on empty data without its old --cluster-id; make sure that cluster is gone (records of this cluster are never taken over)")
	f.tls.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: granary silo [flags]\n\nRuns one silo of a cluster: it joins placement, hosts the actors of its apps, and serves the gateway.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := parseFlagSet(fs, args, stderr); err != nil {
		return nil, err
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	if err := f.tls.check(); err != nil {
		return nil, err
	}
	var err error
	if f.placementAddrs, f.placementNodes, err = parsePlacementAddrs(f.placement); err != nil {
		return nil, fmt.Errorf("--placement %q: %w", f.placement, err)
	}
	if _, _, err := net.SplitHostPort(f.internalAddr); err != nil {
		return nil, fmt.Errorf("--internal-addr %q: %w", f.internalAddr, err)
	}
	switch strings.ToLower(strings.TrimSpace(f.stateStore)) {
	case "", "bbolt", "embedded":
		return nil, errors.New("granary silo: --state-store must name the cluster's shared store (redis://host:port/db): " +
			"the embedded store belongs to one process, so a silo's actors could not fail over to another silo without losing their state")
	}
	if f.id == "" {
		_, port, _ := net.SplitHostPort(f.internalAddr)
		p, _ := strconv.Atoi(port)
		f.id = defaultSiloID(p)
	}
	if err := checkSiloID(f.id); err != nil {
		return nil, fmt.Errorf("--id %q: %w", f.id, err)
	}
	if f.leasePeriod <= f.heartbeat*2 {
		return nil, fmt.Errorf("--lease-period %v must be well over two --heartbeat-interval (%v)", f.leasePeriod, f.heartbeat)
	}
	return f, nil
}

// parsePlacementAddrs parses "[id=]host:port,...".
func parsePlacementAddrs(list string) (addrs []string, byID map[string]string, err error) {
	for entry := range strings.SplitSeq(list, ",") {
		id, addr, named := strings.Cut(strings.TrimSpace(entry), "=")
		if !named {
			id, addr = "", id
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, nil, fmt.Errorf("entry %q: %w", entry, err)
		}
		if named {
			if id == "" {
				return nil, nil, fmt.Errorf("entry %q: empty node ID", entry)
			}
			if byID == nil {
				byID = map[string]string{}
			}
			if _, dup := byID[id]; dup {
				return nil, nil, fmt.Errorf("node %s is listed twice", id)
			}
			byID[id] = addr
		}
		addrs = append(addrs, addr)
	}
	return addrs, byID, nil
}

// peerAddrFlag collects --peer-addr ID=host:port values.
type peerAddrFlag map[string]string

func (p *peerAddrFlag) String() string {
	var parts []string
	for id, addr := range *p {
		parts = append(parts, id+"="+addr)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func (p *peerAddrFlag) Set(v string) error {
	id, addr, ok := strings.Cut(v, "=")
	if !ok || id == "" {
		return fmt.Errorf("%q: want ID=host:port", v)
	}
	if err := checkSiloID(id); err != nil {
		return fmt.Errorf("%q: silo ID: %w", v, err)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%q: %w", v, err)
	}
	if *p == nil {
		*p = peerAddrFlag{}
	}
	if _, dup := (*p)[id]; dup {
		return fmt.Errorf("%q: silo %s has an address already", v, id)
	}
	(*p)[id] = addr
	return nil
}

// siloHooks hands shards between the ownership record, the runtime and the
// reminder service.
type siloHooks struct {
	rt  *actor.Runtime
	rem *reminders.Service
	log *slog.Logger
}

func (h *siloHooks) Lose(ctx context.Context, actorType string, shards []int) {
	h.rt.DeactivateShards(ctx, actorType, shards)
	h.rem.ShardsLost(ctx, actorType, shards)
}

func (h *siloHooks) Gained(ctx context.Context, actorType string, shards []int) {
	if err := h.rem.ShardsGained(ctx, actorType, shards); err != nil {
		h.log.Error("loading the reminders of gained shards failed", "type", actorType, "err", err)
	}
}

// siloHandler is the placement client's handler: the ownership record, plus
// dropping connections to silos that left the table and stopping the process
// once placement removed or refused it.
type siloHandler struct {
	*ownership.Ownership
	fwd  *forward.Client
	gone chan<- string
}

func (h siloHandler) Removed(reason string) {
	h.Ownership.Removed(reason)
	h.leave("placement removed this silo from the cluster (" + reason + "); restart it to rejoin as a new process")
}

func (h siloHandler) Rejected(reason string) {
	h.Ownership.Rejected(reason)
	h.leave("placement refused this silo: " + reason)
}

func (h siloHandler) leave(why string) {
	select {
	case h.gone <- why:
	default:
	}
}

func (h siloHandler) Phase(ctx context.Context, round uint64, p membership.Phase, t *table.Table) error {
	if err := h.Ownership.Phase(ctx, round, p, t); err != nil {
		return err
	}
	if p == membership.PhaseUnlock {
		addrs := make([]string, 0, len(t.Members))
		for _, m := range t.Members {
			addrs = append(addrs, m.InternalAddr)
		}
		h.fwd.Retain(addrs)
	}
	return nil
}

func runSilo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseSiloFlags(args, stderr)
	if err != nil {
		return err
	}
	// The gRPC API's Shutdown method stops the silo as a signal would.
	ctx, stopSilo := context.WithCancel(ctx)
	defer stopSilo()
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	gwTLS, err := f.gatewayTLS.config(log)
	if err != nil {
		return err
	}
	itls, err := f.tls.load(log)
	if err != nil {
		return err
	}
	defer itls.close()
	res, err := f.resources(log)
	if err != nil {
		return err
	}
	rawStore, storeName, err := openStore(ctx, f.stateStore, "", log)
	if err != nil {
		return err
	}
	defer rawStore.Close()
	if _, embedded := rawStore.(*boltstore.Store); embedded {
		return errors.New("granary silo: the embedded store cannot be shared by a cluster")
	}
	obs, err := startObservability(ctx, &f.observe, "granary-silo", f.id, log)
	if err != nil {
		return err
	}
	defer obs.Close()
	store := obs.store(rawStore, storeKind(storeName))

	incarnation := actor.NewIncarnation()
	self := table.Owner{ID: f.id, Incarnation: incarnation}
	hooks := &siloHooks{log: log}
	// The placement client is made once the apps have registered (its
	// heartbeats name their types); until then the silo has no lease.
	var clientRef atomic.Pointer[placementclient.Client]
	var rt *actor.Runtime
	own := ownership.New(ownership.Config{
		Self: self, Store: store, Hooks: hooks, Logger: log,
		Lease: func() bool {
			c := clientRef.Load()
			if c == nil {
				return false
			}
			ok, _ := c.Lease()
			return ok
		},
		ReportNewer: func(v uint64, key string) {
			if c := clientRef.Load(); c != nil {
				c.ReportClaimRefused(v, key)
			}
		},
		DrainTimeout:          func(actorType string) time.Duration { return rt.DrainTimeout(actorType) },
		TakeOverOtherClusters: f.takeOver,
	})
	defer own.Close()
	rt, err = actor.New(actor.Config{Store: store, Placement: own, Logger: log, TurnWait: f.turnWait,
		Observer: obs.actors(), Tracer: obs.tracer()})
	if err != nil {
		return err
	}
	obs.activeActors(rt)
	hooks.rt = rt
	poller := busypoll.New(f.busyPoll)
	obs.busyPolls(poller)
	apps := callback.NewRegistry(rt, callback.Options{
		Token: f.appToken, CallTimeout: f.appCallTimeout, MaxResponseSize: f.maxBodySize, Logger: log,
		Observer: obs.apps(), Tracer: obs.tracer(), Poller: poller,
	})
	rem, err := startReminders(rt, store, true, obs, log)
	if err != nil {
		return err
	}
	hooks.rem = rem

	httpAddr := net.JoinHostPort(f.host, strconv.Itoa(f.httpPort))
	fwd := forward.NewSecureClient(log, itls.credentials("silo internal"))
	defer fwd.Close()
	var bks *blockSet
	s, err := silo.New(silo.Config{ID: f.id, Runtime: rt, Apps: apps, Reminders: rem, StoreName: storeName, Logger: log,
		RoutingWindow: f.routingWindow,
		Blocks:        func() ([]silo.Component, []silo.Subscription) { return bks.Metadata() },
		Starting:      true,
		AppRegistered: func(ctx context.Context, appID, url string) { bks.SyncApp(ctx, appID, url) },
		Placement: func() silo.PlacementStatus {
			return clusterPlacementStatus(own, clientRef.Load(), incarnation)
		}})
	if err != nil {
		return err
	}
	cluster := router.New(self, own, fwd, f.routingWindow, f.peerAddrs)
	gw := gateway.New(s, gateway.Config{APIToken: f.apiToken, MaxBodySize: f.maxBodySize, Logger: log, Cluster: cluster,
		ObserveRequest: obs.requests(), Tracer: obs.tracer(), Poller: poller})
	bks, err = startBlocks(rt, store, gw, apps, cluster, res, f.sidecarAppID(), f.apiToken, f.maxBodySize, log)
	if err != nil {
		return err
	}
	defer bks.Close()

	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("gateway cannot listen on %s: %w (choose another --http-port)", httpAddr, err)
	}
	internal, err := net.Listen("tcp", f.internalAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("--internal-addr %s: %w", f.internalAddr, err)
	}
	internalOpts := forward.ServerOptions()
	if creds := itls.credentials("silo internal"); creds != nil {
		internalOpts = append(internalOpts, grpc.Creds(creds))
	}
	grpcSrv := grpc.NewServer(internalOpts...)
	silopb.RegisterSiloServer(grpcSrv, forward.NewServer(gw.Handler(), log))
	go grpcSrv.Serve(forward.Listener(internal))
	serveErr := make(chan error, 1)
	go func() { serveErr <- gw.Serve(gatewayListener(ln, gwTLS)) }()
	stopGRPC, grpcAddr, err := startGRPC(&f.hostFlags, gw, bks, stopSilo, obs, gwTLS, log)
	if err != nil {
		grpcSrv.Stop()
		return err
	}

	for _, app := range f.apps {
		if err := apps.Register(ctx, app.id, app.url, false); err != nil {
			grpcSrv.Stop()
			return err
		}
	}
	bks.SyncNow()
	s.Started()
	publicHTTP := ln.Addr().String()
	gone := make(chan string, 1)
	client := placementclient.New(placementclient.Config{
		Addrs: f.placementAddrs, NodeAddrs: f.placementNodes,
		Member: func() table.Member {
			var types []string
			for _, st := range rt.Stats() {
				if st.Available {
					types = append(types, st.Type)
				}
			}
			slices.Sort(types)
			return table.Member{ID: f.id, Incarnation: incarnation, InternalAddr: f.internalAddr,
				HTTPAddr: publicHTTP, Types: types, AppIDs: bks.AppIDs()}
		},
		Load: func() int64 {
			var n int64
			for _, st := range rt.Stats() {
				n += int64(st.Active)
			}
			return n
		},
		TableVersion: func() uint64 {
			if t := own.Table(); t != nil {
				return t.Version
			}
			return 0
		},
		Handler:           siloHandler{Ownership: own, fwd: fwd, gone: gone},
		HeartbeatInterval: f.heartbeat,
		LeasePeriod:       f.leasePeriod,
		Logger:            log,
		Credentials:       itls.credentials("placement"),
	})
	clientRef.Store(client)
	siloGauges(obs, own, client)
	cctx, stopClient := context.WithCancel(context.Background())
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		_ = client.Run(cctx)
	}()
	fmt.Fprintf(stdout, "\nGranary silo %s (incarnation %s) is up; it serves actors once placement gives it a table and a lease.\n"+
		"  gateway:   %s://%s\n  gRPC API:  %s\n  metrics:   %s\n  internal:  %s\n  placement: %s\n  store:     %s\n\n", f.id, incarnation, scheme(gwTLS), publicHTTP, cmp.Or(grpcAddr, "off"), metricsURL(obs.addr), f.internalAddr, f.placement, storeName)

	var exitErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining actors")
	case why := <-gone:
		// A removed process serves nothing more (its shards are claimed
		// elsewhere); it exits so a supervisor restarts it as a new one.
		log.Error("leaving: "+why, "silo", f.id, "incarnation", incarnation)
		exitErr = errors.New(why)
	case err := <-serveErr:
		stopClient()
		grpcSrv.Stop()
		return fmt.Errorf("gateway stopped: %w", err)
	}
	done := make(chan struct{})
	go func() {
		// Drain while still a member, so calls for this silo's actors
		// finish; then leave placement (it removes the silo after the
		// faulty-host timeout and gives its shards away).
		shutdown(rt, apps, rem, gw, f.shutdownGrace, log)
		stopGRPC(5 * time.Second)
		stopClient()
		<-clientDone
		grpcSrv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		log.Info("stopped")
		return exitErr
	case <-time.After(f.shutdownGrace + 5*time.Second):
		return errors.New("shutdown did not finish in time; exiting anyway")
	}
}

// siloGauges registers the placement gauges of a cluster silo.
func siloGauges(obs *observability, own *ownership.Ownership, client *placementclient.Client) {
	obs.gauge("granary_silo_lease", "1 while this silo holds its placement lease, else 0.", func() float64 {
		if ok, _ := client.Lease(); ok {
			return 1
		}
		return 0
	})
	obs.gauge("granary_silo_table_version", "Version of the placement table this silo has adopted.", func() float64 {
		if t := own.Table(); t != nil {
			return float64(t.Version)
		}
		return 0
	})
	obs.gauge("granary_silo_table_members", "Silos in this silo's adopted placement table.", func() float64 {
		if t := own.Table(); t != nil {
			return float64(len(t.Members))
		}
		return 0
	})
}

// clusterPlacementStatus is the metadata view of a cluster silo.
func clusterPlacementStatus(own *ownership.Ownership, client *placementclient.Client, incarnation string) silo.PlacementStatus {
	st := silo.PlacementStatus{Mode: "cluster", Incarnation: incarnation}
	ost := own.Status()
	st.TableVersion, st.Removed, st.Shards = ost.TableVersion, ost.Removed, ost.Shards
	if t := own.Table(); t != nil {
		for _, m := range t.Members {
			st.Members = append(st.Members, m.ID)
		}
	}
	if client != nil {
		cs := client.Status()
		lease := cs.Lease
		st.Lease, st.LeaseLeftMs, st.Leader, st.LastError = &lease, cs.LeaseLeft.Milliseconds(), cs.Leader, cs.LastError
		for _, sp := range cs.LeaseSpans {
			st.LeaseSpans = append(st.LeaseSpans, silo.LeaseSpan{From: sp.From, Until: sp.Until})
		}
	}
	return st
}
