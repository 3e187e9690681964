package actor

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"Counter", true},
		{"a", true},
		{"with space", true},
		{"üñí©ødé", true},
		{"a.b", true},
		{"...", true},
		{"%2F", true},
		{"{tag}", true},
		{strings.Repeat("x", MaxNameLength), true},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{`a\b`, false},
		{"a#b", false},
		{"a?b", false},
		{"a\x00b", false},
		{"tab\there", false},
		{"nl\n", false},
		{"del\x7f", false},
		{strings.Repeat("x", MaxNameLength+1), false},
		{"\xff\xfe", false},
		{"a\xc3", false},
		{"\xc3\x28", false},
		{"\xed\xa0\x80", false}, // a surrogate, encoded
		{"\xc0\xaf", false},     // an overlong "/"
		{"\xf4\x90\x80\x80", false},
		{"\ufffd", true},
		{"\U0001F600", true},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"Counter", "", ".", "a/b", "a\x00", "ok name", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateName(s)
		if err != nil {
			return
		}
		if s == "" || s == "." || s == ".." || len(s) > MaxNameLength || strings.ContainsAny(s, "/\\#?\x00\x7f") {
			t.Fatalf("accepted invalid name %q", s)
		}
		if !utf8.ValidString(s) {
			t.Fatalf("accepted %q, which is not valid UTF-8", s)
		}
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 {
				t.Fatalf("accepted control character in %q", s)
			}
		}
	})
}
