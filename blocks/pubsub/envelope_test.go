package pubsub

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/granaryhq/granary/internal/clock"
)

// The envelope written directly is byte for byte what encoding/json makes
// of the same attributes in a map.
func TestEnvelopeIsWhatEncodingJSONWrites(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.UTC))
	for _, c := range []struct {
		name, app, topic, ct, tp, ts string
		body                         []byte
	}{
		{"json", "app", "orders", "application/json", "", "", []byte(`{ "a" : [1, 2] }`)},
		{"text", "app", "orders", "text/plain", "", "", []byte("hello \"world\" <&>\n")},
		{"json type, not json", "app", "t", "application/json", "", "", []byte("{nope")},
		{"binary", "app", "t", "application/octet-stream", "", "", []byte{0xff, 0xfe, 0}},
		{"unicode", "äpp", "tö/pic", "text/plain; charset=utf-8", "00-abc-def-01", "k=v", []byte("é\u2028")},
		{"traced", "app", "t", "application/json", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", []byte(`1`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &Service{cfg: Config{Name: "ps", AppID: c.app}, clock: clk}
			got := s.envelope("id-1", c.topic, c.ct, c.body, publishOptions{traceparent: c.tp, tracestate: c.ts})
			ev := map[string]any{"id": "id-1", "source": c.app, "type": "com.dapr.event.sent", "specversion": "1.0",
				"time": clk.Now().UTC().Format(time.RFC3339Nano), "datacontenttype": c.ct, "topic": c.topic, "pubsubname": "ps"}
			switch {
			case isJSONType(c.ct) && json.Valid(c.body):
				ev["data"] = json.RawMessage(c.body)
			case utf8.Valid(c.body):
				ev["data"] = string(c.body)
			default:
				ev["data_base64"] = base64.StdEncoding.EncodeToString(c.body)
			}
			if c.tp != "" {
				ev["traceparent"], ev["traceid"] = c.tp, c.tp
				if c.ts != "" {
					ev["tracestate"] = c.ts
				}
			}
			want, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("envelope\n%s\nwant\n%s", got, want)
			}
		})
	}
}
