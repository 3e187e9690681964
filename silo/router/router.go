// Package router tells a cluster silo's gateway where each actor runs: here,
// when the adopted table names this process and its shard is held under a
// fresh lease; at another silo, reached over the silo-to-silo service; or
// not yet, while a table is awaited or a shard handed over. It implements
// gateway.Cluster.
package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/gateway"
	"github.com/granaryhq/granary/placement/table"
	silopb "github.com/granaryhq/granary/proto/silo"
	"github.com/granaryhq/granary/silo/forward"
	"github.com/granaryhq/granary/silo/ownership"
)

// DefaultRoutingWindow bounds how long a call waits for a routable owner.
const DefaultRoutingWindow = 5 * time.Second

// Router routes by one silo's ownership record.
type Router struct {
	self   table.Owner
	own    *ownership.Ownership
	fwd    *forward.Client
	window time.Duration
	peers  map[string]string // silo ID → address to reach it at instead of its own
}

// New returns the router of silo process self. peerAddrs, which may be nil,
// maps a silo ID to the address this silo reaches it at instead of the
// internal address the silo advertises (a NAT, a proxy in between).
func New(self table.Owner, own *ownership.Ownership, fwd *forward.Client, window time.Duration, peerAddrs map[string]string) *Router {
	if window <= 0 {
		window = DefaultRoutingWindow
	}
	return &Router{self: self, own: own, fwd: fwd, window: window, peers: peerAddrs}
}

var _ gateway.Cluster = (*Router)(nil)

var errNoTable = errors.New("this silo has not received a placement table yet")

// Locate implements gateway.Cluster.
func (r *Router) Locate(id actor.ID) gateway.Location {
	t := r.own.Table()
	if t == nil {
		return gateway.Location{Wait: errNoTable}
	}
	m, ok := t.Owner(id.Type, id.ID)
	if !ok {
		return gateway.Location{Version: t.Version}
	}
	loc := gateway.Location{Version: t.Version, Hosted: true}
	if m.ID == r.self.ID && m.Incarnation == r.self.Incarnation {
		if _, err := r.own.Claim(context.Background(), id); err != nil {
			loc.Wait = err
			return loc
		}
		loc.Here = true
		return loc
	}
	if m.ID == r.self.ID {
		// The table still names an earlier process of this silo.
		loc.Wait = fmt.Errorf("the table names an earlier process of this silo (incarnation %s)", m.Incarnation)
		return loc
	}
	loc.Addr = m.InternalAddr
	if addr, ok := r.peers[m.ID]; ok {
		loc.Addr = addr
	}
	return loc
}

// TableVersion implements gateway.Cluster.
func (r *Router) TableVersion() uint64 {
	if t := r.own.Table(); t != nil {
		return t.Version
	}
	return 0
}

// Forward implements gateway.Cluster.
func (r *Router) Forward(ctx context.Context, addr string, version uint64, id actor.ID, req *fasthttp.Request) (*silopb.ForwardReply, error) {
	return r.fwd.Forward(ctx, addr, version, id.Type, id.ID, req)
}

// RoutingWindow implements gateway.Cluster.
func (r *Router) RoutingWindow() time.Duration { return r.window }

// AppSilos implements invoke.Peers: the internal addresses of the other
// silos whose apps include appID, in the table's order.
func (r *Router) AppSilos(appID string) []string {
	t := r.own.Table()
	if t == nil {
		return nil
	}
	var addrs []string
	for _, m := range t.Members {
		if m.ID == r.self.ID || !slices.Contains(m.AppIDs, appID) {
			continue
		}
		addr := m.InternalAddr
		if a, ok := r.peers[m.ID]; ok {
			addr = a
		}
		addrs = append(addrs, addr)
	}
	return addrs
}

// ForwardApp implements invoke.Peers: it sends a service invocation to the
// silo at addr.
func (r *Router) ForwardApp(ctx context.Context, addr string, req *fasthttp.Request) (*silopb.ForwardReply, error) {
	return r.fwd.Forward(ctx, addr, r.TableVersion(), "app", "invoke", req)
}
