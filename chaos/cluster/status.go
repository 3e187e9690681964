package cluster

// What the cluster's processes say of themselves: the placement leader, the
// table each silo serves, and the silos' lease spans.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/granaryhq/granary/chaos/history"
)

func (c *Cluster) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

type nodeStatus struct {
	Node struct {
		Leading      bool
		TableVersion uint64
	} `json:"node"`
}

// Leader returns the node that says it leads, or nil when none answers so.
func (c *Cluster) Leader(ctx context.Context) *Node {
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		var st nodeStatus
		if c.getJSON(ctx, n.StatusURL, &st) == nil && st.Node.Leading {
			return n
		}
	}
	return nil
}

// siloMetadata is the part of a silo's GET /v1.0/metadata the suite reads.
type siloMetadata struct {
	Placement struct {
		TableVersion uint64   `json:"tableVersion"`
		Members      []string `json:"members"`
		Incarnation  string   `json:"incarnation"`
		Lease        *bool    `json:"lease"`
		LeaseSpans   []struct {
			From  int64 `json:"from"`
			Until int64 `json:"until"`
		} `json:"leaseSpans"`
	} `json:"placement"`
}

func (c *Cluster) metadata(ctx context.Context, s *Silo) (siloMetadata, error) {
	var md siloMetadata
	err := c.getJSON(ctx, s.GatewayURL()+"/v1.0/metadata", &md)
	return md, err
}

// AwaitStable waits until every running silo answers, holds a lease and
// serves one table whose members are exactly the running silos, or until
// timeout; it returns what it last saw when it gives up.
func (c *Cluster) AwaitStable(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		last = c.stable(ctx)
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not stable after %v: %w", timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *Cluster) stable(ctx context.Context) error {
	var want []string
	var running []*Silo
	for _, s := range c.silos {
		if s.Running() {
			want = append(want, s.Name)
			running = append(running, s)
		}
	}
	slices.Sort(want)
	var version uint64
	for _, s := range running {
		md, err := c.metadata(ctx, s)
		if err != nil {
			return err
		}
		p := md.Placement
		members := slices.Sorted(slices.Values(p.Members))
		switch {
		case p.Lease == nil || !*p.Lease:
			return fmt.Errorf("%s holds no lease", s.Name)
		case !slices.Equal(members, want):
			return fmt.Errorf("%s serves table %d of %v, want members %v", s.Name, p.TableVersion, members, want)
		case version != 0 && p.TableVersion != version:
			return fmt.Errorf("silos serve tables %d and %d", version, p.TableVersion)
		}
		version = p.TableVersion
	}
	return nil
}

// LeaseLog gathers the silos' lease spans while the run goes on: each silo
// remembers only its latest spans, so Poll must run often enough (every
// second is plenty) to see each one.
type LeaseLog struct {
	mu    sync.Mutex
	spans map[leaseKey]int64 // → latest until seen
}

type leaseKey struct {
	silo, incarnation string
	from              int64
}

// NewLeaseLog returns an empty log.
func NewLeaseLog() *LeaseLog { return &LeaseLog{spans: map[leaseKey]int64{}} }

// Poll reads every running silo's lease spans once.
func (l *LeaseLog) Poll(ctx context.Context, c *Cluster) {
	for _, s := range c.silos {
		if !s.Running() {
			continue
		}
		md, err := c.metadata(ctx, s)
		if err != nil || md.Placement.Incarnation == "" {
			continue
		}
		l.mu.Lock()
		for _, sp := range md.Placement.LeaseSpans {
			k := leaseKey{s.Name, md.Placement.Incarnation, sp.From}
			l.spans[k] = max(l.spans[k], sp.Until)
		}
		l.mu.Unlock()
	}
}

// Leases returns the spans seen, as history records. A span's until is
// the expiry its silo last reported: a process killed or frozen before
// reporting a later extension is recorded as holding less than it did,
// never more.
func (l *LeaseLog) Leases() []history.Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]history.Lease, 0, len(l.spans))
	for k, until := range l.spans {
		out = append(out, history.Lease{Silo: k.silo, Incarnation: k.incarnation, From: k.from, Until: until})
	}
	slices.SortFunc(out, func(a, b history.Lease) int {
		if a.From != b.From {
			return int(a.From - b.From)
		}
		return 0
	})
	return out
}
