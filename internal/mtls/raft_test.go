package mtls

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestRaftStreamLayer(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	log, logs := newLog()
	ln := listen(t)
	advertise := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7001}
	layer := NewRaftStreamLayer(ln, advertise, p.source(p.issue("a", time.Now(), time.Hour), nil), log)
	t.Cleanup(func() { layer.Close() })
	if layer.Addr() != advertise {
		t.Fatalf("Addr %v, want %v", layer.Addr(), advertise)
	}
	type result struct {
		got  string
		peer string
		err  error
	}
	accepted := make(chan result, 8)
	go func() {
		for {
			c, err := layer.Accept()
			if err != nil {
				accepted <- result{err: err}
				return
			}
			b := make([]byte, 5)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = io.ReadFull(c, b)
			accepted <- result{got: string(b), err: err}
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
	next := func() result {
		t.Helper()
		select {
		case r := <-accepted:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("nothing accepted")
			return result{}
		}
	}
	b := NewRaftStreamLayer(listen(t), nil, p.source(p.issue("b", time.Now(), time.Hour), nil), log)
	roundTrip := func() {
		t.Helper()
		c, err := b.Dial(raft.ServerAddress(ln.Addr().String()), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("votes"))
		if r := next(); r.err != nil || r.got != "votes" {
			t.Fatalf("accepted %+v", r)
		}
		reply, _ := io.ReadAll(c)
		if string(reply) != "ok" {
			t.Fatalf("reply %q", reply)
		}
	}
	roundTrip()

	// A plaintext peer and one of another CA are refused and logged;
	// Accept goes on serving the next good one.
	plain, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	plain.Write([]byte("hello raft, no tls here\r\n\r\n"))
	defer plain.Close()
	foreign := NewRaftStreamLayer(listen(t), nil, other.source(other.issue("f", time.Now(), time.Hour), nil), slog.New(slog.DiscardHandler))
	if _, err := foreign.Dial(raft.ServerAddress(ln.Addr().String()), 5*time.Second); err == nil {
		t.Error("a node of another CA trusted this one")
	}
	waitForLog(t, logs, "refused a connection: the peer does not speak TLS", "link=raft")
	roundTrip()
	if strings.Count(logs.String(), "refused a connection") != 2 {
		t.Errorf("want the plaintext peer and the foreign one refused:\n%s", logs.String())
	}

	// Dialing a node that is down is Raft's to report, not a refusal.
	down := listen(t)
	downAddr := down.Addr().String()
	down.Close()
	if _, err := b.Dial(raft.ServerAddress(downAddr), time.Second); err == nil {
		t.Error("dialed a closed port")
	}
	if strings.Contains(logs.String(), downAddr) {
		t.Errorf("a node down was logged as a TLS failure:\n%s", logs.String())
	}

	layer.Close()
	if r := next(); r.err == nil {
		t.Fatalf("Accept after Close: %+v", r)
	}
}
