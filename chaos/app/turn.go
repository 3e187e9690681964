package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// turn is one call to an actor while it runs: what it needs to reach the
// gateway and what its history record will say.
type turn struct {
	app    *App
	ctx    context.Context
	typ    string
	id     string
	method string
	claim  string // the Granary-Activation header, as received
	// confirmed is the Granary-Claim-Confirmed header, 0 when absent.
	confirmed int64

	start   time.Time
	startNS int64 // start in Unix nanoseconds

	committed bool  // a transaction of the turn was acknowledged
	commitAt  int64 // when that transaction was sent
	sent      bool  // a transaction was sent, acknowledged or not
}

// stamp returns the time now in Unix nanoseconds, measured from the turn's
// start on the monotonic clock when there is one, so the times of a turn
// never run backwards even if the wall clock is stepped during it.
func (t *turn) stamp() int64 {
	elapsed := t.app.now().Sub(t.start)
	if elapsed < 0 {
		elapsed = 0
	}
	return t.startNS + int64(elapsed)
}

// Audit is the value of the audit key a write transaction upserts beside
// the data key it writes: the claim the turn ran under, when the
// transaction was sent (Unix nanoseconds) and the data key.
type Audit struct {
	Claim string `json:"claim"`
	At    int64  `json:"at"`
	Key   string `json:"key"`
}

// AuditKey is the state key of the audit record of the request req.
func AuditKey(req string) string { return "audit/" + req }

// stateOp is one operation of an actor state transaction.
type stateOp struct {
	Operation string       `json:"operation"`
	Request   stateRequest `json:"request"`
}

type stateRequest struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

func upsert(key string, value any) stateOp {
	return stateOp{Operation: "upsert", Request: stateRequest{Key: key, Value: value}}
}

// readInt reads key as an integer; nil when the actor has no such key.
func (t *turn) readInt(key string) (*int64, error) {
	body, found, err := t.app.gw.get(t.ctx, t.claim, t.typ, t.id, key)
	if err != nil || !found {
		return nil, err
	}
	var n *int64
	if err := json.Unmarshal(body, &n); err != nil {
		return nil, fmt.Errorf("state %q of %s/%s holds %s, not an integer: %w", key, t.typ, t.id, body, err)
	}
	return n, nil
}

// commit sends ops in one transaction together with the audit record of
// request req, which names dataKey. Once the gateway acknowledges it, the
// turn counts as committed at the time the transaction was sent.
func (t *turn) commit(req, dataKey string, ops ...stateOp) error {
	at := t.stamp()
	ops = append(ops, upsert(AuditKey(req), Audit{Claim: t.claim, At: at, Key: dataKey}))
	t.sent = true
	if err := t.app.gw.transact(t.ctx, t.claim, t.typ, t.id, ops); err != nil {
		return err
	}
	t.committed, t.commitAt = true, at
	return nil
}

// gateway calls the actor state API of the silo beside the app.
type gateway struct {
	base   string // without a trailing slash
	client *http.Client
}

// get reads one state key. found is false when the gateway answered 204.
func (g *gateway) get(ctx context.Context, claim, typ, id, key string) (body []byte, found bool, err error) {
	path := actorPath(typ, id) + "/state/" + url.PathEscape(key)
	status, body, err := g.do(ctx, http.MethodGet, path, claim, nil)
	if err != nil {
		return nil, false, fmt.Errorf("reading state %q of %s/%s: %w", key, typ, id, err)
	}
	switch status {
	case http.StatusOK:
		return body, true, nil
	case http.StatusNoContent:
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("reading state %q of %s/%s: gateway answered %d: %s", key, typ, id, status, body)
}

// transact applies ops atomically; any 2xx answer is success.
func (g *gateway) transact(ctx context.Context, claim, typ, id string, ops []stateOp) error {
	payload, err := json.Marshal(ops)
	if err != nil {
		return fmt.Errorf("encoding state transaction of %s/%s: %w", typ, id, err)
	}
	status, body, err := g.do(ctx, http.MethodPost, actorPath(typ, id)+"/state", claim, payload)
	if err != nil {
		return fmt.Errorf("state transaction of %s/%s: %w", typ, id, err)
	}
	if status < 200 || status > 299 {
		return fmt.Errorf("state transaction of %s/%s: gateway answered %d: %s", typ, id, status, body)
	}
	return nil
}

func actorPath(typ, id string) string {
	return "/v1.0/actors/" + url.PathEscape(typ) + "/" + url.PathEscape(id)
}

// do makes one call to the gateway and returns its status and body.
func (g *gateway) do(ctx context.Context, method, path, claim string, payload []byte) (int, []byte, error) {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.base+path, body)
	if err != nil {
		return 0, nil, fmt.Errorf("building request: %w", err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(HeaderActivation, claim)
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the gateway's answer: %w", err)
	}
	return resp.StatusCode, bytes.TrimSpace(data), nil
}
