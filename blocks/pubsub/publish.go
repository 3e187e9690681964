package pubsub

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/granaryhq/granary/internal/uuid"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/blocks"
)

// Error codes of Dapr's pub/sub API.
const (
	ErrTopicNameEmpty   = "ERR_TOPIC_NAME_EMPTY"
	ErrMalformedRequest = "ERR_MALFORMED_REQUEST"
	ErrPublishMessage   = "ERR_PUBSUB_PUBLISH_MESSAGE"
	ErrRequestMetadata  = "ERR_PUBSUB_REQUEST_METADATA"
)

// Content types.
const (
	cloudEventsType = "application/cloudevents+json"
	jsonType        = "application/json"
	textType        = "text/plain"
	octetType       = "application/octet-stream"
)

// message is one published message, as stored by a partition.
type message struct {
	ID string `json:"id"` // the CloudEvent id (of a raw message: one made for it)
	// Event is the CloudEvent envelope, for a wrapped message.
	Event json.RawMessage `json:"event,omitempty"`
	// Raw is set for a metadata.rawPayload publish: Data is the payload as
	// sent, ContentType its type.
	Raw         bool   `json:"raw,omitempty"`
	Data        []byte `json:"data,omitempty"`
	ContentType string `json:"ct,omitempty"`
	// Expires is when the message stops being delivered (Unix ns); 0 never.
	Expires int64 `json:"exp,omitempty"`
}

// publishRequest is the body of a partition's "publish" method.
type publishRequest struct {
	Messages []message `json:"msgs"`
}

// escapeTopic percent-escapes what actor names forbid ('/', '\\', '#',
// '?', control characters) and '%' itself.
func escapeTopic(topic string) string {
	var b strings.Builder
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		switch {
		case c == '/' || c == '\\' || c == '#' || c == '?' || c == '%' || c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeTopic reverses escapeTopic.
func unescapeTopic(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// topicActorID is the actor ID of one partition of a topic.
func topicActorID(partition int, topic string) (string, error) {
	if topic == "" {
		return "", errors.New("the topic name is empty")
	}
	if !utf8.ValidString(topic) {
		return "", errors.New("the topic name is not valid UTF-8")
	}
	id := strconv.Itoa(partition) + "." + escapeTopic(topic)
	if err := actor.ValidateName(id); err != nil {
		return "", fmt.Errorf("the topic name cannot be used: its partition ID %v", err)
	}
	return id, nil
}

// parseActorID splits a partition actor ID.
func parseActorID(id string) (partition int, topic string, ok bool) {
	p, t, found := strings.Cut(id, ".")
	if !found {
		return 0, "", false
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return 0, "", false
	}
	return n, unescapeTopic(t), true
}

func (s *Service) partitionOf(key string) int {
	return int(xxhash.Sum64String(key) % uint64(s.cfg.Partitions))
}

// mediaType is the content type without parameters, lower-cased.
func mediaType(ct string) string {
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		return mt
	}
	mt, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

func isJSONType(ct string) bool {
	mt := mediaType(ct)
	return mt == jsonType || mt == "text/json" || (strings.HasSuffix(mt, "+json") && mt != cloudEventsType)
}

// publishOptions are the metadata of one publish that this block reads.
type publishOptions struct {
	raw          bool
	ttl          time.Duration
	partitionKey string
	traceparent  string
	tracestate   string
}

func parseOptions(meta map[string]string) (publishOptions, *blocks.Error) {
	var o publishOptions
	if v, ok := meta["rawPayload"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, blocks.Errorf(http.StatusBadRequest, ErrRequestMetadata, "metadata.rawPayload=%q is not a boolean", v)
		}
		o.raw = b
	}
	if v, ok := meta["ttlInSeconds"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n > 1<<31 {
			return o, blocks.Errorf(http.StatusBadRequest, ErrRequestMetadata, "metadata.ttlInSeconds=%q is not a positive whole number of seconds", v)
		}
		o.ttl = time.Duration(n) * time.Second
	}
	o.partitionKey = meta["partitionKey"]
	return o, nil
}

// newMessage builds the message of one publish to topic: body wrapped in a
// CloudEvent (or passed through when it is one), or kept raw.
func (s *Service) newMessage(topic string, body []byte, contentType string, o publishOptions) (message, *blocks.Error) {
	var m message
	if o.ttl > 0 {
		m.Expires = s.clock.Now().Add(o.ttl).UnixNano()
	}
	if o.raw {
		m.ID = uuid.New()
		m.Raw = true
		m.Data = append([]byte(nil), body...)
		m.ContentType = contentType
		if m.ContentType == "" {
			m.ContentType = octetType
		}
		return m, nil
	}
	var ev map[string]any
	if mediaType(contentType) == cloudEventsType {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&ev); err != nil || ev == nil {
			return m, blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "the body is not a CloudEvent: a JSON object is required (Content-Type %s)", cloudEventsType)
		}
		for _, f := range []string{"id", "source", "type", "specversion", "datacontenttype", "subject"} {
			if v, ok := ev[f]; ok {
				if str, isStr := v.(string); !isStr || (str == "" && f != "subject" && f != "datacontenttype") {
					return m, blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "the CloudEvent's %q attribute must be a non-empty string", f)
				}
			}
		}
		if v, ok := ev["specversion"]; ok && v != "1.0" {
			return m, blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "the CloudEvent's specversion is %q; only 1.0 is supported", v)
		}
		setDefault(ev, "id", uuid.New())
		setDefault(ev, "source", s.cfg.AppID)
		setDefault(ev, "type", "com.dapr.event.sent")
		setDefault(ev, "specversion", "1.0")
		if _, hasData := ev["data"]; hasData {
			setDefault(ev, "datacontenttype", jsonType)
		}
	} else {
		// The common case, a body to wrap: the envelope is written
		// directly, without a map in between.
		ct := contentType
		if ct == "" {
			if json.Valid(body) {
				ct = jsonType
			} else {
				ct = textType
			}
		}
		m.ID = uuid.New()
		m.Event = s.envelope(m.ID, topic, ct, body, o)
		return m, nil
	}
	ev["topic"] = topic
	ev["pubsubname"] = s.cfg.Name
	if o.traceparent != "" {
		setDefault(ev, "traceparent", o.traceparent)
		setDefault(ev, "traceid", o.traceparent)
		if o.tracestate != "" {
			setDefault(ev, "tracestate", o.tracestate)
		}
	}
	enc, err := json.Marshal(ev)
	if err != nil {
		return m, blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "encoding the CloudEvent: %v", err)
	}
	m.ID, _ = ev["id"].(string)
	m.Event = enc
	return m, nil
}

// envelope is the CloudEvent of a body published with content type ct, its
// attributes in the order encoding/json gives a map's keys.
func (s *Service) envelope(id, topic, ct string, body []byte, o publishOptions) []byte {
	b := make([]byte, 0, len(body)+256+len(o.traceparent)*2+len(o.tracestate))
	b = append(b, '{')
	switch {
	case isJSONType(ct) && json.Valid(body):
		b = append(b, `"data":`...)
		b = appendCompact(b, body)
	case utf8.Valid(body):
		b = append(b, `"data":`...)
		b = appendJSONString(b, string(body))
	default:
		b = append(b, `"data_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, body)
		b = append(b, '"')
	}
	field := func(name, v string) {
		b = append(b, ',', '"')
		b = append(b, name...)
		b = append(b, '"', ':')
		b = appendJSONString(b, v)
	}
	field("datacontenttype", ct)
	field("id", id)
	field("pubsubname", s.cfg.Name)
	field("source", s.cfg.AppID)
	field("specversion", "1.0")
	field("time", s.clock.Now().UTC().Format(time.RFC3339Nano))
	field("topic", topic)
	if o.traceparent != "" {
		field("traceid", o.traceparent)
		field("traceparent", o.traceparent)
		if o.tracestate != "" {
			field("tracestate", o.tracestate)
		}
	}
	field("type", "com.dapr.event.sent")
	return append(b, '}')
}

// appendCompact appends the valid JSON value v without insignificant
// space, as encoding/json writes a json.RawMessage.
func appendCompact(b, v []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return append(b, v...)
	}
	return append(b, buf.Bytes()...)
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			enc, _ := json.Marshal(s) // a string always encodes
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func setDefault(ev map[string]any, key string, v any) {
	if _, ok := ev[key]; !ok {
		ev[key] = v
	}
}

// queryMetadata returns the metadata.* query parameters.
func queryMetadata(ctx *fasthttp.RequestCtx) map[string]string {
	meta := map[string]string{}
	for k, v := range ctx.QueryArgs().All() {
		if name, ok := strings.CutPrefix(string(k), "metadata."); ok {
			meta[name] = string(v)
		}
	}
	return meta
}

func checkTopic(topic string) *blocks.Error {
	if topic == "" {
		return blocks.Errorf(http.StatusNotFound, ErrTopicNameEmpty, "topic is empty")
	}
	if _, err := topicActorID(0, topic); err != nil {
		return blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "topic %q: %v", topic, err)
	}
	return nil
}

// ServePublish serves POST /v1.0/publish/{pubsub}/{topic}; topic is the rest
// of the path, percent-decoded (it may contain "/", as Dapr's topics may).
// It answers 204 once the message is stored.
func (s *Service) ServePublish(ctx *fasthttp.RequestCtx, topic string) error {
	if err := checkTopic(topic); err != nil {
		return err
	}
	o, berr := parseOptions(queryMetadata(ctx))
	if berr != nil {
		return berr
	}
	o.traceparent = string(ctx.Request.Header.Peek("traceparent"))
	o.tracestate = string(ctx.Request.Header.Peek("tracestate"))
	m, berr := s.newMessage(topic, ctx.Request.Body(), string(ctx.Request.Header.ContentType()), o)
	if berr != nil {
		return berr
	}
	key := o.partitionKey
	if key == "" {
		key = m.ID
	}
	// Not the request's context: fasthttp's ends with the server, and one
	// derived from it costs a goroutine per turn.
	if err := s.publishOne(context.Background(), topic, s.partitionOf(key), m); err != nil {
		return err
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

// publish stores msgs in one partition of topic.
func (s *Service) publish(ctx context.Context, topic string, partition int, msgs []message) error {
	if s.isClosed() {
		return blocks.Errorf(http.StatusInternalServerError, ErrPublishMessage, "pubsub %s is shutting down", s.cfg.Name)
	}
	id, err := topicActorID(partition, topic)
	if err != nil {
		return blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "topic %q: %v", topic, err)
	}
	body, err := json.Marshal(publishRequest{Messages: msgs})
	if err != nil {
		return blocks.Errorf(http.StatusInternalServerError, ErrPublishMessage, "encoding the message: %v", err)
	}
	if _, err := s.cfg.Actors.CallActor(ctx, actor.ID{Type: s.actorType, ID: id}, "publish", body); err != nil {
		if be, ok := errors.AsType[*blocks.Error](err); ok {
			return be
		}
		return blocks.Errorf(http.StatusInternalServerError, ErrPublishMessage, "publishing to topic %s of pubsub %s: %v", topic, s.cfg.Name, err)
	}
	return nil
}

// bulkEntry is one entry of a bulk publish.
type bulkEntry struct {
	EntryID     string            `json:"entryId"`
	Event       json.RawMessage   `json:"event"`
	ContentType string            `json:"contentType"`
	Metadata    map[string]string `json:"metadata"`
}

// bulkFailure is one failed entry of a bulk publish's answer.
type bulkFailure struct {
	EntryID string `json:"entryId"`
	Error   string `json:"error"`
}

// ServeBulkPublish serves POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}.
// The body is a JSON array of entries {entryId, event, contentType,
// metadata} (or an object holding it as "entries"). It answers 204 when
// every entry is stored, and otherwise 500 with {"failedEntries":
// [{"entryId","error"}], "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE"}; the
// other entries are stored. A malformed request stores nothing.
func (s *Service) ServeBulkPublish(ctx *fasthttp.RequestCtx, topic string) error {
	if err := checkTopic(topic); err != nil {
		return err
	}
	entries, berr := parseBulk(ctx.Request.Body())
	if berr != nil {
		return berr
	}
	reqMeta := queryMetadata(ctx)
	traceparent := string(ctx.Request.Header.Peek("traceparent"))
	tracestate := string(ctx.Request.Header.Peek("tracestate"))
	type batch struct {
		msgs []message
		ids  []string
	}
	batches := map[int]*batch{}
	var order []int
	seen := map[string]bool{}
	for i, e := range entries {
		if e.EntryID == "" {
			return blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "entry %d has no entryId", i)
		}
		if seen[e.EntryID] {
			return blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "entryId %q appears twice", e.EntryID)
		}
		seen[e.EntryID] = true
		if len(e.Event) == 0 || bytes.Equal(e.Event, []byte("null")) {
			return blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "entry %q has no event", e.EntryID)
		}
		meta := map[string]string{}
		for k, v := range reqMeta {
			meta[k] = v
		}
		for k, v := range e.Metadata {
			meta[k] = v
		}
		o, berr := parseOptions(meta)
		if berr != nil {
			berr.Message = fmt.Sprintf("entry %q: %s", e.EntryID, berr.Message)
			return berr
		}
		o.traceparent, o.tracestate = traceparent, tracestate
		body, ct := e.payload()
		m, berr := s.newMessage(topic, body, ct, o)
		if berr != nil {
			berr.Message = fmt.Sprintf("entry %q: %s", e.EntryID, berr.Message)
			return berr
		}
		key := o.partitionKey
		if key == "" {
			key = m.ID
		}
		p := s.partitionOf(key)
		b := batches[p]
		if b == nil {
			b = &batch{}
			batches[p] = b
			order = append(order, p)
		}
		b.msgs = append(b.msgs, m)
		b.ids = append(b.ids, e.EntryID)
	}
	var failed []bulkFailure
	for _, p := range order {
		b := batches[p]
		if err := s.publish(context.Background(), topic, p, b.msgs); err != nil {
			msg := err.Error()
			if be, ok := errors.AsType[*blocks.Error](err); ok {
				msg = be.Message
			}
			for _, id := range b.ids {
				failed = append(failed, bulkFailure{EntryID: id, Error: msg})
			}
		}
	}
	if len(failed) == 0 {
		ctx.SetStatusCode(http.StatusNoContent)
		return nil
	}
	out, _ := json.Marshal(struct {
		FailedEntries []bulkFailure `json:"failedEntries"`
		ErrorCode     string        `json:"errorCode"`
	}{failed, ErrPublishMessage})
	ctx.SetStatusCode(http.StatusInternalServerError)
	ctx.SetContentType(jsonType)
	ctx.SetBody(out)
	return nil
}

func parseBulk(body []byte) ([]bulkEntry, *blocks.Error) {
	trimmed := bytes.TrimSpace(body)
	var entries []bulkEntry
	switch {
	case len(trimmed) > 0 && trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &entries); err != nil {
			return nil, blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "the body is not a JSON array of entries: %v", err)
		}
	case len(trimmed) > 0 && trimmed[0] == '{':
		var wrapped struct {
			Entries []bulkEntry `json:"entries"`
		}
		if err := json.Unmarshal(trimmed, &wrapped); err != nil {
			return nil, blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "the body is not a JSON object of entries: %v", err)
		}
		entries = wrapped.Entries
	default:
		return nil, blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "the body must be a JSON array of entries")
	}
	if len(entries) == 0 {
		return nil, blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "the request has no entries")
	}
	return entries, nil
}

// payload returns the bytes and content type an entry publishes. A string
// event is its text (text/plain unless said otherwise, or the JSON it holds
// for a JSON content type); any other event is its JSON, application/json
// unless it looks like a CloudEvent.
func (e *bulkEntry) payload() ([]byte, string) {
	ct := e.ContentType
	var str string
	isString := json.Unmarshal(e.Event, &str) == nil && len(e.Event) > 0 && e.Event[0] == '"'
	if isString {
		if ct == "" {
			ct = textType
		}
		return []byte(str), ct
	}
	if ct == "" {
		ct = jsonType
		var probe map[string]json.RawMessage
		if json.Unmarshal(e.Event, &probe) == nil {
			_, id := probe["id"]
			_, src := probe["source"]
			_, sv := probe["specversion"]
			_, typ := probe["type"]
			if id && src && sv && typ {
				ct = cloudEventsType
			}
		}
	}
	return e.Event, ct
}
