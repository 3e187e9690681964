package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/granaryhq/granary/statestore"
)

// MaxStateKeyLength bounds an actor state key.
const MaxStateKeyLength = 1024

// maxTTLSeconds bounds ttlInSeconds (about 100 years).
const maxTTLSeconds = 100 * 365 * 24 * 3600

// stateOperation is one element of an actor state transaction body.
type stateOperation struct {
	Operation *string       `json:"operation"`
	Request   *stateRequest `json:"request"`
}

type stateRequest struct {
	Key      *text             `json:"key"`
	Value    json.RawMessage   `json:"value"`
	ETag     *string           `json:"etag"`
	Metadata map[string]ttlArg `json:"metadata"`
}

// ttlArg accepts a metadata value written as a JSON string (as the protocol
// states) or, leniently, as a number.
type ttlArg string

func (t *ttlArg) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = ttlArg(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("metadata values must be strings")
	}
	*t = ttlArg(n.String())
	return nil
}

// text is a JSON string that remembers whether it was valid text.
// encoding/json turns invalid UTF-8 and \u escapes of lone surrogates into
// U+FFFD, so keys that differ on the wire would be stored as one, and
// none of them could be read back by its own name.
type text struct {
	s       string
	invalid string // why the string is not text; empty when it is
}

func (t *text) UnmarshalJSON(b []byte) error {
	// A repeated field decodes into the same value; the last one counts.
	t.invalid = ""
	switch {
	case len(b) == 0 || b[0] != '"':
		return fmt.Errorf("key must be a JSON string, not %.20s", b)
	case !utf8.Valid(b):
		t.invalid = "is not valid UTF-8"
	case hasLoneSurrogate(b):
		t.invalid = "is not valid UTF-8: it has a \\u escape of a lone UTF-16 surrogate"
	}
	return json.Unmarshal(b, &t.s)
}

// hasLoneSurrogate reports whether the JSON string b has a \u escape of a
// high surrogate not followed by one of a low surrogate, or of a low
// surrogate on its own. b is checked as JSON by the caller.
func hasLoneSurrogate(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		i++ // the escaped character; the loop steps over it
		r, ok := escapedUnit(b, i)
		if !ok {
			continue
		}
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		case r >= 0xD800 && r <= 0xDBFF:
			low, ok := escapedUnit(b, i+2)
			if i+1 >= len(b) || b[i+1] != '\\' || !ok || low < 0xDC00 || low > 0xDFFF {
				return true
			}
			i += 6
		}
	}
	return false
}

// escapedUnit reads the four hex digits of a \u escape whose "u" is at b[i].
func escapedUnit(b []byte, i int) (rune, bool) {
	if i >= len(b) || b[i] != 'u' || i+5 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i+1 : i+5] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

var jsonNull = []byte("null")

// decodeTransaction parses an actor state transaction body (a bare JSON array)
// into store operations keyed by actor state key.
func decodeTransaction(body []byte) ([]statestore.Op, *apiError) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return nil, malformed("state transaction body must be a JSON array of operations")
	}
	var raw []stateOperation
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return nil, malformed("state transaction body is not valid: " + err.Error())
	}
	ops := make([]statestore.Op, 0, len(raw))
	for i, r := range raw {
		where := fmt.Sprintf("operation %d", i)
		if r.Operation == nil {
			return nil, badRequest(where + ": missing \"operation\"")
		}
		if r.Request == nil || r.Request.Key == nil {
			return nil, badRequest(where + ": missing \"request.key\"")
		}
		if r.Request.Key.invalid != "" {
			return nil, badRequest(fmt.Sprintf("%s: key %s", where, r.Request.Key.invalid))
		}
		key := r.Request.Key.s
		if err := validateStateKey(key); err != nil {
			return nil, badRequest(fmt.Sprintf("%s: key %q %v", where, key, err))
		}
		op := statestore.Op{Key: key}
		if r.Request.ETag != nil {
			op.ETag = *r.Request.ETag
		}
		switch *r.Operation {
		case "upsert":
			op.Kind = statestore.Put
			op.Value = r.Request.Value
			if len(op.Value) == 0 {
				op.Value = jsonNull
			}
			ttl, err := parseTTL(r.Request.Metadata)
			if err != nil {
				return nil, badRequest(fmt.Sprintf("%s: %v", where, err))
			}
			op.TTL = ttl
		case "delete":
			op.Kind = statestore.Delete
		default:
			return nil, badRequest(fmt.Sprintf("%s: unknown operation %q (want \"upsert\" or \"delete\")", where, *r.Operation))
		}
		ops = append(ops, op)
	}
	return ops, nil
}

func parseTTL(md map[string]ttlArg) (time.Duration, error) {
	v, ok := md["ttlInSeconds"]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	switch {
	case err != nil:
		return 0, fmt.Errorf("metadata.ttlInSeconds %q is not an integer", string(v))
	case n == -1:
		return 0, nil // never expires
	case n <= 0:
		return 0, fmt.Errorf("metadata.ttlInSeconds %d must be positive, or -1 for no expiry", n)
	case n > maxTTLSeconds:
		return 0, fmt.Errorf("metadata.ttlInSeconds %d is too large (limit %d)", n, maxTTLSeconds)
	}
	return time.Duration(n) * time.Second, nil
}

// validateStateKey checks an actor state key: non-empty, bounded, printable,
// valid UTF-8.
func validateStateKey(key string) error {
	if key == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(key) > MaxStateKeyLength {
		return fmt.Errorf("is %d bytes long; the limit is %d", len(key), MaxStateKeyLength)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("must not contain control character 0x%02x", c)
		}
	}
	// A key written in a transaction body is JSON text; one read by path
	// must be too, or it names a key no transaction can write.
	if !utf8.ValidString(key) {
		return fmt.Errorf("is not valid UTF-8")
	}
	return nil
}

// scheduleBody is the body of a reminder or timer registration.
type scheduleBody struct {
	Data     json.RawMessage `json:"data"`
	DueTime  string          `json:"dueTime"`
	Period   string          `json:"period"`
	TTL      string          `json:"ttl"`
	Callback string          `json:"callback"`
}

// decodeSchedule parses a reminder or timer body. An empty body means "fire now, once".
func decodeSchedule(body []byte) (scheduleBody, *apiError) {
	var s scheduleBody
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return s, nil
	}
	if trimmed[0] != '{' {
		return s, malformed("body must be a JSON object with data, dueTime, period and ttl")
	}
	if err := json.Unmarshal(trimmed, &s); err != nil {
		return s, malformed("body is not valid: " + err.Error())
	}
	if bytes.Equal(bytes.TrimSpace(s.Data), jsonNull) {
		s.Data = nil
	}
	return s, nil
}

// appRegistration is the body of PUT /v1.0-alpha1/apps/{appId}.
type appRegistration struct {
	URL string `json:"url"`
}

func decodeAppRegistration(body []byte) (appRegistration, *apiError) {
	var r appRegistration
	if err := json.Unmarshal(body, &r); err != nil {
		return r, malformed("body must be {\"url\": \"http://host:port\"}: " + err.Error())
	}
	if r.URL == "" {
		return r, badRequest("missing \"url\"")
	}
	return r, nil
}
