package statestore

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestClaimString(t *testing.T) {
	c := Claim{Cluster: "dev/h-3500", Version: 42, Silo: "h-3500", Incarnation: "9f2c"}
	if got, want := c.String(), "42/h-3500/9f2c"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

func TestClaimValidate(t *testing.T) {
	good := Claim{Cluster: "dev/a", Version: 0, Silo: "s", Incarnation: "i"}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid claim refused: %v", err)
	}
	for name, c := range map[string]Claim{
		"empty cluster":         {Silo: "s", Incarnation: "i"},
		"empty silo":            {Cluster: "c", Incarnation: "i"},
		"empty incarnation":     {Cluster: "c", Silo: "s"},
		"space in cluster":      {Cluster: "a b", Silo: "s", Incarnation: "i"},
		"tab in silo":           {Cluster: "c", Silo: "s\t", Incarnation: "i"},
		"newline":               {Cluster: "c", Silo: "s", Incarnation: "i\n"},
		"no-break space":        {Cluster: "c\u00a0", Silo: "s", Incarnation: "i"},
		"control character":     {Cluster: "c", Silo: "s\x00", Incarnation: "i"},
		"slash in silo":         {Cluster: "c", Silo: "a/b", Incarnation: "i"},
		"slash in incarnation":  {Cluster: "c", Silo: "s", Incarnation: "a/b"},
		"invalid UTF-8 in silo": {Cluster: "c", Silo: "\xff", Incarnation: "i"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: %+v accepted", name, c)
		}
	}
}

func TestFenceRecordEncoding(t *testing.T) {
	c := Claim{Cluster: "dev/h-3500", Version: 18446744073709551615, Silo: "h-3500", Incarnation: "9f2c"}
	if got, want := string(c.HeldRecord()), "granary-shard-fence/1 held dev/h-3500 18446744073709551615 h-3500 9f2c"; got != want {
		t.Fatalf("HeldRecord() = %q, want %q", got, want)
	}
	rel := FenceRecord{Claim: c, Released: true}.Encode()
	if got, want := string(rel), "granary-shard-fence/1 released dev/h-3500 18446744073709551615 h-3500 9f2c"; got != want {
		t.Fatalf("released record = %q, want %q", got, want)
	}
	for _, r := range []FenceRecord{{Claim: c}, {Claim: c, Released: true}, {Claim: Claim{Cluster: "é", Silo: "ü", Incarnation: "0"}}} {
		b := r.Encode()
		got, err := ParseFenceRecord(b)
		if err != nil || got != r {
			t.Errorf("ParseFenceRecord(%q) = %+v, %v; want %+v", b, got, err, r)
		}
	}
}

func TestParseFenceRecordRejects(t *testing.T) {
	for _, bad := range []string{
		"",
		"granary-shard-fence/1",
		"granary-shard-fence/1 held c 1 s", // a field short
		"granary-shard-fence/1 held c 1 s i extra",              // a field more
		"granary-shard-fence/2 held c 1 s i",                    // another format
		"granary-shard-fence/1 taken c 1 s i",                   // unknown state
		"granary-shard-fence/1 Held c 1 s i",                    // state is lower case
		"granary-shard-fence/1 held c 01 s i",                   // leading zero
		"granary-shard-fence/1 held c +1 s i",                   // sign
		"granary-shard-fence/1 held c -1 s i",                   // negative
		"granary-shard-fence/1 held c 18446744073709551616 s i", // overflow
		"granary-shard-fence/1 held c x s i",                    // not a number
		"granary-shard-fence/1 held  1 s i",                     // empty cluster
		"granary-shard-fence/1 held c 1 s ",                     // empty incarnation
		"granary-shard-fence/1  held c 1 s i",                   // double space
		"granary-shard-fence/1 held c 1 s i ",                   // trailing space
		"granary-shard-fence/1 held c 1 s i\n",                  // trailing newline
		"granary-shard-fence/1\theld c 1 s i",                   // tab
		"granary-shard-fence/1 held c 1 a/b i",                  // slash in silo
		"granary-shard-fence/1 held c\x00 1 s i",                // control character
		"granary-shard-fence/1 held \xff 1 s i",                 // invalid UTF-8
		"7",
	} {
		r, err := ParseFenceRecord([]byte(bad))
		if err == nil {
			t.Errorf("ParseFenceRecord(%q) = %+v, want an error", bad, r)
			continue
		}
		if !strings.Contains(err.Error(), "fence record") {
			t.Errorf("ParseFenceRecord(%q): error %q does not say what it expected", bad, err)
		}
	}
}

func FuzzParseFenceRecord(f *testing.F) {
	f.Add([]byte("granary-shard-fence/1 held c 1 s i"))
	f.Add([]byte("granary-shard-fence/1 released dev/x 0 s i"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseFenceRecord(b)
		if err != nil {
			return
		}
		// Only the canonical encoding parses.
		if enc := r.Encode(); !bytes.Equal(enc, b) {
			t.Fatalf("ParseFenceRecord(%q) = %+v, which encodes as %q", b, r, enc)
		}
		if err := r.Claim.Validate(); err != nil {
			t.Fatalf("ParseFenceRecord(%q) gave an invalid claim: %v", b, err)
		}
	})
}

func TestClaimRefusedErrorWrapsErrFenced(t *testing.T) {
	err := error(&ClaimRefusedError{Key: "fence{T/000}", Holder: Claim{Cluster: "dev/other", Version: 3, Silo: "other", Incarnation: "ab"}, Reason: "r"})
	if !errors.Is(err, ErrFenced) {
		t.Fatal("ClaimRefusedError does not wrap ErrFenced")
	}
	for _, s := range []string{"fence{T/000}", `"dev/other"`, "version 3", `"other"`, `"ab"`, "held"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q does not name %s", err, s)
		}
	}
}
