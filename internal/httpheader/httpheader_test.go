package httpheader

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	good := []string{"X-Custom", "a", "Content-Type", "!#$%&'*+-.^_`|~", "0123456789", "ABCxyz", "x.y", "TE"}
	for _, n := range good {
		if !ValidName([]byte(n)) {
			t.Errorf("ValidName(%q) = false", n)
		}
	}
	bad := []string{"", "X Name", " X", "X ", "a:b", "a\tb", "a\r", "a\n", "é", "a\x00", "a\x7f", "(x)", "<x>", "@", ",", ";", "=", "\"", "/", "[", "]", "?", "{", "}", "\\", "\xff"}
	for _, n := range bad {
		if ValidName([]byte(n)) {
			t.Errorf("ValidName(%q) = true", n)
		}
	}
	// Exactly the tchar set, byte by byte.
	const tcharSet = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for c := 0; c < 256; c++ {
		want := strings.IndexByte(tcharSet, byte(c)) >= 0
		if got := ValidName([]byte{byte(c)}); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", string(rune(c)), got, want)
		}
	}
}

func TestHopByHop(t *testing.T) {
	hop := []string{
		"Connection", "connection", "CONNECTION", "Proxy-Connection", "Keep-Alive", "keep-alive", "TE", "te",
		"Transfer-Encoding", "Upgrade", "Host", "Content-Length", "Dapr-Api-Token", "dapr-api-token",
		"Dapr-Reentrancy-Id", "DAPR-REENTRANCY-ID", "Content-Type", "Date", "Server", "Trailer",
		"Proxy-Authenticate", "Proxy-Authorization",
	}
	for _, n := range hop {
		if !HopByHop([]byte(n)) {
			t.Errorf("HopByHop(%q) = false", n)
		}
	}
	end := []string{
		"", "X-Custom", "Accept", "Authorization", "Cookie", "Set-Cookie", "Expect", "Traceparent",
		"Content-Lengthy", "Hos", "Hosts", "Dapr-App-Id", "Content-Encoding", "TF", "Keep_Alive",
		// Case folding must be ASCII letters only: "\r" folds to "-" if one
		// sets bit 5 of every byte.
		"Keep\rAlive", "Content\rType",
	}
	for _, n := range end {
		if HopByHop([]byte(n)) {
			t.Errorf("HopByHop(%q) = true", n)
		}
	}
	if !IsConnection([]byte("cOnNeCtIoN")) || IsConnection([]byte("Connections")) || IsConnection([]byte("Keep-Alive")) {
		t.Error("IsConnection is wrong")
	}
}

func TestConnectionNames(t *testing.T) {
	var c Connection
	if !c.Empty() || c.Names([]byte("X")) {
		t.Fatal("the zero Connection names something")
	}
	c.Add([]byte("close, X-Secret"))
	c.Add([]byte(" x-other ,\tX-Tab\t,,"))
	if c.Empty() {
		t.Fatal("Empty after Add")
	}
	for _, n := range []string{"close", "Close", "X-Secret", "x-secret", "X-Other", "X-TAB"} {
		if !c.Names([]byte(n)) {
			t.Errorf("Names(%q) = false", n)
		}
	}
	for _, n := range []string{"", "X-Secre", "X-Secrets", "X", "other", "X-Secret,", "close, X-Secret"} {
		if c.Names([]byte(n)) {
			t.Errorf("Names(%q) = true", n)
		}
	}
	// More fields than the fixed room.
	var many Connection
	for i := range 10 {
		many.Add([]byte("X-" + strings.Repeat("a", i+1)))
	}
	for i := range 10 {
		if n := "x-" + strings.Repeat("A", i+1); !many.Names([]byte(n)) {
			t.Errorf("field %d of 10: Names(%q) = false", i, n)
		}
	}
	if many.Names([]byte("X-" + strings.Repeat("a", 11))) {
		t.Error("names a field none of the ten lists")
	}
}

// TestNoAllocations checks the common path: names checked, a Connection
// field or two collected and consulted.
func TestNoAllocations(t *testing.T) {
	names := [][]byte{[]byte("X-Request-Id"), []byte("Content-Type"), []byte("Accept"), []byte("Dapr-Reentrancy-Id")}
	conn1, conn2 := []byte("keep-alive, X-Secret"), []byte("X-Other")
	n := testing.AllocsPerRun(100, func() {
		var c Connection
		c.Add(conn1)
		c.Add(conn2)
		for _, name := range names {
			if ValidName(name) && !HopByHop(name) && !c.Names(name) && IsConnection(name) {
				t.Fatal("unreachable")
			}
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per run; want none", n)
	}
}

func FuzzHeaderRules(f *testing.F) {
	for _, s := range []string{"X-Custom", "Connection", "keep-alive", "X Y", "", "é", "close, X-A"} {
		f.Add([]byte(s), []byte(s))
	}
	f.Fuzz(func(t *testing.T, name, list []byte) {
		if ValidName(name) {
			for _, c := range name {
				if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
					t.Fatalf("ValidName(%q) accepted byte %q", name, c)
				}
			}
		}
		if HopByHop(name) && !ValidName(name) {
			t.Fatalf("HopByHop(%q) for an invalid name", name)
		}
		var c Connection
		c.Add(list)
		if c.Names(name) {
			found := false
			for _, e := range strings.Split(string(list), ",") {
				if strings.ToLower(strings.Trim(e, " \t")) == strings.ToLower(string(name)) {
					found = true
				}
			}
			if !found {
				t.Fatalf("Names(%q) in %q, which does not list it", name, list)
			}
		}
	})
}
