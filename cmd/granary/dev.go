package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/actor/callback"
	"github.com/granaryhq/granary/blocks/components"
	"github.com/granaryhq/granary/gateway"
	"github.com/granaryhq/granary/internal/busypoll"
	"github.com/granaryhq/granary/internal/tracing"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/silo"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/boltstore"
)

// appFlag collects repeated --app-url values of the form [id=]URL.
type appFlag []appSpec

type appSpec struct{ id, url string }

func (a *appFlag) String() string {
	parts := make([]string, len(*a))
	for i, s := range *a {
		parts[i] = s.id + "=" + s.url
	}
	return strings.Join(parts, ",")
}

// nameApps gives every app without an id= one: appID for the first, and
// appID-2, appID-3... for the others. An ID given twice is an error.
func (a appFlag) nameApps(appID string) error {
	seen := map[string]bool{}
	for i := range a {
		if a[i].id == "" {
			a[i].id = appID
			if i > 0 {
				a[i].id = appID + "-" + strconv.Itoa(i+1)
			}
		}
		if seen[a[i].id] {
			return fmt.Errorf("--app-url: app id %q given twice", a[i].id)
		}
		seen[a[i].id] = true
	}
	return nil
}

func (a *appFlag) Set(v string) error {
	id, url := "", v
	if i := strings.Index(v, "="); i > 0 && !strings.Contains(v[:i], "://") {
		id, url = v[:i], v[i+1:]
	}
	if _, err := callback.ParseAppURL(url); err != nil {
		return err
	}
	*a = append(*a, appSpec{id: id, url: url})
	return nil
}

// hostFlags are the flags of every command that hosts actors (dev, silo):
// the gateway, the apps, logging and the timeouts.
type hostFlags struct {
	host           string
	httpPort       int
	apps           appFlag
	appID          string
	apiToken       string
	appToken       string
	logLevel       string
	logFormat      string
	maxBodySize    int
	turnWait       time.Duration
	appCallTimeout time.Duration
	shutdownGrace  time.Duration
	busyPoll       time.Duration
	resourcesPath  resourcesFlag
	grpcPort       portFlag
	appProtocol    string
	observe        observeFlags
	gatewayTLS     gatewayTLSFlags
}

func (f *hostFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.host, "http-host", "127.0.0.1", "address the gateway listens on (0.0.0.0 for all interfaces)")
	fs.IntVar(&f.httpPort, "http-port", 3500, "gateway HTTP port")
	fs.Var(&f.apps, "app-url", "base URL of an app serving actor callbacks, as [id=]http://host:port (repeatable)")
	fs.StringVar(&f.appID, "app-id", "app", "ID of the app given by a single --app-url without id=")
	fs.StringVar(&f.apiToken, "api-token", "", "require this token in the dapr-api-token header of every API call")
	fs.StringVar(&f.appToken, "app-token", "", "send this token as dapr-api-token on every call to apps")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.IntVar(&f.maxBodySize, "max-body-size", 4<<20, "largest request or app response body, in bytes")
	fs.DurationVar(&f.turnWait, "turn-wait-timeout", 60*time.Second, "longest a call waits for an actor's turn")
	fs.DurationVar(&f.appCallTimeout, "app-call-timeout", 60*time.Second, "longest one actor call to an app may take")
	fs.DurationVar(&f.shutdownGrace, "shutdown-timeout", 45*time.Second, "longest a clean shutdown may take before exiting anyway")
	fs.DurationVar(&f.busyPoll, "busy-poll", 100*time.Microsecond, "while at most one call is in flight, poll a socket this long for the next bytes before sleeping, which saves a wake-up on each hop of a call at the cost of that much CPU (0 turns it off; at most 1ms)")
	fs.StringVar(&f.appProtocol, "app-protocol", "http", "how the apps of --app-url are called: http, or grpc for apps that serve Dapr's gRPC app callbacks (service invocation and pub/sub; actors stay on HTTP); an --app-url of grpc://host:port is a gRPC app either way")
	f.grpcPort = portFlag{port: defaultGRPCPort}
	fs.Var(&f.grpcPort, "grpc-port", "port of Dapr's gRPC API (0 for none)")
	fs.Var(&f.resourcesPath, "resources-path", "directory of Dapr Component (state.*, pubsub.*) and Subscription YAML files (repeatable)")
	f.observe.register(fs)
	f.gatewayTLS.register(fs)
}

// resources reads the files under --resources-path.
func (f *hostFlags) resources(log *slog.Logger) (components.Resources, error) {
	res, err := components.Load(f.resourcesPath, log)
	if err != nil {
		return res, err
	}
	return res, res.Validate()
}

// sidecarAppID is the ID of the one app given with --app-url, the
// CloudEvent source of what the silo publishes; empty otherwise.
func (f *hostFlags) sidecarAppID() string {
	if len(f.apps) == 1 {
		return f.apps[0].id
	}
	return ""
}

// check validates the flags and names the apps.
func (f *hostFlags) check() error {
	if err := f.observe.check(); err != nil {
		return err
	}
	if err := f.gatewayTLS.check(); err != nil {
		return err
	}
	if f.httpPort < 0 || f.httpPort > 65535 {
		return fmt.Errorf("--http-port %d is not a port", f.httpPort)
	}
	if f.maxBodySize <= 0 {
		return fmt.Errorf("--max-body-size must be positive")
	}
	if f.busyPoll < 0 || f.busyPoll > busypoll.MaxBudget {
		return fmt.Errorf("--busy-poll %v: want 0 (off) up to %v", f.busyPoll, busypoll.MaxBudget)
	}
	switch f.appProtocol {
	case "http":
	case "grpc":
		for i := range f.apps {
			if rest, ok := strings.CutPrefix(f.apps[i].url, "http://"); ok {
				f.apps[i].url = "grpc://" + strings.TrimSuffix(rest, "/")
			}
		}
	default:
		return fmt.Errorf("--app-protocol %q: want http or grpc", f.appProtocol)
	}
	return f.apps.nameApps(f.appID)
}

// parseFlagSet parses args into fs, refusing positional arguments.
func parseFlagSet(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}

type devFlags struct {
	hostFlags
	dataDir    string
	stateStore string
	siloID     string
	takeOver   bool
	debugAddr  string
}

func parseDevFlags(args []string, stderr io.Writer) (*devFlags, error) {
	f := &devFlags{}
	fs := flag.NewFlagSet("granary dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.register(fs)
	fs.StringVar(&f.dataDir, "data-dir", "./.granary", "directory of the embedded state store")
	fs.StringVar(&f.stateStore, "state-store", "", "state store URL: empty for the embedded store under --data-dir, or redis://[user:pass@]host:port/db (rediss:// for TLS)")
	fs.StringVar(&f.siloID, "silo-id", "", "ID of this silo, naming it in the claims of its shards (default: the host name and --http-port, as host-3500)")
	fs.BoolVar(&f.takeOver, "take-over", false, "claim actor shards that another silo ID holds in a shared store (Redis), e.g. after changing --silo-id or --http-port; make sure that silo is gone. The embedded store always does, its file lock proving no other process uses it")
	fs.StringVar(&f.debugAddr, "debug-addr", "", "serve Go profiling endpoints (/debug/pprof/) on this address, e.g. 127.0.0.1:7070; off when empty")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: granary dev [flags]\n\nRuns a one-process Granary: one silo, the gateway and a state store.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := parseFlagSet(fs, args, stderr); err != nil {
		return nil, err
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	if f.siloID == "" {
		f.siloID = defaultSiloID(f.httpPort)
	}
	if err := checkSiloID(f.siloID); err != nil {
		return nil, fmt.Errorf("--silo-id %q: %w", f.siloID, err)
	}
	return f, nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	// A line logged with a traced context carries its trace and span IDs.
	case "text":
		return slog.New(tracing.LogHandler(slog.NewTextHandler(w, opts))), nil
	case "json":
		return slog.New(tracing.LogHandler(slog.NewJSONHandler(w, opts))), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseDevFlags(args, stderr)
	if err != nil {
		return err
	}
	// The gRPC API's Shutdown method stops the silo as a signal would.
	ctx, stopDev := context.WithCancel(ctx)
	defer stopDev()
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	gwTLS, err := f.gatewayTLS.config(log)
	if err != nil {
		return err
	}
	if f.debugAddr != "" {
		addr, err := serveDebug(f.debugAddr, log)
		if err != nil {
			return err
		}
		log.Info("profiling endpoints", "url", "http://"+addr+"/debug/pprof/")
	}

	res, err := f.resources(log)
	if err != nil {
		return err
	}
	obs, err := startObservability(ctx, &f.observe, "granary-dev", f.siloID, log)
	if err != nil {
		return err
	}
	defer obs.Close()
	rawStore, storeName, err := openStore(ctx, f.stateStore, f.dataDir, log)
	if err != nil {
		return err
	}
	defer rawStore.Close()

	placement, err := devPlacement(ctx, rawStore, f, log)
	if err != nil {
		return err
	}
	store := obs.store(rawStore, storeKind(storeName))
	rt, err := actor.New(actor.Config{Store: store, Placement: placement, Logger: log, TurnWait: f.turnWait,
		Observer: obs.actors(), Tracer: obs.tracer()})
	if err != nil {
		return err
	}
	obs.activeActors(rt)
	poller := busypoll.New(f.busyPoll)
	obs.busyPolls(poller)
	apps := callback.NewRegistry(rt, callback.Options{
		Token: f.appToken, CallTimeout: f.appCallTimeout, MaxResponseSize: f.maxBodySize, Logger: log,
		Observer: obs.apps(), Tracer: obs.tracer(), Poller: poller,
	})
	rem, err := startReminders(rt, store, false, obs, log)
	if err != nil {
		return err
	}
	var bks *blockSet
	s, err := silo.New(silo.Config{ID: f.siloID, Runtime: rt, Apps: apps, Reminders: rem, StoreName: storeName, Claim: placement.Held(), Logger: log,
		Blocks:        func() ([]silo.Component, []silo.Subscription) { return bks.Metadata() },
		Starting:      true,
		AppRegistered: func(ctx context.Context, appID, url string) { bks.SyncApp(ctx, appID, url) }})
	if err != nil {
		return err
	}
	gw := gateway.New(s, gateway.Config{APIToken: f.apiToken, MaxBodySize: f.maxBodySize, Logger: log,
		ObserveRequest: obs.requests(), Tracer: obs.tracer(), Poller: poller})
	bks, err = startBlocks(rt, store, gw, apps, nil, res, f.sidecarAppID(), f.apiToken, f.maxBodySize, log)
	if err != nil {
		return err
	}

	addr := net.JoinHostPort(f.host, strconv.Itoa(f.httpPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("gateway cannot listen on %s: %w (is another granary running? choose another --http-port)", addr, err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- gw.Serve(gatewayListener(ln, gwTLS)) }()
	stopGRPC, grpcAddr, err := startGRPC(&f.hostFlags, gw, bks, stopDev, obs, gwTLS, log)
	if err != nil {
		return err
	}

	for _, app := range f.apps {
		if err := apps.Register(ctx, app.id, app.url, false); err != nil {
			return err
		}
	}
	bks.SyncNow()
	claimHostedTypes(ctx, placement, rt, log)
	s.Started()
	printReady(stdout, scheme(gwTLS), ln.Addr().String(), grpcAddr, obs.addr, f, storeName, rt)

	select {
	case <-ctx.Done():
		log.Info("shutting down: draining actors")
	case err := <-serveErr:
		return fmt.Errorf("gateway stopped: %w", err)
	}
	done := make(chan struct{})
	go func() {
		shutdown(rt, apps, rem, gw, f.shutdownGrace, log)
		stopGRPC(5 * time.Second)
		bks.Close()
		close(done)
	}()
	select {
	case <-done:
		log.Info("stopped")
		return nil
	case <-time.After(f.shutdownGrace + 5*time.Second):
		return errors.New("shutdown did not finish in time; exiting anyway")
	}
}

// defaultSiloID is the host name and the gateway port, so that two dev
// silos on one machine (which need two ports) have two IDs: "host-3500".
// Characters a claim cannot carry become "-".
func defaultSiloID(port int) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	host = strings.Map(func(r rune) rune {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '_' || r == '-') {
			return r
		}
		return '-'
	}, host)
	return host + "-" + strconv.Itoa(port)
}

// checkSiloID refuses IDs a claim cannot carry.
func checkSiloID(id string) error {
	c := statestore.Claim{Cluster: devCluster(id), Silo: id, Incarnation: "x"}
	if err := c.Validate(); err != nil {
		return errors.New("want letters, digits and punctuation other than \"/\", without spaces")
	}
	return nil
}

// devCluster is the cluster of a dev silo: the silo alone.
func devCluster(siloID string) string { return "dev/" + siloID }

// devPlacement is the dev silo's placement: every shard, under a claim of
// its own cluster at a version one higher than its previous start's (kept
// in the store), so a restart wins the shards its crashed predecessor held,
// and a fresh incarnation, so nothing of that predecessor writes again. On
// the embedded store, whose file lock shuts out every other process, and with
// --take-over, the claims also win over other silos' records.
func devPlacement(ctx context.Context, store statestore.Store, f *devFlags, log *slog.Logger) (*actor.SingleSilo, error) {
	cluster := devCluster(f.siloID)
	version, err := statestore.NextVersion(ctx, store, statestore.ClusterVersionKey(cluster))
	if err != nil {
		return nil, fmt.Errorf("state store: counting this start of silo %s: %w", f.siloID, err)
	}
	claim := statestore.Claim{Cluster: cluster, Version: version, Silo: f.siloID, Incarnation: actor.NewIncarnation()}
	p := actor.NewSingleSilo(store, claim, log)
	_, embedded := store.(*boltstore.Store)
	if embedded || f.takeOver {
		p.TakeOver()
	}
	log.Info("silo claim", "silo", f.siloID, "cluster", cluster, "version", version, "incarnation", claim.Incarnation, "takeOver", embedded || f.takeOver)
	return p, nil
}

// claimHostedTypes claims the shards of the types the apps registered, so a
// refusal (another silo holds them) shows now: the placement logs it at
// error level, naming the holder, and their actors answer ERR_ACTOR_NO_ADDRESS.
// Types registered later, and the system types of the building blocks, are
// claimed on first use.
func claimHostedTypes(ctx context.Context, p *actor.SingleSilo, rt *actor.Runtime, log *slog.Logger) {
	var types []string
	for _, st := range rt.Stats() {
		// The building blocks' partitions are claimed as they are used:
		// most stores and topics use few of their shards.
		if !actor.IsSystemType(st.Type) {
			types = append(types, st.Type)
		}
	}
	if len(types) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.ClaimTypes(cctx, types...); errors.Is(err, statestore.ErrFenced) {
		log.Error("another silo holds actor shards in this store, and this one serves none of their actors: stop the other silo; if it is gone for good, start this one with --take-over", "err", err)
	} else if err != nil {
		log.Warn("claiming actor shards failed; they are claimed again on first use", "err", err)
	}
}

// shutdown drains in the order that loses nothing: reminders first (no new
// fires; fires in flight finish and their next due times are written), then
// the runtime (turns in flight finish, each type within its drain timeout,
// while the gateway stays up so they can still save state and call other
// actors; then every actor is deactivated), then the app probes, then the
// gateway, which closes connections still sending a request.
func shutdown(rt *actor.Runtime, apps *callback.Registry, rem *reminders.Service, gw *gateway.Server, grace time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if rem != nil {
		rem.Stop()
	}
	if err := rt.Close(ctx); err != nil {
		log.Warn("drain", "err", err)
	}
	apps.Close(ctx)
	if err := gw.Shutdown(ctx); err != nil {
		log.Warn("gateway shutdown", "err", err)
	}
}

func printReady(w io.Writer, scheme, addr, grpcAddr, metricsAddr string, f *devFlags, storeName string, rt *actor.Runtime) {
	host, port, _ := net.SplitHostPort(addr)
	if host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	base := scheme + "://" + net.JoinHostPort(host, port)
	fmt.Fprintf(w, "\nGranary dev is ready.\n  gateway:     %s\n", base)
	if grpcAddr != "" {
		fmt.Fprintf(w, "  gRPC API:    %s (DAPR_GRPC_PORT=%s for the Dapr SDKs)\n", grpcAddr, grpcAddr[strings.LastIndexByte(grpcAddr, ':')+1:])
	}
	if metricsAddr != "" {
		fmt.Fprintf(w, "  metrics:     http://%s/metrics\n", metricsAddr)
	}
	fmt.Fprintf(w, "  state store: %s\n", storeName)
	if len(f.apps) == 0 {
		fmt.Fprintf(w, "  apps:        none yet (register one: curl -X PUT %s/v1.0-alpha1/apps/myapp -d '{\"url\":\"http://127.0.0.1:3000\"}')\n", base)
	}
	for _, a := range f.apps {
		fmt.Fprintf(w, "  app:         %s at %s\n", a.id, a.url)
	}
	typ := "Counter"
	for _, st := range rt.Stats() {
		if !strings.HasPrefix(st.Type, actor.SystemTypePrefix) {
			typ = st.Type
			break
		}
	}
	fmt.Fprintf(w, "\nTry:\n  curl -X POST %s/v1.0/actors/%s/a/method/increment\n  curl %s/v1.0/metadata\n\n", base, typ, base)
}
