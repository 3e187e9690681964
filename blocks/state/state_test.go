package state

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/blocks"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

// directActors calls actors on one runtime, as a single silo's gateway does.
type directActors struct{ rt *actor.Runtime }

func (d directActors) CallActor(ctx context.Context, id actor.ID, method string, body []byte) ([]byte, error) {
	resp, err := d.rt.Invoke(ctx, id, &actor.Request{Method: method, Body: body})
	if err != nil {
		return nil, err
	}
	defer resp.Release()
	return append([]byte(nil), resp.Body...), nil
}

func newService(t *testing.T) (*Service, statestore.Store, *actor.SingleSilo) {
	t.Helper()
	store := memstore.New()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := actor.NewSingleSilo(store, statestore.Claim{Cluster: "test", Version: 1, Silo: "s", Incarnation: actor.NewIncarnation()}, log)
	rt, err := actor.New(actor.Config{Store: store, Placement: p, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	s, err := New(Config{Name: "statestore", Runtime: rt, Store: store, Actors: directActors{rt}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return s, store, p
}

func serve(t *testing.T, s *Service, method, path, body string) (*fasthttp.RequestCtx, error) {
	t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI("/v1.0/state/statestore" + path)
	ctx.Request.SetBodyString(body)
	var rest []string
	if p := strings.TrimPrefix(path, "/"); p != "" {
		rest = strings.Split(p, "/")
	}
	return &ctx, s.Serve(&ctx, method, rest)
}

func TestPartitionsSpreadKeys(t *testing.T) {
	seen := map[string]int{}
	for i := range 10000 {
		p := partitionOf("key-" + strconv.Itoa(i))
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n >= Partitions {
			t.Fatalf("partition %q out of range", p)
		}
		seen[p]++
	}
	if len(seen) != Partitions {
		t.Fatalf("10,000 keys fell on %d of %d partitions", len(seen), Partitions)
	}
	for p, n := range seen {
		if n < 10 || n > 80 {
			t.Errorf("partition %s holds %d of 10,000 keys (expected about 39)", p, n)
		}
	}
	if partitionOf("a") != partitionOf("a") {
		t.Fatal("a key's partition is not stable")
	}
}

func TestDecodeSave(t *testing.T) {
	for _, c := range []struct {
		body string
		want []writeOp
		code string // error code; "" when the body is valid
	}{
		{`[]`, []writeOp{}, ""},
		{`[{"key":"a","value":1}]`, []writeOp{{Key: "a", Value: []byte("1")}}, ""},
		{`[{"key":"a","value":"x","etag":"7"}]`, []writeOp{{Key: "a", Value: []byte(`"x"`), ETag: "7"}}, ""},
		{`[{"key":"a","value":1,"etag":7}]`, []writeOp{{Key: "a", Value: []byte("1"), ETag: "7"}}, ""},
		{`[{"key":"a","value":1,"options":{"concurrency":"first-write","consistency":"strong"}}]`, []writeOp{{Key: "a", Value: []byte("1"), IfAbsent: true}}, ""},
		{`[{"key":"a","value":1,"metadata":{"ttlInSeconds":"60"}}]`, []writeOp{{Key: "a", Value: []byte("1"), TTL: 60}}, ""},
		{`[{"key":"a","value":1,"metadata":{"ttlInSeconds":"-1"}}]`, []writeOp{{Key: "a", Value: []byte("1")}}, ""},
		{`[{"key":"a"}]`, []writeOp{{Key: "a"}}, ""},
		{``, nil, "ERR_MALFORMED_REQUEST"},
		{`{}`, nil, "ERR_MALFORMED_REQUEST"},
		{`[{"key":1}]`, nil, "ERR_MALFORMED_REQUEST"},
		{`[{"key":""}]`, nil, "ERR_MALFORMED_REQUEST"},
		{`[{"key":"a||b"}]`, nil, "ERR_MALFORMED_REQUEST"},
		{`[{"key":"\ud800"}]`, nil, "ERR_MALFORMED_REQUEST"},
		{`[{"key":"a","etag":{}}]`, nil, "ERR_STATE_SAVE"},
		{`[{"key":"a","options":{"concurrency":"x"}}]`, nil, "ERR_MALFORMED_REQUEST"},
		{`[{"key":"a","options":{"consistency":"x"}}]`, nil, "ERR_MALFORMED_REQUEST"},
		{`[{"key":"a","metadata":{"ttlInSeconds":"0"}}]`, nil, "ERR_MALFORMED_REQUEST"},
		{`[{"key":"a","metadata":{"ttlInSeconds":"1e9"}}]`, nil, "ERR_MALFORMED_REQUEST"},
	} {
		got, e := decodeSave([]byte(c.body), false)
		if c.code != "" {
			if e == nil || e.Code != c.code || e.Status != http.StatusBadRequest {
				t.Errorf("%s: %v, want 400 %s", c.body, e, c.code)
			}
			continue
		}
		if e != nil {
			t.Errorf("%s: %v", c.body, e)
			continue
		}
		if len(got) != len(c.want) {
			t.Errorf("%s: %+v, want %+v", c.body, got, c.want)
			continue
		}
		for i := range got {
			g, w := got[i], c.want[i]
			if g.Key != w.Key || string(g.Value) != string(w.Value) || g.ETag != w.ETag || g.IfAbsent != w.IfAbsent || g.TTL != w.TTL || g.Delete != w.Delete {
				t.Errorf("%s: op %d = %+v, want %+v", c.body, i, g, w)
			}
		}
	}
}

func TestDecodeTransaction(t *testing.T) {
	ops, e := decodeTransaction([]byte(`{"operations":[{"operation":"upsert","request":{"key":"a","value":1,"etag":"3"}},{"operation":"delete","request":{"key":"b","etag":"4"}}],"metadata":{"k":"v"}}`), false)
	if e != nil || len(ops) != 2 || ops[0].Delete || ops[0].ETag != "3" || !ops[1].Delete || ops[1].Key != "b" || ops[1].ETag != "4" {
		t.Fatalf("%+v, %v", ops, e)
	}
	for _, c := range []struct{ body, code string }{
		{`[]`, "ERR_MALFORMED_REQUEST"},
		{`{"operations":[{"request":{"key":"a"}}]}`, "ERR_MALFORMED_REQUEST"},
		{`{"operations":[{"operation":"upsert"}]}`, "ERR_MALFORMED_REQUEST"},
		{`{"operations":[{"operation":"get","request":{"key":"a"}}]}`, "ERR_NOT_SUPPORTED_STATE_OPERATION"},
		{`{"operations":[{"operation":"upsert","request":{"key":"a","etag":[]}}]}`, "ERR_STATE_TRANSACTION"},
	} {
		if _, e := decodeTransaction([]byte(c.body), false); e == nil || e.Code != c.code {
			t.Errorf("%s: %v, want %s", c.body, e, c.code)
		}
	}
}

func TestDecodeBulkGet(t *testing.T) {
	keys, e := decodeBulkGet([]byte(`{"keys":["a","b"],"parallelism":10}`))
	if e != nil || len(keys) != 2 || keys[0] != "a" || keys[1] != "b" {
		t.Fatalf("%v, %v", keys, e)
	}
	for _, body := range []string{`["a"]`, `{"keys":"a"}`, `{"keys":[""]}`, `{"keys":["a"],"parallelism":-1}`, `{"keys":["\ud800"]}`} {
		if _, e := decodeBulkGet([]byte(body)); e == nil || e.Code != "ERR_MALFORMED_REQUEST" {
			t.Errorf("%s: %v, want ERR_MALFORMED_REQUEST", body, e)
		}
	}
}

// Writes land where reads look for them, under the partition's actor state.
func TestWritesAreKeptUnderTheirPartition(t *testing.T) {
	s, store, _ := newService(t)
	if _, err := serve(t, s, "POST", "", `[{"key":"a","value":1},{"key":"b","value":2}]`); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"a": "1", "b": "2"} {
		item, err := store.Get(context.Background(), statestore.ActorStateKey(TypeName("statestore"), partitionOf(key), key))
		if err != nil || string(item.Value) != want {
			t.Fatalf("%s stored as %q (%v), want %s", key, item.Value, err, want)
		}
	}
}

// A partition refuses a key that is not its own: a write for it would be
// stored where no read looks.
func TestPartitionRefusesAnotherPartitionsKey(t *testing.T) {
	s, _, _ := newService(t)
	other := "0"
	if partitionOf("a") == other {
		other = "1"
	}
	_, err := s.actors.CallActor(context.Background(), actor.ID{Type: s.typ, ID: other}, methodSave, []byte(`[{"k":"a","v":1}]`))
	if be, ok := errors.AsType[*blocks.Error](err); !ok || be.Status != http.StatusBadRequest {
		t.Fatalf("a write for another partition's key: %v, want a 400", err)
	}
}

// A single-partition write is fenced: once the shard's claim is another
// silo's, the partition's write is refused and nothing is stored.
func TestPartitionWritesAreFenced(t *testing.T) {
	s, store, _ := newService(t)
	ctx := context.Background()
	if _, err := serve(t, s, "POST", "", `[{"key":"a","value":1}]`); err != nil {
		t.Fatal(err)
	}
	// Another silo takes the shard over in the store.
	id := actor.ID{Type: s.typ, ID: partitionOf("a")}
	fenceKey := statestore.ShardFenceKey(id.Type, statestore.ShardOf(id.Type, id.ID))
	other := statestore.Claim{Cluster: "test", Version: 2, Silo: "other", Incarnation: "x"}
	if err := store.Transact(ctx, statestore.Txn{Ops: []statestore.Op{{Kind: statestore.Put, Key: fenceKey, Value: other.HeldRecord()}}}); err != nil {
		t.Fatal(err)
	}
	_, err := serve(t, s, "POST", "", `[{"key":"a","value":2}]`)
	if err == nil {
		t.Fatal("a write after the shard was claimed elsewhere succeeded")
	}
	item, _ := store.Get(ctx, s.storeKey("a"))
	if string(item.Value) != "1" {
		t.Fatalf("a = %s after the fenced write, want 1", item.Value)
	}
}

func FuzzDecodeSave(f *testing.F) {
	for _, s := range []string{`[{"key":"a","value":1}]`, `[{"key":"a","etag":1,"options":{"concurrency":"first-write"},"metadata":{"ttlInSeconds":"5"}}]`, `[`, `[{"key":"\u0000"}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, e := decodeSave(body, false)
		if e != nil {
			if e.Status != http.StatusBadRequest {
				t.Fatalf("%q: status %d", body, e.Status)
			}
			return
		}
		for _, op := range ops {
			if checkKey(op.Key) != nil {
				t.Fatalf("%q: accepted key %q", body, op.Key)
			}
			if err := (statestore.Txn{Ops: []statestore.Op{op.storeOp()}}).Validate(); err != nil {
				t.Fatalf("%q: op %+v is not a valid store op: %v", body, op, err)
			}
		}
	})
}

func FuzzDecodeTransaction(f *testing.F) {
	for _, s := range []string{`{"operations":[{"operation":"upsert","request":{"key":"a","value":1}}]}`, `{"operations":[{"operation":"delete","request":{"key":"a","etag":"1"}}]}`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, e := decodeTransaction(body, false)
		if e != nil {
			if e.Status != http.StatusBadRequest {
				t.Fatalf("%q: status %d", body, e.Status)
			}
			return
		}
		for _, op := range ops {
			if err := (statestore.Txn{Ops: []statestore.Op{op.storeOp()}}).Validate(); err != nil {
				t.Fatalf("%q: op %+v is not a valid store op: %v", body, op, err)
			}
		}
	})
}

func FuzzDecodeBulkGet(f *testing.F) {
	f.Add([]byte(`{"keys":["a","b"],"parallelism":2}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, e := decodeBulkGet(body)
		if e != nil {
			return
		}
		for _, k := range keys {
			if checkKey(k) != nil {
				t.Fatalf("%q: accepted key %q", body, k)
			}
		}
	})
}

// Bytes that are not JSON are stored as they are with base64 values, and
// read back as they are by get; bulk get answers them base64 when asked,
// else as a JSON string.
func TestBase64ValuesKeepBytes(t *testing.T) {
	s, _, _ := newService(t)
	run := func(method, path, body string, b64 bool) *fasthttp.RequestCtx {
		t.Helper()
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetBodyString(body)
		if b64 {
			ctx.Request.Header.Set(HeaderValueEncoding, "base64")
		}
		var rest []string
		if p := strings.TrimPrefix(path, "/"); p != "" {
			rest = strings.Split(p, "/")
		}
		if err := s.Serve(&ctx, method, rest); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return &ctx
	}
	run("POST", "", `[{"key":"bin","value":"aGVsbG8A/w=="},{"key":"j","value":"eyJhIjoxfQ=="}]`, true) // "hello\x00\xff", {"a":1}
	if got := run("GET", "/bin", "", false).Response.Body(); string(got) != "hello\x00\xff" {
		t.Fatalf("get bin: %q", got)
	}
	if got := run("GET", "/j", "", false).Response.Body(); string(got) != `{"a":1}` {
		t.Fatalf("get j: %q", got)
	}
	b64 := string(run("POST", "/bulk", `{"keys":["bin","j"]}`, true).Response.Body())
	if !strings.Contains(b64, `"data":"aGVsbG8A/w=="`) || !strings.Contains(b64, `"data":"eyJhIjoxfQ=="`) {
		t.Fatalf("bulk get with base64: %s", b64)
	}
	plain := string(run("POST", "/bulk", `{"keys":["bin","j"]}`, false).Response.Body())
	if !strings.Contains(plain, `"data":"hello\u0000\ufffd"`) || !strings.Contains(plain, `"data":{"a":1}`) {
		t.Fatalf("bulk get: %s", plain)
	}
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.Set(HeaderValueEncoding, "base64")
	ctx.Request.SetBodyString(`[{"key":"x","value":{"not":"base64"}}]`)
	if err := s.Serve(&ctx, "POST", nil); err == nil {
		t.Fatal("a base64 save of a JSON object was accepted")
	}
}
