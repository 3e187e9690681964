package history

import (
	"reflect"
	"testing"
)

// FuzzReadLine feeds arbitrary lines to ParseLine: each either decodes or
// errors, never panics, and whatever decodes is written back by Marshal and
// read again unchanged.
func FuzzReadLine(f *testing.F) {
	for _, seed := range []string{
		`{"type":"op","process":3,"kind":"read","key":"a1","result":5,"invoke":10,"complete":20,"outcome":"ok"}`,
		`{"type":"op","process":1,"kind":"cas","key":"a1","value":2,"expect":1,"invoke":10,"outcome":"info"}`,
		`{"type":"turn","actor":"7","activation":"12/silo-b/p2","start":100,"end":200,"committed":true}`,
		`{"type":"tick","actor":"7","reminder":"r","due":1000,"at":1003}`,
		`{"type":"fault","kind":"partition","target":"a","start":5}`,
		`{"type":"lease","silo":"a","from":10,"until":2010}`,
		`{"type":"store","actor":"7","claim":"4/silo-a/p1","commitAt":77}`,
		`{"type":"store","actor":"7","claim":"4/silo-a/p1","commitAt":77} x`,
		`{"type":"nope"}`,
		`null`,
		`{"type":"op","result":null}`,
		"\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, err := ParseLine(line)
		if err != nil {
			if rec != nil {
				t.Fatalf("ParseLine returned %#v with error %v", rec, err)
			}
			return
		}
		b, err := Marshal(rec)
		if err != nil {
			t.Fatalf("Marshal of a decoded record %#v: %v", rec, err)
		}
		again, err := ParseLine(b)
		if err != nil {
			t.Fatalf("ParseLine of Marshal's %s: %v", b, err)
		}
		if !reflect.DeepEqual(rec, again) {
			t.Fatalf("round trip changed the record:\n%#v\n%#v", rec, again)
		}
	})
}
