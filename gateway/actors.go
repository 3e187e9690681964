package gateway

// The actor routes: /v1.0/actors/{type}/{id}/...

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/blocks"
	"github.com/granaryhq/granary/internal/httpheader"
	"github.com/granaryhq/granary/internal/stateinput"
	"github.com/granaryhq/granary/silo"
	"github.com/granaryhq/granary/statestore"
)

// actors serves /v1.0/actors/{type}/{id}/...; rest starts at {type}.
func (s *Server) actors(ctx *fasthttp.RequestCtx, method string, rest []string) *apiError {
	if e := validName("actor type", rest[0]); e != nil {
		return e
	}
	if e := validName("actor id", rest[1]); e != nil {
		return e
	}
	if blocks.IsSystemType(rest[0]) && isPublic(ctx) {
		return newError(http.StatusForbidden, codeBadRequest,
			fmt.Sprintf("actor type %q is a system type of the building blocks; use their API", rest[0]))
	}
	id := actor.ID{Type: rest[0], ID: rest[1]}
	call, e := s.actorCall(ctx, method, rest[2], rest[3:])
	if e != nil {
		return e
	}
	// Bad requests are answered here; a well-formed call runs where its
	// actor lives.
	return s.routeActor(ctx, id, call)
}

// actorOp is one kind of actor call.
type actorOp uint8

const (
	opInvoke actorOp = iota + 1
	opTransact
	opGetState
	opCreateReminder
	opGetReminder
	opDeleteReminder
	opCreateTimer
	opDeleteTimer
)

// actorCallOf is a checked actor call: its kind and its one argument (the
// method, state key, reminder or timer name).
type actorCallOf struct {
	op  actorOp
	arg string
}

// run serves the call on this silo.
func (s *Server) run(ctx *fasthttp.RequestCtx, id actor.ID, c actorCallOf) *apiError {
	switch c.op {
	case opInvoke:
		return s.invoke(ctx, id, c.arg)
	case opTransact:
		return s.transact(ctx, id)
	case opGetState:
		return s.getState(ctx, id, c.arg)
	case opCreateReminder:
		return s.createReminder(ctx, id, c.arg)
	case opGetReminder:
		return s.getReminder(ctx, id, c.arg)
	case opDeleteReminder:
		return s.deleteReminder(ctx, id, c.arg)
	case opCreateTimer:
		return s.createTimer(ctx, id, c.arg)
	case opDeleteTimer:
		return s.deleteTimer(ctx, id, c.arg)
	}
	return newError(http.StatusNotFound, codeNotFound, "no route for this actor call")
}

// actorCall checks an actor call's route and says which call it is.
func (s *Server) actorCall(ctx *fasthttp.RequestCtx, method string, kind string, tail []string) (actorCallOf, *apiError) {
	switch {
	case kind == "method" && len(tail) == 1:
		if e := onlyMethods(method, "GET", "POST", "PUT", "DELETE"); e != nil {
			return actorCallOf{}, e
		}
		if e := validName("method", tail[0]); e != nil {
			return actorCallOf{}, e
		}
		return actorCallOf{opInvoke, tail[0]}, nil
	case kind == "state" && len(tail) == 0:
		if e := onlyMethods(method, "POST", "PUT"); e != nil {
			return actorCallOf{}, e
		}
		return actorCallOf{op: opTransact}, nil
	case kind == "state" && len(tail) >= 1:
		if e := onlyMethods(method, "GET"); e != nil {
			return actorCallOf{}, e
		}
		return actorCallOf{opGetState, joinPath(tail)}, nil
	case kind == "reminders" && len(tail) == 1:
		if e := validName("reminder name", tail[0]); e != nil {
			return actorCallOf{}, e
		}
		switch method {
		case "POST", "PUT":
			return actorCallOf{opCreateReminder, tail[0]}, nil
		case "GET":
			return actorCallOf{opGetReminder, tail[0]}, nil
		case "DELETE":
			return actorCallOf{opDeleteReminder, tail[0]}, nil
		}
		return actorCallOf{}, notAllowed(method, "GET", "POST", "PUT", "DELETE")
	case kind == "timers" && len(tail) == 1:
		if e := validName("timer name", tail[0]); e != nil {
			return actorCallOf{}, e
		}
		switch method {
		case "POST", "PUT":
			return actorCallOf{opCreateTimer, tail[0]}, nil
		case "DELETE":
			return actorCallOf{opDeleteTimer, tail[0]}, nil
		}
		return actorCallOf{}, notAllowed(method, "POST", "PUT", "DELETE")
	}
	return actorCallOf{}, newError(http.StatusNotFound, codeNotFound, fmt.Sprintf("no route for %s %s", method, ctx.URI().PathOriginal()))
}

var (
	headerErrorResponse = []byte("X-DaprErrorResponseHeader")
	headerCookie        = []byte("Cookie")
	headerExpect        = []byte("Expect")
	expectContinue      = []byte("100-continue")
)

func (s *Server) invoke(ctx *fasthttp.RequestCtx, id actor.ID, method string) *apiError {
	req := actor.Request{
		Method:      method,
		Body:        ctx.PostBody(),
		ContentType: ctx.Request.Header.ContentType(),
		Query:       ctx.URI().QueryString(),
	}
	var hdr [16]actor.HeaderField
	req.Header = hdr[:0]
	var chain []byte
	var conn httpheader.Connection
	for k, v := range ctx.Request.Header.All() {
		if !httpheader.ValidName(k) {
			// fasthttp lets a space through; the app's server would refuse
			// the call, and the client see a 500 for its own mistake.
			return malformed(fmt.Sprintf("request header name %q is not a valid field name (RFC 9110 token)", k))
		}
		switch {
		case httpheader.IsConnection(k):
			conn.Add(v)
			continue
		case httpheader.HopByHop(k):
			if bytes.EqualFold(k, headerReentrancyID) {
				chain = v
			}
			continue
		case bytes.EqualFold(k, headerExpect):
			// fasthttp has answered 100-continue before reading the body;
			// the expectation ends here.
			if v = bytes.TrimSpace(v); len(v) > 0 && !bytes.EqualFold(v, expectContinue) {
				return newError(http.StatusExpectationFailed, codeExpectationFailed,
					fmt.Sprintf("Expect: %s cannot be met; the only expectation served is 100-continue", v))
			}
			continue
		case bytes.EqualFold(k, headerCookie):
			// fasthttp formats the cookies into a buffer it reuses during
			// the iteration; keep a copy.
			v = bytes.Clone(v)
		}
		req.Header = append(req.Header, actor.HeaderField{Name: k, Value: v})
	}
	if !conn.Empty() {
		// The fields the client's Connection fields name are meant for
		// this hop alone (RFC 9110 §7.6.1).
		req.Header = actor.DropHeaders(req.Header, conn.Names)
	}
	// Not the fasthttp request itself: its Done channel is the server's
	// shutdown signal, which means nothing to a turn, and a turn's context
	// derived from it would cost a goroutine per call (context.WithCancel
	// watches a parent it cannot hook into). fasthttp does not report a
	// client going away either, so nothing is lost.
	c := callContext(ctx, context.Background())
	if len(chain) > 0 {
		c = actor.WithCallChain(c, string(chain))
	}
	resp, err := s.backend.Invoke(c, id, &req)
	if err != nil {
		return runtimeError(err, codeInvoke)
	}
	defer resp.Release()
	if resp.Status != http.StatusOK && !hasHeader(resp.Header, headerErrorResponse) {
		return newError(http.StatusInternalServerError, codeInvoke,
			fmt.Sprintf("actor %s method %s: app answered status %d: %s", id, method, resp.Status, truncate(resp.Body, 1024)))
	}
	ctx.SetStatusCode(resp.Status)
	for _, h := range resp.Header {
		ctx.Response.Header.AddBytesKV(h.Name, h.Value)
	}
	if len(resp.ContentType) > 0 {
		ctx.Response.Header.SetContentTypeBytes(resp.ContentType)
	}
	ctx.Response.SetBody(resp.Body)
	return nil
}

var headerReentrancyID = []byte("Dapr-Reentrancy-Id")

func hasHeader(h []actor.HeaderField, name []byte) bool {
	for _, f := range h {
		if bytes.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

func (s *Server) transact(ctx *fasthttp.RequestCtx, id actor.ID) *apiError {
	ops, e := decodeTransaction(ctx.PostBody())
	if e != nil {
		return e
	}
	if len(ops) > 0 {
		if err := s.backend.Transact(callContext(ctx, ctx), id, ops); err != nil {
			return runtimeError(err, codeStateSave)
		}
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

func (s *Server) getState(ctx *fasthttp.RequestCtx, id actor.ID, key string) *apiError {
	if err := stateinput.ValidateKey(key); err != nil {
		return badRequest(fmt.Sprintf("state key %q %v", key, err))
	}
	item, err := s.backend.GetState(callContext(ctx, ctx), id, key)
	if errors.Is(err, statestore.ErrNotFound) {
		ctx.SetStatusCode(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return runtimeError(err, codeStateGet)
	}
	ctx.SetStatusCode(http.StatusOK)
	ctx.Response.Header.Set("ETag", item.ETag)
	ctx.SetContentType("application/json")
	ctx.SetBody(item.Value)
	return nil
}

func (s *Server) createTimer(ctx *fasthttp.RequestCtx, id actor.ID, name string) *apiError {
	b, e := decodeSchedule(ctx.PostBody())
	if e != nil {
		return e
	}
	err := s.backend.CreateTimer(ctx, id, silo.TimerRequest{
		Name: name, Callback: b.Callback, Data: b.Data, DueTime: b.DueTime, Period: b.Period, TTL: b.TTL,
	})
	if err != nil {
		return scheduleError(err, codeTimerCreate)
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

func (s *Server) deleteTimer(ctx *fasthttp.RequestCtx, id actor.ID, name string) *apiError {
	if err := s.backend.DeleteTimer(ctx, id, name); err != nil {
		return runtimeError(err, codeTimerCreate)
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

func (s *Server) createReminder(ctx *fasthttp.RequestCtx, id actor.ID, name string) *apiError {
	b, e := decodeSchedule(ctx.PostBody())
	if e != nil {
		return e
	}
	err := s.backend.CreateReminder(ctx, id, silo.ReminderRequest{
		Name: name, Data: b.Data, DueTime: b.DueTime, Period: b.Period, TTL: b.TTL,
	})
	if err != nil {
		if errors.Is(err, actor.ErrTypeNotHosted) {
			return newError(http.StatusForbidden, codeReminderNoHost, err.Error())
		}
		return scheduleError(err, codeReminderCreate)
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

func (s *Server) getReminder(ctx *fasthttp.RequestCtx, id actor.ID, name string) *apiError {
	info, err := s.backend.GetReminder(ctx, id, name)
	if errors.Is(err, statestore.ErrNotFound) {
		return newError(http.StatusNotFound, codeReminderNotFound, fmt.Sprintf("actor %s has no reminder %q", id, name))
	}
	if err != nil {
		if errors.Is(err, actor.ErrTypeNotHosted) {
			return newError(http.StatusForbidden, codeReminderNoHost, err.Error())
		}
		return runtimeError(err, codeReminderGet)
	}
	return writeJSON(ctx, http.StatusOK, info)
}

func (s *Server) deleteReminder(ctx *fasthttp.RequestCtx, id actor.ID, name string) *apiError {
	if err := s.backend.DeleteReminder(ctx, id, name); err != nil {
		if errors.Is(err, actor.ErrTypeNotHosted) {
			return newError(http.StatusForbidden, codeReminderNoHost, err.Error())
		}
		return runtimeError(err, codeReminderDelete)
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

// scheduleError maps schedule validation failures to 400 and the rest by the table.
func scheduleError(err error, fallback string) *apiError {
	var fe silo.InputError
	if errors.As(err, &fe) {
		return badRequest(err.Error())
	}
	return runtimeError(err, fallback)
}
