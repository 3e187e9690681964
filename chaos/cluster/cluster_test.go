package cluster

import (
	"slices"
	"strings"
	"testing"
)

func argValue(argv []string, flag string) []string {
	var out []string
	for i, a := range argv {
		if a == flag && i+1 < len(argv) {
			out = append(out, argv[i+1])
		}
	}
	return out
}

// TestLayoutRoutesEveryLinkThroughItsProxy checks the command lines: each
// placement node dials every other node through the proxy of that link,
// and each silo reaches placement, the other silos and the store through
// proxies of its own.
func TestLayoutRoutesEveryLinkThroughItsProxy(t *testing.T) {
	c, err := New(Config{Granary: "/bin/granary", RunDir: t.TempDir(), Placement: 3, Silos: 2, Slots: 3,
		StoreAddr: "127.0.0.1:6379", StoreDB: 13})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if got, want := len(c.proxies), 3*2+3*3+3+3*2; got != want {
		t.Errorf("%d proxies, want %d", got, want)
	}
	for _, n := range c.Nodes() {
		peers := strings.Split(argValue(n.spec.Argv, "--peers")[0], ",")
		if len(peers) != 3 {
			t.Fatalf("%s: peers %v", n.Name, peers)
		}
		for _, m := range c.Nodes() {
			want := m.Name + "=" + m.RaftAddr
			if m != n {
				want = m.Name + "=" + m.raftFrom[n.Index].Addr()
			}
			if !slices.Contains(peers, want) {
				t.Errorf("%s: peers %v lack %s", n.Name, peers, want)
			}
		}
	}
	for _, s := range c.Silos() {
		for side := range s.sides {
			argv := s.spec(side, "log").Argv
			if id := argValue(argv, "--id"); len(id) != 1 || id[0] != s.Name {
				t.Errorf("%s: --id %v", s.Name, id)
			}
			if got := argValue(argv, "--internal-addr"); len(got) != 1 || got[0] != s.sides[side].internalAddr {
				t.Errorf("%s side %d: --internal-addr %v", s.Name, side, got)
			}
			placement := argValue(argv, "--placement")[0]
			for i, n := range c.Nodes() {
				if !strings.Contains(placement, n.Name+"="+s.toPlacement[i].Addr()) {
					t.Errorf("%s: --placement %s does not reach %s through its proxy", s.Name, placement, n.Name)
				}
			}
			if store := argValue(argv, "--state-store")[0]; store != "redis://"+s.toStore.Addr()+"/13" {
				t.Errorf("%s: --state-store %s", s.Name, store)
			}
			peers := argValue(argv, "--peer-addr")
			if len(peers) != 2 {
				t.Fatalf("%s: --peer-addr %v", s.Name, peers)
			}
			for _, o := range c.Silos() {
				if o != s && !slices.Contains(peers, o.Name+"="+s.toSilo[o.Index].Addr()) {
					t.Errorf("%s: --peer-addr %v lack %s", s.Name, peers, o.Name)
				}
			}
		}
		if s.sides[0].gatewayURL == s.sides[1].gatewayURL || s.sides[0].internalAddr == s.sides[1].internalAddr {
			t.Errorf("%s: both sides share ports", s.Name)
		}
	}
}

func TestLinks(t *testing.T) {
	c, err := New(Config{Granary: "/bin/granary", RunDir: t.TempDir(), Placement: 3, Silos: 3, Slots: 4,
		StoreAddr: "127.0.0.1:6379"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.Silos()[1]
	if n := len(c.RaftBetween([]int{0})); n != 4 {
		t.Errorf("node 0 from the others: %d links, want 4 (two each way)", n)
	}
	if n := len(c.RaftBetween([]int{0, 1})); n != 4 {
		t.Errorf("nodes 0 and 1 from node 2: %d links, want 4", n)
	}
	if n := len(c.SiloToSilos(s)); n != 6 {
		t.Errorf("silo from the 3 others: %d links, want 6", n)
	}
	if got := c.SiloToPlacement(s, 2); len(got) != 1 || got[0] != s.toPlacement[2] {
		t.Errorf("silo to node 2: %v", got)
	}
	if n := len(c.SiloToPlacement(s)); n != 3 {
		t.Errorf("silo to placement: %d links, want 3", n)
	}
	if _, err := New(Config{Placement: 3, Silos: 3, Slots: 2}); err == nil {
		t.Error("fewer slots than silos accepted")
	}
}
