package callback

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/internal/httpheader"
	"github.com/granaryhq/granary/statestore"
)

// appType is an actor type served by an app.
type appType struct {
	app  *App
	name string
	pool *callPool // the connections its calls use
}

func (t *appType) Activate(_ context.Context, id actor.ID, claim statestore.Claim) (actor.Instance, error) {
	prefix := t.app.path + "/actors/" + url.PathEscape(id.Type) + "/" + url.PathEscape(id.ID)
	return &instance{app: t.app, pool: t.pool, id: id, prefix: prefix, claim: claim, activation: []byte(claim.String())}, nil
}

// AbortCalls fails every call in flight to the app on the type's
// connections (actor.CallAborter): the runtime calls it when the type's
// drain timeout passes.
func (t *appType) AbortCalls() { t.pool.abort() }

// instance is one activation of an app-served actor; it holds nothing but the
// address of the actor's callbacks and the claim it runs under.
type instance struct {
	app    *App
	pool   *callPool
	id     actor.ID
	prefix string // "{app path}/actors/{type}/{id}", escaped
	claim  statestore.Claim
	// activation is the Granary-Activation header value of every call:
	// the claim the activation was created under, as Claim.String.
	activation []byte
}

// Forwarded reports whether a header travels between client and app: it
// does unless it is hop-by-hop, describing one connection, or set by the
// silo itself (internal/httpheader has the list, Granary-Activation and
// Granary-Claim-Confirmed).
func Forwarded(name []byte) bool {
	return !httpheader.HopByHop(name) && !bytes.EqualFold(name, headerActivation) && !bytes.EqualFold(name, headerConfirmed)
}

var (
	// headerActivation names the claim an app's call runs under:
	// "<version>/<silo>/<incarnation>", the same for every call to one
	// activation and different for any other activation of the actor.
	headerActivation = []byte("Granary-Activation")
	// headerConfirmed is when, in Unix nanoseconds on the silo's clock, the
	// silo last confirmed its claim and lease before sending a turn's call:
	// a call that reaches the app much later was held up in the silo (a
	// paused process) and may arrive after the lease ran out.
	headerConfirmed  = []byte("Granary-Claim-Confirmed")
	headerReentrancy = []byte("Dapr-Reentrancy-Id")
	headerToken      = []byte("dapr-api-token")
	headerCancel     = []byte("X-DaprReminderCancel")
	jsonContentType  = []byte("application/json")
)

// call sends one PUT (or DELETE) to the app and returns its response, which the
// caller must release. With confirm (every call of a turn), it first checks
// that the silo still holds the activation's claim and its lease, sends
// nothing if not, and tells the app when it checked in
// Granary-Claim-Confirmed.
func (in *instance) call(ctx context.Context, confirm bool, method string, path []string, query []byte, header []actor.HeaderField, contentType []byte, reentrancyID string, body []byte) (*fasthttp.Response, error) {
	a := in.app
	var confirmed int64
	if confirm {
		confirmed = a.reg.opts.Clock.Now().UnixNano()
		if err := a.reg.rt.ConfirmClaim(ctx, in.id, in.claim); err != nil {
			return nil, err
		}
	}
	req := fasthttp.AcquireRequest() // do releases it
	req.Header.SetMethod(method)
	uri := req.URI()
	pathBuf := append(req.Header.RequestURI()[:0], in.prefix...)
	for _, p := range path {
		pathBuf = append(pathBuf, '/')
		pathBuf = append(pathBuf, p...)
	}
	uri.DisablePathNormalizing = true
	uri.SetPathBytes(pathBuf)
	if len(query) > 0 {
		uri.SetQueryStringBytes(query)
	}
	req.Header.SetHost(a.host)
	// Keep the Host header: the URI built above has no host, and without this
	// the request would go out with an empty Host, which HTTP/1.1 servers refuse.
	req.UseHostHeader = true
	for _, h := range header {
		if Forwarded(h.Name) {
			req.Header.AddBytesKV(h.Name, h.Value)
		}
	}
	req.Header.SetBytesKV(headerActivation, in.activation)
	if confirm {
		var buf [20]byte
		req.Header.SetBytesKV(headerConfirmed, strconv.AppendInt(buf[:0], confirmed, 10))
	}
	if reentrancyID != "" {
		req.Header.SetBytesKV(headerReentrancy, []byte(reentrancyID))
	}
	if a.reg.opts.Token != "" {
		req.Header.SetBytesK(headerToken, a.reg.opts.Token)
	}
	if len(contentType) > 0 {
		req.Header.SetContentTypeBytes(contentType)
	} else if body != nil {
		req.Header.SetContentTypeBytes(jsonContentType)
	}
	req.SetBodyRaw(body)

	timeout := a.reg.opts.CallTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, d.Sub(a.reg.opts.Clock.Now()))
	}
	var span trace.Span
	if a.reg.opts.Tracer != nil {
		span = in.startCallSpan(ctx, method, req)
	}
	sent := time.Now()
	resp, err := in.pool.do(ctx, req, timeout)
	status := 0
	if err == nil {
		status = resp.StatusCode()
	}
	a.obs.Called(time.Since(sent), status, err)
	if span != nil {
		endCallSpan(span, status, err)
	}
	if err != nil {
		if isTimeout(err) {
			return nil, fmt.Errorf("calling app %s at %s: no answer within %v: %w", a.id, a.base, timeout, actor.ErrAppTimeout)
		}
		return nil, fmt.Errorf("calling app %s at %s: %w", a.id, a.base, err)
	}
	return resp, nil
}

func (in *instance) Invoke(ctx context.Context, r *actor.Request) (*actor.Response, error) {
	resp, err := in.call(ctx, true, fasthttp.MethodPut, []string{"method", url.PathEscape(r.Method)}, r.Query, r.Header, r.ContentType, r.ReentrancyID, r.Body)
	if err != nil {
		return nil, err
	}
	// Report the app's content type only: none sent means none, not fasthttp's default.
	resp.Header.SetNoDefaultContentType(true)
	out := &actor.Response{
		Status:      resp.StatusCode(),
		Body:        resp.Body(),
		ContentType: resp.Header.ContentType(),
	}
	// Pass on only what the client may see: no name that is not a token
	// (fasthttp lets a space through, which would break the client's
	// response), nothing hop-by-hop, and nothing the app's Connection
	// fields mark as meant for this hop alone.
	var conn httpheader.Connection
	for k, v := range resp.Header.All() {
		if httpheader.IsConnection(k) {
			conn.Add(v)
			continue
		}
		if httpheader.ValidName(k) && Forwarded(k) {
			out.Header = append(out.Header, actor.HeaderField{Name: k, Value: v})
		}
	}
	if !conn.Empty() {
		out.Header = actor.DropHeaders(out.Header, conn.Names)
	}
	out.SetRelease(func() { fasthttp.ReleaseResponse(resp) })
	return out, nil
}

// reminderBody is what the app receives for a reminder or timer.
type callbackBody struct {
	Data     rawJSON `json:"data"`
	Callback string  `json:"callback,omitempty"`
	DueTime  string  `json:"dueTime"`
	Period   string  `json:"period"`
}

func (in *instance) Remind(ctx context.Context, r *actor.ReminderCall) (bool, error) {
	body, err := marshal(callbackBody{Data: rawJSON(r.Data), DueTime: r.DueTime, Period: r.Period})
	if err != nil {
		return false, err
	}
	resp, err := in.call(ctx, true, fasthttp.MethodPut, []string{"method", "remind", url.PathEscape(r.Name)}, nil, nil, nil, "", body)
	if err != nil {
		return false, err
	}
	defer fasthttp.ReleaseResponse(resp)
	if code := resp.StatusCode(); code != fasthttp.StatusOK {
		return false, fmt.Errorf("app %s: reminder %q of %s: status %d: %s", in.app.id, r.Name, in.id, code, truncate(resp.Body(), 200))
	}
	cancel := bytes.EqualFold(bytes.TrimSpace(resp.Header.PeekBytes(headerCancel)), []byte("true"))
	return cancel, nil
}

func (in *instance) Timer(ctx context.Context, t *actor.TimerCall) error {
	body, err := marshal(callbackBody{Data: rawJSON(t.Data), Callback: t.Callback, DueTime: t.DueTime, Period: t.Period})
	if err != nil {
		return err
	}
	resp, err := in.call(ctx, true, fasthttp.MethodPut, []string{"method", "timer", url.PathEscape(t.Name)}, nil, nil, nil, "", body)
	if err != nil {
		return err
	}
	defer fasthttp.ReleaseResponse(resp)
	if code := resp.StatusCode(); code != fasthttp.StatusOK {
		return fmt.Errorf("app %s: timer %q of %s: status %d: %s", in.app.id, t.Name, in.id, code, truncate(resp.Body(), 200))
	}
	return nil
}

func (in *instance) Deactivate(ctx context.Context) error {
	// A deactivation needs no claim: the old owner of a shard drains it.
	resp, err := in.call(ctx, false, fasthttp.MethodDelete, nil, nil, nil, nil, "", nil)
	if err != nil {
		return err
	}
	defer fasthttp.ReleaseResponse(resp)
	if code := resp.StatusCode(); code != fasthttp.StatusOK {
		return fmt.Errorf("app %s: deactivating %s: status %d", in.app.id, in.id, code)
	}
	return nil
}
