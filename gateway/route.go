package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
	silopb "github.com/granaryhq/granary/proto/silo"
	"github.com/granaryhq/granary/silo/forward"
)

// Cluster is the gateway's view of a multi-silo cluster: where an actor runs
// and how to reach another silo. A gateway without one serves every call
// itself.
type Cluster interface {
	// Locate says where id runs under this silo's table now.
	Locate(id actor.ID) Location
	// TableVersion is the version of this silo's adopted table.
	TableVersion() uint64
	// Forward sends req, for id, to the silo at addr. An error wrapping
	// forward.ErrUnreachable means the owner could not be reached.
	Forward(ctx context.Context, addr string, version uint64, id actor.ID, req *fasthttp.Request) (*silopb.ForwardReply, error)
	// RoutingWindow bounds how long a call waits for a routable owner.
	RoutingWindow() time.Duration
}

// Location is where an actor runs.
type Location struct {
	// Here: this silo owns the actor and may run it now.
	Here bool
	// Addr is the owner's internal address when another silo owns it.
	Addr string
	// Version is the table version the location was read from.
	Version uint64
	// Hosted is false when no member of the table hosts the actor's type.
	Hosted bool
	// Wait, when set, says why the call cannot be routed yet (no table,
	// a hand-over, no lease); the gateway retries within the routing window.
	Wait error
}

// forwardSlack is how long a forwarded call may run past the routing
// window: the owner's turn, bounded there by its own turn-wait and app-call
// timeouts.
const forwardSlack = 2 * time.Minute

// routeRetry is the pause between two routing attempts within the window.
const routeRetry = 10 * time.Millisecond

// routeActor runs an actor call where its actor lives: here, or forwarded
// once to its owner. It retries within the routing window while the actor
// is being handed over or the tables disagree; a local call that fails only
// because this silo no longer owns the actor is routed again.
//
// Actor state calls are never routed: they come from the app beside this
// silo during a turn that runs here, and the local runtime refuses them
// for an actor it does not run. Forwarding one would let a turn still
// running on the old owner write through the new owner's activation. While
// this silo is suspended (its lease lapsed for a moment) a state call waits,
// within the routing window, for it to resume.
func (s *Server) routeActor(ctx *fasthttp.RequestCtx, id actor.ID, call actorCallOf) *apiError {
	c := s.cluster
	if c == nil {
		return s.run(ctx, id, call)
	}
	if call.op == opTransact || call.op == opGetState {
		deadline := time.Now().Add(c.RoutingWindow())
		for {
			e := s.run(ctx, id, call)
			if e == nil || !errors.Is(e.cause, actor.ErrSuspended) || !time.Now().Before(deadline) {
				return e
			}
			time.Sleep(routeRetry)
		}
	}
	// Only the silo-to-silo service marks a request forwarded; the header
	// means nothing on a connection of the public listener.
	public := isPublic(ctx)
	forwarded := !public && len(ctx.Request.Header.Peek(forward.HeaderForwarded)) > 0
	deadline := time.Now().Add(c.RoutingWindow())
	var last error
	for {
		loc := c.Locate(id)
		switch {
		case loc.Wait != nil:
			last = loc.Wait
		case loc.Here:
			e := s.run(ctx, id, call)
			if e == nil || !errors.Is(e.cause, actor.ErrNotOwner) {
				return e
			}
			last = e
		case !loc.Hosted:
			last = fmt.Errorf("no silo hosts actor type %q", id.Type)
		case forwarded:
			// Forwarded once already: bounce it with our version so the
			// sender catches up rather than forwarding it again.
			ctx.Response.Reset()
			ctx.Response.Header.Set(forward.HeaderNotOwner, strconv.FormatUint(loc.Version, 10))
			ctx.SetStatusCode(http.StatusConflict)
			return nil
		default:
			rctx, cancel := context.WithDeadline(callContext(ctx, context.Background()), deadline.Add(s.forwardSlack))
			reply, err := c.Forward(rctx, loc.Addr, loc.Version, id, &ctx.Request)
			cancel()
			switch {
			case errors.Is(err, forward.ErrOutcomeUnknown):
				// The owner may have run it: another attempt could run
				// it twice.
				return newError(http.StatusServiceUnavailable, codeRuntimeClosed, fmt.Sprintf("actor %s: %v", id, err))
			case err != nil:
				last = err
			case reply.GetNotOwnerVersion() != 0:
				last = fmt.Errorf("the silo at %s does not own the actor under table version %d", loc.Addr, reply.GetNotOwnerVersion())
				s.awaitVersion(reply.GetNotOwnerVersion(), deadline)
			default:
				// Reset first: a local attempt may have left a response behind.
				ctx.Response.Reset()
				forward.WriteReply(ctx, reply)
				return nil
			}
		}
		if !time.Now().Before(deadline) {
			if !loc.Hosted && loc.Wait == nil {
				return newError(http.StatusNotFound, codeNoAddress, fmt.Sprintf("actor %s: %v", id, last))
			}
			return newError(http.StatusServiceUnavailable, codeRuntimeClosed,
				fmt.Sprintf("actor %s: no silo could serve it within the routing window of %v: %v", id, c.RoutingWindow(), last))
		}
		time.Sleep(routeRetry)
	}
}

// awaitVersion waits until this silo's table reaches version or deadline.
func (s *Server) awaitVersion(version uint64, deadline time.Time) {
	for s.cluster.TableVersion() < version && time.Now().Before(deadline) {
		time.Sleep(routeRetry)
	}
}
