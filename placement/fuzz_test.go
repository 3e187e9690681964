package placement

import (
	"strings"
	"testing"
)

// FuzzParsePeers: any --peers value either parses into distinct, valid
// peers (one of them self when self is given; an empty list is no list) or
// is refused; never a panic.
func FuzzParsePeers(f *testing.F) {
	for _, s := range []string{"a=127.0.0.1:7001", "a=127.0.0.1:7001,b=127.0.0.1:7002,c=[::1]:7003", "a=", "=x:1", "a=b=c", ",,", "a=h:99999"} {
		f.Add(s, "a")
	}
	f.Fuzz(func(t *testing.T, list, self string) {
		peers, err := ParsePeers(list, self)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		hasSelf := false
		for _, p := range peers {
			if p.ID == "" || p.RaftAddr == "" || seen[p.ID] {
				t.Fatalf("ParsePeers(%q) accepted %+v", list, peers)
			}
			seen[p.ID] = true
			hasSelf = hasSelf || p.ID == self
			if strings.ContainsAny(p.ID, ",=") {
				t.Fatalf("a peer ID holds a separator: %q", p.ID)
			}
		}
		if self != "" && len(peers) > 0 && !hasSelf {
			t.Fatalf("ParsePeers(%q, %q) accepted a list without self", list, self)
		}
	})
}

// FuzzDecodeCommand: a Raft log entry either decodes into a command that
// encodes and decodes again to itself, or is refused; applying whatever
// decodes never panics the FSM.
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range []Command{
		SetClusterID{ID: "c1"},
		JumpVersion{Past: 7},
		SetNodeAddr{RaftID: "p1", GRPCAddr: "127.0.0.1:7101"},
	} {
		b, err := EncodeCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"op":"batch","body":{"joins":[{"id":"s1","incarnation":"i","internalAddr":"h:1","types":["T"]}]}}`))
	f.Add([]byte(`{"v":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := DecodeCommand(data)
		if err != nil {
			return
		}
		again, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatalf("a decoded command does not encode: %v", err)
		}
		if _, err := DecodeCommand(again); err != nil {
			t.Fatalf("a re-encoded command does not decode: %v", err)
		}
		fsm := NewFSM(nil)
		fsm.execute(cmd)
	})
}
