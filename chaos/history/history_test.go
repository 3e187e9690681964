package history

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func ptr(v int64) *int64 { return &v }

func TestParseClaim(t *testing.T) {
	tests := []struct {
		in      string
		want    Claim
		wantErr string
	}{
		{in: "7/silo-a/inc1", want: Claim{7, "silo-a", "inc1"}},
		{in: "0/a/b", want: Claim{0, "a", "b"}},
		{in: "18446744073709551615/a/b", want: Claim{1<<64 - 1, "a", "b"}},
		{in: "", wantErr: "want <version>"},
		{in: "7/a", wantErr: "want <version>"},
		{in: "7/a/b/c", wantErr: "want <version>"},
		{in: "x/a/b", wantErr: "version"},
		{in: "-1/a/b", wantErr: "version"},
		{in: "18446744073709551616/a/b", wantErr: "version"},
		{in: "7//b", wantErr: "empty silo"},
		{in: "7/a/", wantErr: "empty silo"},
	}
	for _, tt := range tests {
		got, err := ParseClaim(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseClaim(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseClaim(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("ParseClaim(%q).String() = %q", tt.in, got.String())
		}
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    Record
		wantErr string
	}{
		{
			name: "ok read",
			line: `{"type":"op","process":3,"kind":"read","key":"a1","result":5,"invoke":10,"complete":20,"outcome":"ok"}`,
			want: Op{Process: 3, Kind: KindRead, Key: "a1", Result: ptr(5), Invoke: 10, Complete: 20, Outcome: OK},
		},
		{
			name: "info cas without completion",
			line: `{"type":"op","process":1,"kind":"cas","key":"a1","value":2,"expect":1,"invoke":10,"outcome":"info","error":"timeout"}`,
			want: Op{Process: 1, Kind: KindCAS, Key: "a1", Value: 2, Expect: 1, Invoke: 10, Outcome: Info, Error: "timeout"},
		},
		{
			name: "incr with request id",
			line: `{"type":"op","process":1,"kind":"incr","key":"c","requestId":"r1","result":4,"invoke":1,"complete":2,"outcome":"ok"}`,
			want: Op{Process: 1, Kind: KindIncr, Key: "c", RequestID: "r1", Result: ptr(4), Invoke: 1, Complete: 2, Outcome: OK},
		},
		{
			name: "turn fills claim fields and commit time",
			line: `{"type":"turn","actorType":"Counter","actor":"7","activation":"12/silo-b/p2","method":"increment","start":100,"end":200,"committed":true}`,
			want: Turn{Type: "Counter", Actor: "7", Silo: "silo-b", Activation: "12/silo-b/p2", Version: 12, Incarnation: "p2", Method: "increment", Start: 100, End: 200, Committed: true, CommitAt: 100},
		},
		{
			name: "turn keeps its own silo",
			line: `{"type":"turn","actor":"7","silo":"silo-a","activation":"12/silo-b/p2","start":100,"end":200}`,
			want: Turn{Actor: "7", Silo: "silo-a", Activation: "12/silo-b/p2", Version: 12, Incarnation: "p2", Start: 100, End: 200},
		},
		{
			name: "tick",
			line: `{"type":"tick","actor":"7","reminder":"r","silo":"silo-a","activation":"3/silo-a/x","due":1000,"at":1003}`,
			want: Tick{Actor: "7", Reminder: "r", Silo: "silo-a", Activation: "3/silo-a/x", Due: 1000, At: 1003},
		},
		{
			name: "fault still open",
			line: `{"type":"fault","kind":"partition","target":"silo-a|placement","start":5}`,
			want: Fault{Kind: "partition", Target: "silo-a|placement", Start: 5},
		},
		{
			name: "lease",
			line: `{"type":"lease","silo":"silo-a","incarnation":"p1","from":10,"until":2010}`,
			want: Lease{Silo: "silo-a", Incarnation: "p1", From: 10, Until: 2010},
		},
		{
			name: "store record",
			line: `{"type":"store","actorType":"Counter","actor":"7","key":"Counter||7||count","claim":"4/silo-a/p1","commitAt":77}`,
			want: StoreRecord{Type: "Counter", Actor: "7", Key: "Counter||7||count", Claim: "4/silo-a/p1", Version: 4, Silo: "silo-a", Incarnation: "p1", CommitAt: 77},
		},
		{name: "unknown type", line: `{"type":"gossip","x":1}`, wantErr: `unknown record type "gossip"`},
		{name: "no type", line: `{"kind":"read"}`, wantErr: "without a type"},
		{name: "not json", line: `op read a1`, wantErr: "not a record"},
		{name: "array", line: `[1,2]`, wantErr: "not a record"},
		{name: "unknown field", line: `{"type":"lease","silo":"a","from":1,"until":2,"color":"red"}`, wantErr: "unknown field"},
		{name: "trailing data", line: `{"type":"lease","silo":"a","from":1,"until":2} {}`, wantErr: "after top-level value"},
		{name: "wrong field type", line: `{"type":"op","process":"one","kind":"read","key":"a","invoke":1,"complete":2,"outcome":"ok"}`, wantErr: "op record"},
		{name: "fractional time", line: `{"type":"lease","silo":"a","from":1.5,"until":2}`, wantErr: "lease record"},
		{name: "unknown kind", line: `{"type":"op","kind":"delete","key":"a","invoke":1,"complete":2,"outcome":"ok"}`, wantErr: `unknown kind "delete"`},
		{name: "unknown outcome", line: `{"type":"op","kind":"read","key":"a","invoke":1,"complete":2,"outcome":"maybe"}`, wantErr: `unknown outcome "maybe"`},
		{name: "completed before invoked", line: `{"type":"op","kind":"read","key":"a","invoke":5,"complete":2,"outcome":"ok"}`, wantErr: "before its invocation"},
		{name: "result on failed op", line: `{"type":"op","kind":"read","key":"a","result":1,"invoke":1,"complete":2,"outcome":"fail"}`, wantErr: "has a result"},
		{name: "result on write", line: `{"type":"op","kind":"write","key":"a","value":1,"result":1,"invoke":1,"complete":2,"outcome":"ok"}`, wantErr: "has a result"},
		{name: "empty key", line: `{"type":"op","kind":"read","invoke":1,"complete":2,"outcome":"ok"}`, wantErr: "empty key"},
		{name: "bad activation", line: `{"type":"turn","actor":"7","activation":"silo-a","start":1,"end":2}`, wantErr: "activation"},
		{name: "version disagrees", line: `{"type":"turn","actor":"7","activation":"3/a/b","version":4,"start":1,"end":2}`, wantErr: "disagrees"},
		{name: "turn ends before start", line: `{"type":"turn","actor":"7","activation":"3/a/b","start":5,"end":2}`, wantErr: "before it started"},
		{name: "commit outside turn", line: `{"type":"turn","actor":"7","activation":"3/a/b","start":1,"end":2,"committed":true,"commitAt":9}`, wantErr: "outside the turn"},
		{name: "commit time without commit", line: `{"type":"turn","actor":"7","activation":"3/a/b","start":1,"end":2,"commitAt":2}`, wantErr: "without a commit"},
		{name: "tick without time", line: `{"type":"tick","actor":"7","reminder":"r"}`, wantErr: "no time"},
		{name: "lease backwards", line: `{"type":"lease","silo":"a","from":5,"until":2}`, wantErr: "before its start"},
		{name: "store without claim", line: `{"type":"store","actor":"7","commitAt":1}`, wantErr: "claim"},
		{name: "store silo disagrees", line: `{"type":"store","actor":"7","claim":"1/a/b","silo":"c","commitAt":1}`, wantErr: "disagrees"},
		{name: "fault without kind", line: `{"type":"fault","start":1}`, wantErr: "empty kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLine([]byte(tt.line))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseLine = %#v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLine: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseLine = %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestWriteThenRead(t *testing.T) {
	recs := []Record{
		Op{Process: 1, Kind: KindWrite, Key: "a", Value: 3, Invoke: 1, Complete: 2, Outcome: OK},
		Op{Process: 2, Kind: KindRead, Key: "a", Invoke: 3, Complete: 4, Outcome: OK},
		Turn{Actor: "a", Activation: "2/s1/i1", Start: 10, End: 20, Committed: true, CommitAt: 15},
		Tick{Actor: "a", Reminder: "r", At: 30},
		Fault{Kind: "kill", Target: "s1", Start: 40, End: 50},
		Lease{Silo: "s1", From: 0, Until: 60},
		StoreRecord{Actor: "a", Claim: "2/s1/i1", CommitAt: 15},
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatalf("Write(%#v): %v", r, err)
		}
	}
	if n := strings.Count(buf.String(), "\n"); n != len(recs) {
		t.Fatalf("wrote %d lines for %d records:\n%s", n, len(recs), buf.String())
	}
	run, err := Read(&buf)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	want := &Run{}
	for _, r := range recs {
		n, err := normalize(r)
		if err != nil {
			t.Fatal(err)
		}
		want.Add(n)
	}
	if !reflect.DeepEqual(run, want) {
		t.Fatalf("read back\n%#v\nwant\n%#v", run, want)
	}
	if run.Turns[0].Version != 2 || run.Writes[0].Silo != "s1" {
		t.Fatalf("claim fields not filled: %#v %#v", run.Turns[0], run.Writes[0])
	}
}

func TestWriterRefusesInvalidRecord(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.Write(Op{Kind: "nope", Key: "a", Outcome: OK}); err == nil {
		t.Fatal("Write accepted an op of unknown kind")
	}
	if err := w.Write(nil); err == nil {
		t.Fatal("Write accepted nil")
	}
	if buf.Len() != 0 {
		t.Fatalf("refused records were written: %q", buf.String())
	}
}

type failingWriter struct{ calls int }

func (f *failingWriter) Write(p []byte) (int, error) {
	f.calls++
	return 0, errors.New("disk full")
}

func TestWriterErrorIsSticky(t *testing.T) {
	fw := &failingWriter{}
	w := NewWriter(fw)
	rec := Lease{Silo: "s", From: 1, Until: 2}
	if err := w.Write(rec); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("first Write = %v, want disk full", err)
	}
	if err := w.Write(rec); err == nil {
		t.Fatal("second Write succeeded after a failed one")
	}
	if fw.calls != 1 {
		t.Fatalf("underlying writer called %d times, want 1", fw.calls)
	}
}

func TestWriterConcurrentLinesStayWhole(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for p := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				op := Op{Process: p, Kind: KindIncr, Key: fmt.Sprintf("k%d", i%5), RequestID: fmt.Sprintf("%d-%d", p, i), Invoke: int64(i), Complete: int64(i + 1), Outcome: OK}
				if err := w.Write(op); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	run, err := Read(&buf)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if len(run.Ops) != writers*each {
		t.Fatalf("read %d ops, want %d", len(run.Ops), writers*each)
	}
	seen := map[string]bool{}
	for _, op := range run.Ops {
		if seen[op.RequestID] {
			t.Fatalf("request %s read twice", op.RequestID)
		}
		seen[op.RequestID] = true
	}
}

func TestReadNamesTheBadLine(t *testing.T) {
	in := strings.Join([]string{
		`{"type":"lease","silo":"a","from":1,"until":2}`,
		``,
		`   `,
		`{"type":"lease","silo":"a","from":3,"until":4}`,
		`{"type":"heartbeat","silo":"a"}`,
		`{"type":"lease","silo":"a","from":5,"until":6}`,
	}, "\n")
	_, err := Read(strings.NewReader(in))
	if err == nil || !strings.Contains(err.Error(), "line 5:") || !strings.Contains(err.Error(), `"heartbeat"`) {
		t.Fatalf("Read = %v, want an error naming line 5 and the type", err)
	}
}

func TestReadSkipsBlankLinesAndCRLF(t *testing.T) {
	in := "{\"type\":\"lease\",\"silo\":\"a\",\"from\":1,\"until\":2}\r\n\r\n{\"type\":\"fault\",\"kind\":\"kill\",\"start\":1}\r\n"
	run, err := Read(strings.NewReader(in))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if len(run.Leases) != 1 || len(run.Faults) != 1 {
		t.Fatalf("read %+v", run)
	}
}

func TestReadRejectsOverlongLine(t *testing.T) {
	in := `{"type":"fault","kind":"` + strings.Repeat("x", MaxLine) + `","start":1}`
	if _, err := Read(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "after line 0") {
		t.Fatalf("Read = %v, want a too-long error", err)
	}
}

func TestReadFile(t *testing.T) {
	if _, err := ReadFile(t.TempDir() + "/missing.jsonl"); err == nil {
		t.Fatal("ReadFile of a missing file succeeded")
	}
}

func TestOpDelta(t *testing.T) {
	for _, tt := range []struct{ value, want int64 }{{0, 1}, {1, 1}, {5, 5}, {-2, -2}} {
		if got := (Op{Kind: KindIncr, Value: tt.value}).Delta(); got != tt.want {
			t.Errorf("Delta of value %d = %d, want %d", tt.value, got, tt.want)
		}
	}
}
