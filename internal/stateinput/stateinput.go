// Package stateinput checks the state keys and metadata that clients send,
// for the actor state API and the state building block alike.
package stateinput

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxKeyLength bounds a state key.
const MaxKeyLength = 1024

// MaxTTLSeconds bounds ttlInSeconds (about 100 years).
const MaxTTLSeconds = 100 * 365 * 24 * 3600

// MetadataValue accepts a metadata value written as a JSON string (as the protocol
// states) or, leniently, as a number.
type MetadataValue string

func (t *MetadataValue) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = MetadataValue(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("metadata values must be strings")
	}
	*t = MetadataValue(n.String())
	return nil
}

// Text is a JSON string that remembers whether it was valid text.
// encoding/json turns invalid UTF-8 and \u escapes of lone surrogates into
// U+FFFD, so keys that differ on the wire would be stored as one, and
// none of them could be read back by its own name.
type Text struct {
	S       string
	Invalid string // why the string is not text; empty when it is
}

func (t *Text) UnmarshalJSON(b []byte) error {
	// A repeated field decodes into the same value; the last one counts.
	t.Invalid = ""
	switch {
	case len(b) == 0 || b[0] != '"':
		return fmt.Errorf("key must be a JSON string, not %.20s", b)
	case !utf8.Valid(b):
		t.Invalid = "is not valid UTF-8"
	case hasLoneSurrogate(b):
		t.Invalid = "is not valid UTF-8: it has a \\u escape of a lone UTF-16 surrogate"
	}
	return json.Unmarshal(b, &t.S)
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

// TTL reads metadata.ttlInSeconds: zero when absent or -1.
func TTL(md map[string]MetadataValue) (time.Duration, error) {
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
	case n > MaxTTLSeconds:
		return 0, fmt.Errorf("metadata.ttlInSeconds %d is too large (limit %d)", n, MaxTTLSeconds)
	}
	return time.Duration(n) * time.Second, nil
}

// ValidateKey checks a state key: non-empty, bounded, printable,
// valid UTF-8.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(key) > MaxKeyLength {
		return fmt.Errorf("is %d bytes long; the limit is %d", len(key), MaxKeyLength)
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
