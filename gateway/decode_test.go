package gateway

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

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
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, err := decodeTransaction(body)
		if err != nil {
			if err.status != 400 || (err.code != codeMalformed && err.code != codeBadRequest) || err.message == "" {
				t.Fatalf("bad error %+v", err)
			}
			return
		}
		for _, op := range ops {
			if validateStateKey(op.Key) != nil {
				t.Fatalf("accepted invalid key %q", op.Key)
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
	})
}
