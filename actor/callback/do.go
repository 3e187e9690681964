package callback

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// do sends req to the app and returns its response, which the caller
// releases. It takes req and releases it. It returns when the app answers,
// the timeout passes, or ctx ends, whichever comes first: a turn aborted at
// its type's drain timeout (or a reminder fire cancelled at shutdown) must
// not wait for an app that never answers.
//
// fasthttp cannot abandon a request in flight, so when ctx can end the
// request runs in a goroutine of its own; if ctx ends first the caller is
// answered at once and that goroutine releases req and resp once the app
// answers or the timeout passes. The goroutine costs well under a microsecond
// per call (BenchmarkInvoke), next to tens for the round trip.
func (a *App) do(ctx context.Context, req *fasthttp.Request, timeout time.Duration) (*fasthttp.Response, error) {
	if timeout <= 0 {
		fasthttp.ReleaseRequest(req)
		return nil, fmt.Errorf("no time left for the call (%w)", fasthttp.ErrTimeout)
	}
	if ctx.Done() == nil {
		resp := fasthttp.AcquireResponse()
		err := a.hc.DoTimeout(req, resp, timeout)
		fasthttp.ReleaseRequest(req)
		if err != nil {
			fasthttp.ReleaseResponse(resp)
			return nil, err
		}
		return resp, nil
	}
	c := pendingCalls.Get().(*pendingCall)
	c.req, c.resp = req, fasthttp.AcquireResponse()
	go c.run(a.hc, timeout)
	select {
	case err := <-c.done:
		return c.finish(err)
	case <-ctx.Done():
		if c.state.CompareAndSwap(callRunning, callAbandoned) {
			return nil, fmt.Errorf("call abandoned: %w", context.Cause(ctx))
		}
		// The answer came in as ctx ended: take it.
		return c.finish(<-c.done)
	}
}

// pendingCall is a request running in its own goroutine.
type pendingCall struct {
	req   *fasthttp.Request
	resp  *fasthttp.Response
	done  chan error // buffered; receives the outcome unless abandoned
	state atomic.Int32
}

const (
	callRunning int32 = iota
	callAnswered
	callAbandoned
)

var pendingCalls = sync.Pool{New: func() any { return &pendingCall{done: make(chan error, 1)} }}

func (c *pendingCall) run(hc *fasthttp.HostClient, timeout time.Duration) {
	err := hc.DoTimeout(c.req, c.resp, timeout)
	if c.state.CompareAndSwap(callRunning, callAnswered) {
		c.done <- err
		return
	}
	// The caller gave up: the request and response are ours to release.
	fasthttp.ReleaseRequest(c.req)
	fasthttp.ReleaseResponse(c.resp)
	c.reset()
}

// finish hands the response to the caller and recycles c.
func (c *pendingCall) finish(err error) (*fasthttp.Response, error) {
	resp := c.resp
	fasthttp.ReleaseRequest(c.req)
	c.reset()
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, err
	}
	return resp, nil
}

func (c *pendingCall) reset() {
	c.req, c.resp = nil, nil
	c.state.Store(callRunning)
	pendingCalls.Put(c)
}

// isTimeout reports whether err is fasthttp's timeout.
func isTimeout(err error) bool { return errors.Is(err, fasthttp.ErrTimeout) }
