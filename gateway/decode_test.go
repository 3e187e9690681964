package gateway

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/internal/stateinput"
	"github.com/granaryhq/granary/statestore"
)

func TestDecodeTransaction(t *testing.T) {
	ok := []struct {
		body string
		want []statestore.Op
	}{
		{`[]`, []statestore.Op{}},
		{` [{"operation":"upsert","request":{"key":"k","value":{"a": 1}}}] `,
			[]statestore.Op{{Kind: statestore.Put, Key: "k", Value: []byte(`{"a": 1}`)}}},
		{`[{"operation":"upsert","request":{"key":"k"}}]`,
			[]statestore.Op{{Kind: statestore.Put, Key: "k", Value: []byte(`null`)}}},
		{`[{"operation":"upsert","request":{"key":"k","value":"s","etag":"7","metadata":{"ttlInSeconds":"60"}}},{"operation":"delete","request":{"key":"k2","etag":"3"}}]`,
			[]statestore.Op{
				{Kind: statestore.Put, Key: "k", Value: []byte(`"s"`), ETag: "7", TTL: time.Minute},
				{Kind: statestore.Delete, Key: "k2", ETag: "3"},
			}},
		{`[{"operation":"upsert","request":{"key":"k","value":1,"metadata":{"ttlInSeconds":30}}}]`,
			[]statestore.Op{{Kind: statestore.Put, Key: "k", Value: []byte(`1`), TTL: 30 * time.Second}}},
		{`[{"operation":"upsert","request":{"key":"a/b c","value":1,"metadata":{"ttlInSeconds":"-1"}}}]`,
			[]statestore.Op{{Kind: statestore.Put, Key: "a/b c", Value: []byte(`1`)}}},
	}
	for _, tt := range ok {
		got, err := decodeTransaction([]byte(tt.body))
		if err != nil {
			t.Errorf("%s: %v", tt.body, err)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: got %d ops, want %d", tt.body, len(got), len(tt.want))
			continue
		}
		for i := range got {
			g, w := got[i], tt.want[i]
			if g.Kind != w.Kind || g.Key != w.Key || !bytes.Equal(g.Value, w.Value) || g.ETag != w.ETag || g.TTL != w.TTL {
				t.Errorf("%s: op %d = %+v, want %+v", tt.body, i, g, w)
			}
		}
	}

	bad := []struct {
		body, code, mentions string
	}{
		{``, codeMalformed, "JSON array"},
		{`{"operation":"upsert"}`, codeMalformed, "JSON array"},
		{`[{"operation":"upsert","request":{"key":"k"}}`, codeMalformed, "not valid"},
		{`[1]`, codeMalformed, "not valid"},
		{`[{"operation":"upsert","request":{"key":5}}]`, codeMalformed, "not valid"},
		{`[{"request":{"key":"k"}}]`, codeBadRequest, "operation"},
		{`[{"operation":"upsert"}]`, codeBadRequest, "request.key"},
		{`[{"operation":"insert","request":{"key":"k"}}]`, codeBadRequest, `"insert"`},
		{`[{"operation":"Upsert","request":{"key":"k"}}]`, codeBadRequest, `"Upsert"`},
		{`[{"operation":"upsert","request":{"key":""}}]`, codeBadRequest, "empty"},
		{`[{"operation":"upsert","request":{"key":"a\u0000b"}}]`, codeBadRequest, "control"},
		{`[{"operation":"upsert","request":{"key":"k","metadata":{"ttlInSeconds":"soon"}}}]`, codeBadRequest, "ttlInSeconds"},
		{`[{"operation":"upsert","request":{"key":"k","metadata":{"ttlInSeconds":"0"}}}]`, codeBadRequest, "positive"},
		{`[{"operation":"upsert","request":{"key":"k","metadata":{"ttlInSeconds":"99999999999999"}}}]`, codeBadRequest, "too large"},
		{`[{"operation":"upsert","request":{"key":"` + strings.Repeat("x", MaxStateKeyLength+1) + `"}}]`, codeBadRequest, "limit"},
	}
	for _, tt := range bad {
		_, err := decodeTransaction([]byte(tt.body))
		if err == nil {
			t.Errorf("%.60s: accepted", tt.body)
			continue
		}
		if err.code != tt.code || err.status != 400 || !strings.Contains(err.message, tt.mentions) {
			t.Errorf("%.60s: got %d %s %q, want 400 %s mentioning %q", tt.body, err.status, err.code, err.message, tt.code, tt.mentions)
		}
	}
}

func FuzzDecodeTransaction(f *testing.F) {
	f.Add([]byte(`[{"operation":"upsert","request":{"key":"k","value":{"a":[1,2]},"etag":"1","metadata":{"ttlInSeconds":"5"}}}]`))
	f.Add([]byte(`[{"operation":"delete","request":{"key":"k"}}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"operation":null}]`))
	f.Add([]byte("[{\"operation\":\"delete\",\"request\":{\"key\":\"\xff\xfe\"}}]"))
	f.Add([]byte(`[{"operation":"delete","request":{"key":"\ud800"}},{"operation":"delete","request":{"key":"\ud83d\ude00\ufffd"}}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, err := decodeTransaction(body)
		if err != nil {
			if err.status != 400 || (err.code != codeMalformed && err.code != codeBadRequest) || err.message == "" {
				t.Fatalf("bad error %+v", err)
			}
			return
		}
		// A key is never rewritten: every U+FFFD in the keys was written
		// in the body, as such or as a \ufffd escape.
		written := bytes.Count(body, []byte("\ufffd")) + bytes.Count(bytes.ToLower(body), []byte(`\ufffd`))
		replaced := 0
		for _, op := range ops {
			if stateinput.ValidateKey(op.Key) != nil {
				t.Fatalf("accepted invalid key %q", op.Key)
			}
			if !utf8.ValidString(op.Key) {
				t.Fatalf("accepted key %q, which is not valid UTF-8", op.Key)
			}
			replaced += strings.Count(op.Key, "\ufffd")
			if replaced > written {
				t.Fatalf("key %q has a U+FFFD the body %q did not write", op.Key, body)
			}
			if op.Kind == statestore.Put && !json.Valid(op.Value) {
				t.Fatalf("accepted a value that is not JSON: %q", op.Value)
			}
			if op.TTL < 0 {
				t.Fatalf("negative TTL")
			}
		}
		if err := (statestore.Txn{Ops: ops}).Validate(); err != nil {
			t.Fatalf("decoded transaction does not validate: %v", err)
		}
	})
}

func TestDecodeSchedule(t *testing.T) {
	s, err := decodeSchedule([]byte(`{"data":{"x":1},"dueTime":"1m","period":"R2/PT1S","ttl":"1h","callback":"cb"}`))
	if err != nil || string(s.Data) != `{"x":1}` || s.DueTime != "1m" || s.Period != "R2/PT1S" || s.TTL != "1h" || s.Callback != "cb" {
		t.Fatalf("%+v %v", s, err)
	}
	if s, err := decodeSchedule(nil); err != nil || s.DueTime != "" {
		t.Fatalf("empty body: %+v %v", s, err)
	}
	if s, err := decodeSchedule([]byte(`{"data":null}`)); err != nil || s.Data != nil {
		t.Fatalf("null data: %+v %v", s, err)
	}
	for _, body := range []string{`[]`, `"x"`, `{"dueTime":5}`, `{"data":}`, `{`} {
		if _, err := decodeSchedule([]byte(body)); err == nil || err.code != codeMalformed {
			t.Errorf("%s: err = %v, want %s", body, err, codeMalformed)
		}
	}
}

func FuzzDecodeSchedule(f *testing.F) {
	f.Add([]byte(`{"data":"x","dueTime":"0s","period":"@every 1s","ttl":"PT1H"}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := decodeSchedule(body)
		if err != nil {
			if err.status != 400 || err.message == "" {
				t.Fatalf("bad error %+v", err)
			}
			return
		}
		if s.Data != nil && !json.Valid(s.Data) {
			t.Fatalf("data is not JSON: %q", s.Data)
		}
	})
}

func TestDecodeAppRegistration(t *testing.T) {
	if r, err := decodeAppRegistration([]byte(`{"url":"http://127.0.0.1:3000"}`)); err != nil || r.URL != "http://127.0.0.1:3000" {
		t.Fatalf("%+v %v", r, err)
	}
	for _, body := range []string{``, `{}`, `{"url":1}`, `[]`} {
		if _, err := decodeAppRegistration([]byte(body)); err == nil {
			t.Errorf("%q accepted", body)
		}
	}
}

func FuzzSplitPath(f *testing.F) {
	for _, p := range []string{"/v1.0/actors/T/a/method/m", "/", "/a%2Fb", "/%zz", "//", "/v1.0/actors/T/%2E%2E/state/k"} {
		f.Add(p)
	}
	for _, p := range []string{"/v1.0/actors/T/%FF/method/m", "/v1.0/actors/T/1/state/%ED%A0%80", "/v1.0/actors/T/1/reminders/%C3", "/v1.0-alpha1/apps/%FE"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		segs, err := splitPath([]byte(p))
		if err != nil {
			if err.status != 400 {
				t.Fatalf("status %d", err.status)
			}
			return
		}
		if len(segs) == 0 {
			t.Fatal("no segments for a path starting with /")
		}
		for _, s := range segs {
			if actor.ValidateName(s) == nil && !utf8.ValidString(s) {
				t.Fatalf("segment %q passes as a name but is not valid UTF-8", s)
			}
		}
		if key := joinPath(segs); stateinput.ValidateKey(key) == nil && !utf8.ValidString(key) {
			t.Fatalf("path %q passes as a state key but is not valid UTF-8", key)
		}
		// Whatever route the path takes, the backend sees only valid UTF-8.
		for _, method := range []string{"GET", "PUT", "DELETE"} {
			f := &fakeBackend{}
			srv := New(f, Config{})
			// Blocks served, as on every silo, so that their routes answer
			// as they do there rather than "not configured".
			fb := &fakeBlocks{}
			srv.SetBlocks(Blocks{State: map[string]StateStore{"statestore": fb}, PubSub: map[string]PubSub{"pubsub": fb}, Invoke: &fakeInvoker{}})
			h := srv.Handler()
			resp := do(t, h, method, p, `{"url":"http://x"}`)
			if resp.StatusCode() >= 500 {
				t.Fatalf("%s %q: status %d: %s", method, p, resp.StatusCode(), resp.Body())
			}
			f.mu.Lock()
			seen := []string{f.invoke.ID.Type, f.invoke.ID.ID, f.invoke.Method, f.stateID.Type, f.stateID.ID,
				f.stateKey, f.name, f.appID, f.timer.Name, f.reminder.Name}
			f.mu.Unlock()
			for _, s := range seen {
				if !utf8.ValidString(s) {
					t.Fatalf("%s %q: the backend got %q, which is not valid UTF-8", method, p, s)
				}
			}
		}
	})
}

// TestDecodeTransactionKeysMustBeUTF8 checks that a key is refused, not
// rewritten, when it is not valid UTF-8: raw bytes, or \u escapes of lone
// surrogates, which encoding/json would turn into U+FFFD.
func TestDecodeTransactionKeysMustBeUTF8(t *testing.T) {
	first := `{"operation":"upsert","request":{"key":"ok","value":1}},`
	for _, key := range []string{"\xff\xfe", "a\xc3", "\xed\xa0\x80", `\ud800`, `\udc00`, `x\ud800y`, `\ud800\u0041`, `\ud800\ud800`, `\udfff\ud800`, `\uDBFF`} {
		body := `[` + first + `{"operation":"delete","request":{"key":"` + key + `"}}]`
		ops, err := decodeTransaction([]byte(body))
		if err == nil {
			t.Errorf("key %q: accepted as %q", key, ops[1].Key)
			continue
		}
		if err.status != 400 || err.code != codeBadRequest || !strings.Contains(err.message, "operation 1") || !strings.Contains(err.message, "UTF-8") {
			t.Errorf("key %q: got %d %s %q, want 400 %s naming operation 1 and UTF-8", key, err.status, err.code, err.message, codeBadRequest)
		}
	}
	good := []struct{ json, key string }{
		{`\ud83d\ude00`, "😀"},
		{`\uD83D\uDE00`, "😀"},
		{`\ufffd`, "\ufffd"},
		{"\ufffd", "\ufffd"},
		{`\\ud800`, `\ud800`},
		{`\\\ud83d\ude00`, `\😀`},
		{`é\u00e9`, "éé"},
		{`a\"b\/c`, `a"b/c`},
	}
	for _, g := range good {
		ops, err := decodeTransaction([]byte(`[{"operation":"delete","request":{"key":"` + g.json + `"}}]`))
		if err != nil {
			t.Errorf("key %s: %v", g.json, err)
			continue
		}
		if ops[0].Key != g.key {
			t.Errorf("key %s decoded as %q, want %q", g.json, ops[0].Key, g.key)
		}
	}
	// The one key that is U+FFFD and a lone surrogate do not collide.
	if _, err := decodeTransaction([]byte(`[{"operation":"delete","request":{"key":"\ufffd"}},{"operation":"delete","request":{"key":"\ud800"}}]`)); err == nil {
		t.Error("a lone surrogate was accepted next to U+FFFD")
	}
}

func TestDecodeTransactionRepeatedKeyField(t *testing.T) {
	// As everywhere in encoding/json, the last of repeated fields counts.
	ops, err := decodeTransaction([]byte("[{\"operation\":\"delete\",\"request\":{\"key\":\"\xff\",\"key\":\"ok\"}}]"))
	if err != nil || len(ops) != 1 || ops[0].Key != "ok" {
		t.Errorf("ops %+v, err %v; want the last key, ok", ops, err)
	}
	if _, err := decodeTransaction([]byte("[{\"operation\":\"delete\",\"request\":{\"key\":\"ok\",\"key\":\"\\udc00\"}}]")); err == nil || !strings.Contains(err.message, "UTF-8") {
		t.Errorf("a lone surrogate in the last key field: err %v", err)
	}
}
