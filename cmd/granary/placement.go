package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/granaryhq/granary/internal/mtls"
	"github.com/granaryhq/granary/placement"
	"github.com/granaryhq/granary/placement/membership"
	"github.com/granaryhq/granary/placement/service"
	pb "github.com/granaryhq/granary/proto/placement"
)

type placementFlags struct {
	id, raftAddr, grpcAddr, httpAddr, dataDir, clusterID, peers string
	logLevel, logFormat                                         string
	faultyHost, lease, phase                                    time.Duration
	observe                                                     observeFlags
	tls                                                         tlsFlags
}

func parsePlacementFlags(args []string, stderr io.Writer) (*placementFlags, error) {
	f := &placementFlags{}
	fs := flag.NewFlagSet("granary placement", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.id, "id", "", "this node's Raft server ID (required; never changes across restarts)")
	fs.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:7001", "host:port of this node's Raft transport, as the other nodes reach it")
	fs.StringVar(&f.grpcAddr, "grpc-addr", "127.0.0.1:7101", "host:port silos connect to")
	fs.StringVar(&f.httpAddr, "http-addr", "", "host:port of the status endpoint (GET /status); off when empty")
	fs.StringVar(&f.dataDir, "data-dir", "./.granary-placement", "directory of the Raft log, stable store, snapshots and cluster ID")
	fs.StringVar(&f.clusterID, "cluster-id", "", "the cluster's ID: made at the first bootstrap when empty; pass the old one to bootstrap again after the Raft data is lost")
	fs.StringVar(&f.peers, "peers", "", "every placement node as id=raftaddr,... (needed at the first start: bootstraps a 1-, 3- or 5-node cluster)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.DurationVar(&f.faultyHost, "faulty-host-timeout", membership.DefaultFaultyHostTimeout, "a silo not heard from for this long is removed")
	fs.DurationVar(&f.lease, "lease-period", membership.DefaultLeasePeriod, "how long an acknowledged heartbeat keeps a silo's lease (shorter than --faulty-host-timeout)")
	fs.DurationVar(&f.phase, "phase-timeout", membership.DefaultPhaseTimeout, "a silo that does not acknowledge a dissemination phase within this long is removed")
	f.observe.registerMetrics(fs)
	f.tls.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: granary placement [flags]\n\nRuns one node of the placement service (Raft-replicated membership and tables).\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := parseFlagSet(fs, args, stderr); err != nil {
		return nil, err
	}
	if f.id == "" {
		return nil, errors.New("granary placement: --id is required")
	}
	if err := f.observe.check(); err != nil {
		return nil, err
	}
	if err := f.tls.check(); err != nil {
		return nil, err
	}
	return f, nil
}

func runPlacement(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parsePlacementFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	mcfg := membership.Config{FaultyHostTimeout: f.faultyHost, LeasePeriod: f.lease, PhaseTimeout: f.phase}
	if err := mcfg.Validate(); err != nil {
		return err
	}
	var peers []placement.Peer
	if f.peers != "" {
		if peers, err = placement.ParsePeers(f.peers, f.id); err != nil {
			return fmt.Errorf("--peers: %w", err)
		}
	}
	itls, err := f.tls.load(log)
	if err != nil {
		return err
	}
	defer itls.close()
	lis, err := net.Listen("tcp", f.grpcAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	pcfg := placement.Config{ID: f.id, RaftAddr: f.raftAddr, GRPCAddr: f.grpcAddr,
		DataDir: f.dataDir, ClusterID: f.clusterID, Peers: peers, Logger: log}
	if itls != nil {
		pcfg.RaftStream = func(ln net.Listener, advertise net.Addr) raft.StreamLayer {
			return mtls.NewRaftStreamLayer(ln, advertise, itls.src, log)
		}
	}
	node, err := placement.Open(pcfg)
	if err != nil {
		lis.Close()
		return err
	}
	defer node.Close()
	svc := service.New(node, mcfg, log)
	defer svc.Close()
	obs, err := startObservability(ctx, &f.observe, "granary-placement", f.id, log)
	if err != nil {
		return err
	}
	defer obs.Close()
	placementGauges(obs, svc)
	var srvOpts []grpc.ServerOption
	if creds := itls.credentials("placement"); creds != nil {
		srvOpts = append(srvOpts, grpc.Creds(creds))
	}
	srv := grpc.NewServer(srvOpts...)
	pb.RegisterPlacementServer(srv, svc)
	go srv.Serve(lis)
	defer srv.Stop()

	if f.httpAddr != "" {
		hl, err := net.Listen("tcp", f.httpAddr)
		if err != nil {
			return fmt.Errorf("--http-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(svc.Status())
		})
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(hl)
		defer hs.Close()
	}
	fmt.Fprintf(stdout, "granary placement %s: raft %s, silos connect to %s", f.id, f.raftAddr, f.grpcAddr)
	if f.httpAddr != "" {
		fmt.Fprintf(stdout, ", status at http://%s/status", f.httpAddr)
	}
	if obs.addr != "" {
		fmt.Fprintf(stdout, ", metrics at http://%s/metrics", obs.addr)
	}
	fmt.Fprintln(stdout)
	select {
	case <-ctx.Done():
		log.Info("stopping placement node", "id", f.id)
		return nil
	case <-node.Done():
		return fmt.Errorf("placement node stopped: %w", node.Err())
	}
}

// placementGauges registers a placement node's metrics, read from its
// status at scrape time, and its dissemination rounds.
func placementGauges(obs *observability, svc *service.Service) {
	if obs.metrics == nil {
		return
	}
	obs.metrics.MustRegister(placementCollector{svc})
	svc.ObserveRounds(func(r membership.RoundStatus) { obs.metrics.RoundDone(r.Duration) })
}

var (
	placementTableVersion = prometheus.NewDesc("granary_placement_table_version", "Version of the latest placement table this node has applied.", nil, nil)
	placementMembers      = prometheus.NewDesc("granary_placement_members", "Silos in the latest placement table.", nil, nil)
	placementRaftState    = prometheus.NewDesc("granary_placement_raft_state", "1 for this node's Raft state (Follower, Candidate, Leader, Shutdown), 0 for the others.", []string{"state"}, nil)
	placementLeader       = prometheus.NewDesc("granary_placement_is_leader", "1 while this node leads placement (its Raft leadership taken up), else 0.", nil, nil)
	placementChanges      = prometheus.NewDesc("granary_placement_leader_changes_total", "Changes of Raft leader this node has seen since it started.", nil, nil)
	placementStreams      = prometheus.NewDesc("granary_placement_silo_streams", "Silo heartbeat streams open on this node.", nil, nil)
	placementDissem       = prometheus.NewDesc("granary_placement_disseminated_version", "Version of the last table a finished dissemination round carried (on the leader).", nil, nil)
)

type placementCollector struct{ svc *service.Service }

func (c placementCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{placementTableVersion, placementMembers, placementRaftState, placementLeader, placementChanges, placementStreams, placementDissem} {
		ch <- d
	}
}

func (c placementCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.svc.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(placementTableVersion, float64(st.Node.TableVersion))
	gauge(placementMembers, float64(st.Node.Members))
	for _, s := range []string{"Follower", "Candidate", "Leader", "Shutdown"} {
		v := 0.0
		if st.Node.State == s {
			v = 1
		}
		gauge(placementRaftState, v, s)
	}
	gauge(placementLeader, boolGauge(st.Node.Leading))
	ch <- prometheus.MustNewConstMetric(placementChanges, prometheus.CounterValue, float64(st.Node.LeaderChanges))
	gauge(placementStreams, float64(st.Streams))
	if st.Membership != nil {
		gauge(placementDissem, float64(st.Membership.Disseminated))
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
