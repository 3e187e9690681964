package pubsub

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/blocks"
)

// outcome is what an app's answer to a delivery means.
type outcome uint8

const (
	acked outcome = iota + 1
	dropped
	retry
)

// deliverLoop delivers the partition's messages to one subscriber in
// sequence order, one at a time, until the partition stops or the
// subscriber goes away.
func (p *partition) deliverLoop(s *subscriber) {
	defer p.wg.Done()
	ctx := p.ctx
	for {
		p.mu.Lock()
		if p.stopped || s.removed || ctx.Err() != nil {
			p.mu.Unlock()
			return
		}
		if s.cur.Seq >= p.next {
			p.mu.Unlock()
			select {
			case <-s.kick:
			case <-ctx.Done():
				return
			}
			continue
		}
		seq, attempt, sub := s.cur.Seq, s.cur.Attempt, s.sub
		c := p.cache[seq]
		p.mu.Unlock()
		if c == nil {
			if err := p.loadMessages(ctx, seq); err != nil {
				if ctx.Err() != nil {
					return
				}
				p.svc.log.Warn("pubsub: reading messages failed; trying again", "topic", p.topic, "app", s.app, "err", err)
				if !p.wait(ctx, time.Second) {
					return
				}
			}
			continue
		}
		if !p.handle(ctx, s, sub, c, seq, attempt) {
			return
		}
	}
}

// handle delivers message seq to s once and moves the cursor on, or waits
// for the retry. It returns false when the partition is stopping.
func (p *partition) handle(ctx context.Context, s *subscriber, sub *subscription, c *cached, seq uint64, attempt int) bool {
	log := p.svc.log
	if c.gone || (c.m.Expires != 0 && !p.svc.clock.Now().Before(time.Unix(0, c.m.Expires))) {
		log.Debug("pubsub: message expired before delivery", "topic", p.topic, "app", s.app, "id", c.m.ID)
		p.advance(s, seq)
		return true
	}
	path := sub.pathFor(func() map[string]any { return c.event(p) })
	if path == "" {
		log.Debug("pubsub: no route matches the message; acknowledged without delivery", "topic", p.topic, "app", s.app, "id", c.m.ID)
		p.advance(s, seq)
		return true
	}
	res, reason := p.deliver(ctx, sub, c, path)
	if ctx.Err() != nil {
		return false // the partition stops; the message is delivered again after
	}
	switch res {
	case acked:
		p.advance(s, seq)
		return true
	case dropped:
		log.Warn("pubsub: message dropped by the app", "topic", p.topic, "app", s.app, "id", c.m.ID, "reason", reason)
		p.advance(s, seq)
		return true
	}
	if attempt >= len(p.svc.retries) {
		if sub.deadLetter == "" {
			log.Warn("pubsub: message dropped after its last retry", "topic", p.topic, "app", s.app, "id", c.m.ID,
				"attempts", attempt+1, "reason", reason)
			p.advance(s, seq)
			return true
		}
		err := p.svc.publish(ctx, sub.deadLetter, p.svc.partitionOf(c.m.ID), []message{c.m})
		if err == nil {
			log.Warn("pubsub: message sent to the dead-letter topic after its last retry", "topic", p.topic, "app", s.app,
				"id", c.m.ID, "deadLetterTopic", sub.deadLetter, "attempts", attempt+1, "reason", reason)
			p.advance(s, seq)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		log.Error("pubsub: publishing to the dead-letter topic failed; trying again", "topic", p.topic, "app", s.app,
			"id", c.m.ID, "deadLetterTopic", sub.deadLetter, "err", err)
		delay := time.Second
		if n := len(p.svc.retries); n > 0 {
			delay = p.svc.retries[n-1]
		}
		return p.wait(ctx, delay)
	}
	log.Debug("pubsub: delivery failed; retrying", "topic", p.topic, "app", s.app, "id", c.m.ID, "attempt", attempt+1, "reason", reason)
	p.mu.Lock()
	if s.cur.Seq == seq {
		s.cur.Attempt = attempt + 1
	}
	p.mu.Unlock()
	poke(p.flushKick)
	return p.wait(ctx, p.svc.retries[attempt])
}

// advance moves s past seq.
func (p *partition) advance(s *subscriber, seq uint64) {
	p.mu.Lock()
	if s.cur.Seq == seq {
		s.cur = cursor{Seq: seq + 1}
	}
	if len(p.cache) > cacheLimit {
		delete(p.cache, seq) // read back from the store by whoever needs it
	}
	p.mu.Unlock()
	poke(p.flushKick)
}

// wait waits d on the service's clock; false when ctx ended first.
func (p *partition) wait(ctx context.Context, d time.Duration) bool {
	t := p.svc.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

var traceparentField = []byte(`"traceparent"`)

// appAnswer is the body of an app's answer to a delivery.
type appAnswer struct {
	Status string `json:"status"`
}

// deliver posts the message to path on the subscriber's app and interprets
// the answer: 2xx with an empty body, or status SUCCESS (or none), is an
// acknowledgement; DROP drops; RETRY, any other status, another HTTP
// status, a body that is not JSON, a failed call and a timeout retry.
func (p *partition) deliver(ctx context.Context, sub *subscription, c *cached, path string) (outcome, string) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	body, ct := c.body(p, sub.raw)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(path)
	req.Header.SetContentType(ct)
	req.Header.Set(blocks.HeaderTopicEvent, "1")
	req.SetBody(body)
	// Decoding the event costs more than the rest of a delivery: only an
	// event that names a traceparent is decoded for it.
	if bytes.Contains(c.m.Event, traceparentField) {
		if tp, ok := c.event(p)["traceparent"].(string); ok && tp != "" {
			req.Header.Set("traceparent", tp)
		}
	}
	dctx, cancel := context.WithCancel(ctx)
	timer := p.svc.clock.AfterFunc(p.svc.cfg.DeliveryTimeout, cancel)
	err := p.svc.cfg.Apps.CallApp(dctx, sub.app, req, resp)
	timedOut := !timer.Stop() && ctx.Err() == nil
	cancel()
	switch {
	case timedOut:
		return retry, fmt.Sprintf("no answer within %v", p.svc.cfg.DeliveryTimeout)
	case err != nil:
		return retry, err.Error()
	}
	status := resp.StatusCode()
	if status < 200 || status > 299 {
		return retry, fmt.Sprintf("the app answered %d", status)
	}
	answer := bytes.TrimSpace(resp.Body())
	if len(answer) == 0 {
		return acked, ""
	}
	var a appAnswer
	if err := json.Unmarshal(answer, &a); err != nil {
		return retry, "the app's answer is not JSON"
	}
	switch strings.ToUpper(a.Status) {
	case "", "SUCCESS":
		return acked, ""
	case "DROP":
		return dropped, "the app answered DROP"
	case "RETRY":
		return retry, "the app answered RETRY"
	}
	return retry, fmt.Sprintf("the app answered status %q", a.Status)
}

// event is the message's CloudEvent, decoded, for routing rules.
func (c *cached) event(p *partition) map[string]any {
	c.evOnce.Do(func() {
		src := c.m.Event
		if c.m.Raw {
			src = c.wrappedRaw(p)
		}
		_ = json.Unmarshal(src, &c.ev)
		if c.ev == nil {
			c.ev = map[string]any{}
		}
	})
	return c.ev
}

// wrappedRaw is a raw message as a CloudEvent, for subscribers that do not
// ask for raw payloads: the payload is its data (JSON when it is JSON, else
// data_base64).
func (c *cached) wrappedRaw(p *partition) []byte {
	c.wrapOnce.Do(func() {
		ev := map[string]any{
			"id":              c.m.ID,
			"source":          p.svc.cfg.AppID,
			"type":            "com.dapr.event.sent",
			"specversion":     "1.0",
			"datacontenttype": c.m.ContentType,
			"topic":           p.topic,
			"pubsubname":      p.svc.cfg.Name,
		}
		if isJSONType(c.m.ContentType) && json.Valid(c.m.Data) {
			ev["data"] = json.RawMessage(c.m.Data)
		} else {
			ev["data_base64"] = base64.StdEncoding.EncodeToString(c.m.Data)
		}
		c.wrapped, _ = json.Marshal(ev)
	})
	return c.wrapped
}

// body is what a subscriber receives: the CloudEvent, or for a raw
// subscription the payload unwrapped.
func (c *cached) body(p *partition, raw bool) ([]byte, string) {
	switch {
	case c.m.Raw && raw:
		return c.m.Data, c.m.ContentType
	case c.m.Raw:
		return c.wrappedRaw(p), cloudEventsType
	case !raw:
		return c.m.Event, cloudEventsType
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(c.m.Event, &ev); err != nil {
		return c.m.Event, cloudEventsType
	}
	var ct string
	_ = json.Unmarshal(ev["datacontenttype"], &ct)
	if b64, ok := ev["data_base64"]; ok {
		var s string
		if json.Unmarshal(b64, &s) == nil {
			if data, err := base64.StdEncoding.DecodeString(s); err == nil {
				return data, orDefault(ct, octetType)
			}
		}
	}
	data, ok := ev["data"]
	if !ok {
		return nil, orDefault(ct, octetType)
	}
	if !isJSONType(ct) && len(data) > 0 && data[0] == '"' {
		var s string
		if json.Unmarshal(data, &s) == nil && utf8.ValidString(s) {
			return []byte(s), orDefault(ct, textType)
		}
	}
	return data, orDefault(ct, jsonType)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
