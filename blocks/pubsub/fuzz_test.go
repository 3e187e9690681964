package pubsub

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"

	"github.com/granaryhq/granary/internal/clock"
)

// FuzzNewMessage: any publish body and content type gives a message or a
// 400, never a panic, and a message's event always encodes.
func FuzzNewMessage(f *testing.F) {
	for _, c := range []struct{ body, ct string }{
		{`{"a":1}`, "application/json"},
		{`hello`, "text/plain"},
		{`{"specversion":"1.0","id":"x","source":"s","type":"t","data":{"n":1}}`, "application/cloudevents+json"},
		{`{"specversion":"1.0","data_base64":"aGk="}`, "application/cloudevents+json; charset=utf-8"},
		{`[1,2]`, "application/cloudevents+json"},
		{"\xff", ""},
	} {
		f.Add([]byte(c.body), c.ct, false)
		f.Add([]byte(c.body), c.ct, true)
	}
	s := &Service{cfg: Config{Name: "pubsub", AppID: "app"}, clock: clock.Real}
	f.Fuzz(func(t *testing.T, body []byte, contentType string, raw bool) {
		m, e := s.newMessage("orders", body, contentType, publishOptions{raw: raw})
		if e != nil {
			if e.Status != http.StatusBadRequest {
				t.Fatalf("%q (%q): status %d", body, contentType, e.Status)
			}
			return
		}
		if _, err := json.Marshal(&m); err != nil {
			t.Fatalf("%q (%q): the message does not encode: %v", body, contentType, err)
		}
		if m.ID == "" {
			t.Fatalf("%q (%q): a message without an id", body, contentType)
		}
	})
}

// FuzzParseBulk: any bulk publish body gives entries or a 400.
func FuzzParseBulk(f *testing.F) {
	f.Add([]byte(`{"entries":[{"entryId":"1","event":{"a":1},"contentType":"application/json"}]}`))
	f.Add([]byte(`[{"entryId":"1","event":"x","contentType":"text/plain","metadata":{"ttlInSeconds":"5"}}]`))
	f.Add([]byte(`[{"entryId":"1"},{"entryId":"1"}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		entries, e := parseBulk(body)
		if e != nil {
			if e.Status != http.StatusBadRequest {
				t.Fatalf("%q: status %d", body, e.Status)
			}
			return
		}
		for _, en := range entries {
			en.payload()
		}
	})
}

// FuzzSubscriptions: whatever an app's /dapr/subscribe answers, each entry
// is accepted or refused with an error, and an accepted one compiles.
func FuzzSubscriptions(f *testing.F) {
	f.Add([]byte(`[{"pubsubname":"pubsub","topic":"t","route":"/t"}]`))
	f.Add([]byte(`[{"pubsubname":"pubsub","topic":"t","routes":{"rules":[{"match":"event.type == \"x\"","path":"/x"}],"default":"/d"},"deadLetterTopic":"dead"}]`))
	f.Add([]byte(`[{"pubsubname":"pubsub","topic":"","routes":{"rules":[{"match":"(","path":"/x"}]}}]`))
	r := &registry{svc: &Service{cfg: Config{Name: "pubsub"}, log: slog.New(slog.DiscardHandler)}}
	f.Fuzz(func(t *testing.T, body []byte) {
		var subs []Subscription
		if json.Unmarshal(body, &subs) != nil {
			return
		}
		for _, d := range subs {
			if validateSubscription(&d) != nil {
				continue
			}
			r.compile("app", d, "programmatic")
		}
	})
}
