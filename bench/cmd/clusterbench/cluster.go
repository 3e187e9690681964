package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/placement/membership"
	"github.com/granaryhq/granary/placement/ring"
)

// actorType is the type the echo app serves.
const actorType = "Echo"

// clusterSilos is the number of silos of parts 2 and 3.
const clusterSilos = 3

// Layers of processes: a layer is stopped after the layers above it, its
// processes in parallel.
const (
	layerApps = iota
	layerPlacement
	layerSilos
)

// fleet is the processes of one setup, started in layers.
type fleet struct {
	dir      string // logs and data
	progress func(format string, args ...any)
	log      io.Writer // where logs are quoted on failure
	grace    time.Duration
	layers   [layerSilos + 1][]*benchproc.Process
}

// start runs bin and waits until method url answers status; the process
// belongs to layer and is stopped with it.
func (f *fleet) start(ctx context.Context, layer int, name, bin string, args []string, method, url string, status int, timeout time.Duration) (*benchproc.Process, error) {
	p, err := benchproc.Start(name, f.dir, bin, nil, args...)
	if err != nil {
		return nil, err
	}
	f.layers[layer] = append(f.layers[layer], p)
	began := time.Now()
	if err := p.WaitForStatus(ctx, method, url, status, timeout); err != nil {
		return p, fmt.Errorf("%s not ready: %w", name, err)
	}
	f.progress("%s ready (pid %d) after %v", name, p.Pid(), time.Since(began).Round(time.Millisecond))
	return p, nil
}

// quoteLogs writes the last lines of every process's log.
func (f *fleet) quoteLogs() {
	for _, layer := range f.layers {
		for _, p := range layer {
			fmt.Fprintf(f.log, "--- last lines of %s's log (%s) ---\n%s\n", p.Name, p.LogPath, p.Tail(20))
		}
	}
}

// stop stops the silos, then placement, then the apps; the processes of a
// layer in parallel. Processes already gone (a killed silo) are skipped.
func (f *fleet) stop() {
	for i := len(f.layers) - 1; i >= 0; i-- {
		var wg sync.WaitGroup
		for _, p := range f.layers[i] {
			wg.Go(func() {
				if err := p.Stop(f.grace); err != nil {
					fmt.Fprintln(f.log, "clusterbench:", err)
				}
			})
		}
		wg.Wait()
		f.layers[i] = nil
	}
}

// siloProc is one `granary silo` and its echo app.
type siloProc struct {
	id           string
	httpAddr     string // the gateway, host:port
	internalAddr string
	proc, app    *benchproc.Process
}

func (s *siloProc) base() string { return "http://" + s.httpAddr }

// cluster is a placement node and silos on one Redis database.
type cluster struct {
	*fleet
	o             options
	placementGRPC string
	silos         []*siloProc
	client        *http.Client // for everything but the measured loads
}

func localAddr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// startPlacement starts a one-node placement service.
func (c *cluster) startPlacement(ctx context.Context) error {
	ports, err := benchproc.FreePorts(3)
	if err != nil {
		return err
	}
	raft, grpcAddr, httpAddr := localAddr(ports[0]), localAddr(ports[1]), localAddr(ports[2])
	dataDir := filepath.Join(c.dir, "placement-p1")
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		return fmt.Errorf("placement data directory: %w", err)
	}
	_, err = c.start(ctx, layerPlacement, "placement-p1", c.o.granary, []string{"placement",
		"--id", "p1", "--raft-addr", raft, "--grpc-addr", grpcAddr, "--http-addr", httpAddr,
		"--data-dir", dataDir, "--peers", "p1=" + raft,
		"--faulty-host-timeout", membership.DefaultFaultyHostTimeout.String(), "--log-level", "warn"},
		"GET", "http://"+httpAddr+"/status", http.StatusOK, 15*time.Second)
	if err != nil {
		return err
	}
	c.placementGRPC = grpcAddr
	return nil
}

// addSilo starts an echo app and a silo in front of it.
func (c *cluster) addSilo(ctx context.Context, id string) (*siloProc, error) {
	ports, err := benchproc.FreePorts(3)
	if err != nil {
		return nil, err
	}
	s := &siloProc{id: id, httpAddr: localAddr(ports[0]), internalAddr: localAddr(ports[1])}
	appAddr := localAddr(ports[2])
	s.app, err = c.start(ctx, layerApps, "echoapp-"+id, c.o.echoapp, []string{"--port", strconv.Itoa(ports[2])},
		"GET", "http://"+appAddr+"/healthz", http.StatusOK, 10*time.Second)
	if err != nil {
		return nil, err
	}
	s.proc, err = c.start(ctx, layerSilos, "silo-"+id, c.o.granary, []string{"silo",
		"--id", id, "--placement", c.placementGRPC, "--http-port", strconv.Itoa(ports[0]),
		"--internal-addr", s.internalAddr, "--state-store", c.o.redisURL, "--app-url", "http://" + appAddr,
		"--shutdown-timeout", "10s", "--log-level", "warn"},
		"GET", s.base()+"/v1.0/healthz", http.StatusNoContent, 15*time.Second)
	if err != nil {
		return nil, err
	}
	c.silos = append(c.silos, s)
	return s, nil
}

// siloIDs returns the IDs of the given silos.
func siloIDs(silos []*siloProc) []string {
	ids := make([]string, len(silos))
	for i, s := range silos {
		ids[i] = s.id
	}
	return ids
}

// placementView is the placement part of a silo's GET /v1.0/metadata.
type placementView struct {
	TableVersion uint64                    `json:"tableVersion"`
	Members      []string                  `json:"members"`
	Lease        *bool                     `json:"lease"`
	Shards       map[string]map[string]int `json:"shards"`
}

// siloMetadata is what the benchmark reads of GET /v1.0/metadata.
type siloMetadata struct {
	ID     string `json:"id"`
	Actors []struct {
		Type  string `json:"type"`
		Count int    `json:"count"`
	} `json:"actors"`
	Placement placementView `json:"placement"`
}

// active returns the silo's active actors of a type.
func (m siloMetadata) active(actorType string) int {
	for _, a := range m.Actors {
		if a.Type == actorType {
			return a.Count
		}
	}
	return 0
}

func (c *cluster) metadata(ctx context.Context, s *siloProc) (siloMetadata, error) {
	var md siloMetadata
	body, err := benchproc.Call(ctx, c.client, "GET", s.base()+"/v1.0/metadata", "", http.StatusOK)
	if err != nil {
		return md, fmt.Errorf("metadata of %s: %w", s.id, err)
	}
	if err := json.Unmarshal(body, &md); err != nil {
		return md, fmt.Errorf("metadata of %s: %w", s.id, err)
	}
	return md, nil
}

// checkSettled says why the silos' views of placement are not yet settled,
// or nil when they are: every view has the same table, which lists exactly
// members, holds a lease, and together they hold all ring.Shards shards of
// actorType.
func checkSettled(views map[string]placementView, members []string, actorType string) error {
	if len(views) != len(members) {
		return fmt.Errorf("%d silos answered, want %d", len(views), len(members))
	}
	want := slices.Sorted(slices.Values(members))
	var version uint64
	held := 0
	for _, id := range want {
		v, ok := views[id]
		if !ok {
			return fmt.Errorf("no view of %s", id)
		}
		got := slices.Sorted(slices.Values(v.Members))
		switch {
		case v.TableVersion == 0:
			return fmt.Errorf("%s has no table yet", id)
		case version != 0 && v.TableVersion != version:
			return fmt.Errorf("%s has table v%d, another silo v%d", id, v.TableVersion, version)
		case !slices.Equal(got, want):
			return fmt.Errorf("%s's table v%d lists members %v, want %v", id, v.TableVersion, got, want)
		case v.Lease == nil || !*v.Lease:
			return fmt.Errorf("%s holds no lease", id)
		}
		version = v.TableVersion
		held += v.Shards[actorType]["held"]
	}
	if held != ring.Shards {
		return fmt.Errorf("the silos hold %d of the %d shards of %s", held, ring.Shards, actorType)
	}
	return nil
}

// waitSettled polls the silos' metadata until checkSettled is content, and
// returns the table version they agree on.
func (c *cluster) waitSettled(ctx context.Context, silos []*siloProc) (uint64, error) {
	deadline := time.Now().Add(c.o.settleTimeout)
	members := siloIDs(silos)
	for {
		views := map[string]placementView{}
		var err error
		for _, s := range silos {
			var md siloMetadata
			if md, err = c.metadata(ctx, s); err != nil {
				break
			}
			views[s.id] = md.Placement
		}
		if err == nil {
			if err = checkSettled(views, members, actorType); err == nil {
				return views[members[0]].TableVersion, nil
			}
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("silos %s did not settle within %v: %w", strings.Join(members, ", "), c.o.settleTimeout, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// actorsOwnedBy returns n actor IDs prefix0, prefix1, … of actorType that
// the ring gives to owner, each in a shard of its own.
func actorsOwnedBy(r *ring.Ring, actorType, owner, prefix string, n int) ([]string, error) {
	var ids []string
	shards := map[ring.Shard]bool{}
	for k := 0; len(ids) < n && k < 1000*n+10000; k++ {
		id := prefix + strconv.Itoa(k)
		if o, ok := r.OwnerOf(actorType, id); !ok || o != owner {
			continue
		}
		if s := ring.ShardOf(actorType, id); !shards[s] {
			shards[s] = true
			ids = append(ids, id)
		}
	}
	if len(ids) < n {
		return ids, fmt.Errorf("found only %d of %d actors of %s owned by %s among %v", len(ids), n, actorType, owner, r.Members())
	}
	return ids, nil
}
