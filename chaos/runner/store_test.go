package runner

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/granaryhq/granary/chaos/history"
	"github.com/granaryhq/granary/internal/testutil/redistest"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/redisstore"
)

func TestParseAuditKey(t *testing.T) {
	cases := []struct {
		key, typ, id, req string
		bad               bool
	}{
		{key: "granary:d:actor{ChaosRegister/1a2}/r5/state/audit/q17", typ: "ChaosRegister", id: "r5", req: "q17"},
		{key: "granary:d:actor{ChaosCounter/000}/c0/state/audit/q1", typ: "ChaosCounter", id: "c0", req: "q1"},
		{key: "granary:d:fence{ChaosRegister/1a2}", bad: true},
		{key: "granary:d:actor{ChaosRegister}/r5/state/audit/q1", bad: true},
		{key: "granary:d:actor{ChaosRegister/1a2}/r5/state/value", bad: true},
		{key: "granary:d:actor{ChaosRegister/1a2}/r5/state/audit/", bad: true},
		{key: "other:d:actor{ChaosRegister/1a2}/r5/state/audit/q1", bad: true},
	}
	for _, c := range cases {
		typ, id, req, err := parseAuditKey(c.key)
		if c.bad {
			if err == nil {
				t.Errorf("%q accepted as %s/%s/%s", c.key, typ, id, req)
			}
			continue
		}
		if err != nil || typ != c.typ || id != c.id || req != c.req {
			t.Errorf("%q: %q %q %q %v; want %q %q %q", c.key, typ, id, req, err, c.typ, c.id, c.req)
		}
	}
}

func TestDecodeAudit(t *testing.T) {
	for _, v := range []string{
		`{"claim":"4/s1/i1","at":12,"key":"value"}`,
		`"{\"claim\":\"4/s1/i1\",\"at\":12,\"key\":\"value\"}"`,
	} {
		a, err := decodeAudit(v)
		if err != nil || a.Claim != "4/s1/i1" || a.At != 12 || a.Key != "value" {
			t.Errorf("%s: %+v %v", v, a, err)
		}
	}
	for _, v := range []string{`{}`, `12`, `"x"`, `{"claim":""}`, `not json`} {
		if a, err := decodeAudit(v); err == nil {
			t.Errorf("%s accepted as %+v", v, a)
		}
	}
}

// TestCommittedWritesReadsTheStoresLayout writes audit entries through the
// Redis store itself and reads them back the way the suite does, so a change
// of the store's key layout breaks this test rather than silently emptying
// the single-activation checker's store records.
func TestCommittedWritesReadsTheStoresLayout(t *testing.T) {
	url := redistest.URL(t)
	ctx := context.Background()
	store, err := redisstore.Open(ctx, url, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	entries := []struct{ typ, id, req, claim string }{
		{"ChaosRegister", "r1", "q1", "3/s1/i1"},
		{"ChaosRegister", "r2", "q2", "4/s2/i2"},
		{"ChaosCounter", "c1", "q3", "5/s3/i3"},
	}
	for i, e := range entries {
		value := `{"claim":"` + e.claim + `","at":` + string(rune('1'+i)) + `,"key":"value"}`
		err := store.Transact(ctx, statestore.Txn{Ops: []statestore.Op{
			{Kind: statestore.Put, Key: statestore.ActorStateKey(e.typ, e.id, "value"), Value: []byte(`7`)},
			{Kind: statestore.Put, Key: statestore.ActorStateKey(e.typ, e.id, "audit/"+e.req), Value: []byte(value)},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	// An actor of another type: not the workload's, not read.
	if err := store.Transact(ctx, statestore.Txn{Ops: []statestore.Op{
		{Kind: statestore.Put, Key: statestore.ActorStateKey("Shop", "x", "audit/q9"), Value: []byte(`{"claim":"1/s1/i1","at":1}`)},
	}}); err != nil {
		t.Fatal(err)
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	got, err := committedWrites(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b history.StoreRecord) int { return strings.Compare(a.Claim, b.Claim) })
	if len(got) != len(entries) {
		t.Fatalf("read %d records %+v; want %d", len(got), got, len(entries))
	}
	for i, e := range entries {
		r := got[i]
		if r.Type != e.typ || r.Actor != e.id || r.Claim != e.claim || r.Key != "value" || r.CommitAt != int64(i+1) {
			t.Errorf("record %d: %+v; want %s/%s under %s at %d", i, r, e.typ, e.id, e.claim, i+1)
		}
		if _, err := r.Normalize(); err != nil {
			t.Errorf("record %d: %v", i, err)
		}
	}
}
