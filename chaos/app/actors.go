package app

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/granaryhq/granary/chaos/history"
)

// method runs one actor method on the call's body and returns the value to
// answer 200 with (nil for an empty answer), or the error to answer with.
type method func(t *turn, body []byte) (any, error)

// The state keys of the actors' data.
const (
	registerKey = "value"
	counterKey  = "count"
)

var methods = map[string]map[string]method{
	TypeRegister: {
		"read":  registerRead,
		"write": registerWrite,
		"cas":   registerCAS,
	},
	TypeCounter: {
		"incr": counterIncr,
		"get":  counterGet,
	},
}

func hostedType(typ string) bool {
	_, ok := methods[typ]
	return ok || typ == TypeTicker
}

// lookupMethod returns the method name of actor type typ. ChaosTicker has
// only callbacks: remind/{name} and timer/{name}.
func lookupMethod(typ, name string) (method, error) {
	if typ == TypeTicker {
		if reminder, ok := strings.CutPrefix(name, "remind/"); ok && reminder != "" {
			return func(t *turn, _ []byte) (any, error) {
				tickerRemind(t, reminder)
				return nil, nil
			}, nil
		}
		if timer, ok := strings.CutPrefix(name, "timer/"); ok && timer != "" {
			return func(*turn, []byte) (any, error) { return nil, nil }, nil
		}
		return nil, fmt.Errorf("%s has no method %q", typ, name)
	}
	byName, ok := methods[typ]
	if !ok {
		return nil, fmt.Errorf("no actor type %q", typ)
	}
	m, ok := byName[name]
	if !ok {
		return nil, fmt.Errorf("%s has no method %q", typ, name)
	}
	return m, nil
}

// callBody is the body of a register or counter call; each method uses
// the fields it needs.
type callBody struct {
	Req    string `json:"req"`
	Value  int64  `json:"value"`
	Expect int64  `json:"expect"`
	Delta  int64  `json:"delta"`
}

// decodeBody decodes a call's body; an empty body is all zeros. needReq
// says whether the method writes, so needs a request ID for its audit key.
func decodeBody(body []byte, needReq bool) (callBody, error) {
	var b callBody
	if len(body) > 0 {
		if err := json.Unmarshal(body, &b); err != nil {
			return callBody{}, badRequest("body: %v", err)
		}
	}
	if needReq && b.Req == "" {
		return callBody{}, badRequest(`body: no "req" (request ID)`)
	}
	return b, nil
}

// valueAnswer is the answer of a read, an increment and a get.
type valueAnswer struct {
	Value *int64 `json:"value"`
}

// okAnswer is the answer of a write and of a compare-and-set that wrote.
type okAnswer struct {
	OK bool `json:"ok"`
}

// casMismatch is the answer of a compare-and-set whose expectation failed.
type casMismatch struct {
	OK    bool   `json:"ok"`
	Value *int64 `json:"value"`
}

func registerRead(t *turn, body []byte) (any, error) {
	if _, err := decodeBody(body, false); err != nil {
		return nil, err
	}
	v, err := t.readInt(registerKey)
	if err != nil {
		return nil, err
	}
	return valueAnswer{Value: v}, nil
}

func registerWrite(t *turn, body []byte) (any, error) {
	b, err := decodeBody(body, true)
	if err != nil {
		return nil, err
	}
	if err := t.commit(b.Req, registerKey, upsert(registerKey, b.Value)); err != nil {
		return nil, err
	}
	return okAnswer{OK: true}, nil
}

// registerCAS writes value when the register holds expect; an absent
// register holds nothing, so never matches.
func registerCAS(t *turn, body []byte) (any, error) {
	b, err := decodeBody(body, true)
	if err != nil {
		return nil, err
	}
	cur, err := t.readInt(registerKey)
	if err != nil {
		return nil, err
	}
	if cur == nil || *cur != b.Expect {
		return casMismatch{OK: false, Value: cur}, nil
	}
	if err := t.commit(b.Req, registerKey, upsert(registerKey, b.Value)); err != nil {
		return nil, err
	}
	return okAnswer{OK: true}, nil
}

// requestKey is the state key recording the counter's value after the
// increment with request ID req, so a retry of it is not applied twice.
func requestKey(req string) string { return "req/" + req }

// counterIncr adds delta (0 or absent means 1) once per request ID.
func counterIncr(t *turn, body []byte) (any, error) {
	b, err := decodeBody(body, true)
	if err != nil {
		return nil, err
	}
	delta := b.Delta
	if delta == 0 {
		delta = 1
	}
	applied, err := t.readInt(requestKey(b.Req))
	if err != nil {
		return nil, err
	}
	if applied != nil {
		return valueAnswer{Value: applied}, nil
	}
	cur, err := t.readInt(counterKey)
	if err != nil {
		return nil, err
	}
	var c int64
	if cur != nil {
		c = *cur
	}
	if (delta > 0 && c > math.MaxInt64-delta) || (delta < 0 && c < math.MinInt64-delta) {
		return nil, badRequest("incrementing %d by %d overflows", c, delta)
	}
	next := c + delta
	if err := t.commit(b.Req, counterKey, upsert(counterKey, next), upsert(requestKey(b.Req), next)); err != nil {
		return nil, err
	}
	return valueAnswer{Value: &next}, nil
}

func counterGet(t *turn, body []byte) (any, error) {
	if _, err := decodeBody(body, false); err != nil {
		return nil, err
	}
	cur, err := t.readInt(counterKey)
	if err != nil {
		return nil, err
	}
	var c int64
	if cur != nil {
		c = *cur
	}
	return valueAnswer{Value: &c}, nil
}

// tickerRemind logs the fire of reminder name. Its body (the reminder's
// data, due time and period) is not needed.
func tickerRemind(t *turn, name string) {
	t.app.record(history.Tick{
		Type:       t.typ,
		Actor:      t.id,
		Reminder:   name,
		Activation: t.claim,
		At:         t.stamp(),
	})
}
