package mtls

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMutualTLSHandshake(t *testing.T) {
	p := newPKI(t)
	log, _ := newLog()
	server := p.source(p.issue("server", time.Now(), time.Hour), log)
	addr := tlsServer(t, server, log)
	client := p.source(p.issue("client", time.Now(), time.Hour), log)
	cfg := clientFor(client, addr)
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64)
	n, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b[:n])); got != serialOf(client.Leaf()) {
		t.Errorf("the server saw client serial %s, want %s", got, serialOf(client.Leaf()))
	}
	cs := c.ConnectionState()
	if cs.Version != tls.VersionTLS13 || serialOf(cs.PeerCertificates[0]) != serialOf(server.Leaf()) {
		t.Errorf("version %x, server serial %s", cs.Version, serialOf(cs.PeerCertificates[0]))
	}
}

// The server refuses every client that is not of the cluster, and logs
// why in a sentence.
func TestMutualTLSServerRefuses(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	log, logs := newLog()
	server := p.source(p.issue("server", time.Now(), time.Hour), log)
	addr := tlsServer(t, server, log)
	good := p.source(p.issue("good", time.Now(), time.Hour), nil)
	foreign := other.source(other.issue("intruder", time.Now(), time.Hour), nil)
	expired := p.source(p.issue("old", time.Now().Add(-2*year), year), nil)

	// Each client checks the server as the cluster's clients do, except
	// the one of another CA, which would refuse the server first.
	for _, c := range []struct {
		desc string
		cfg  func() *tls.Config
		want string
	}{
		{"another CA", func() *tls.Config {
			cfg := foreign.ClientConfig()
			cfg.VerifyConnection = nil
			return cfg
		}, "the peer's certificate (intruder, issued by Granary cluster CA " + other.caSerial() + ") is not signed by the cluster CA (" + p.caFile() + ")"},
		{"no certificate", func() *tls.Config {
			cfg := clientFor(good, addr)
			cfg.GetClientCertificate = nil
			return cfg
		}, "the peer sent no certificate"},
		{"expired", func() *tls.Config { return clientFor(expired, addr) },
			"the peer's certificate (old) expired at " + expired.Leaf().NotAfter.UTC().Format(time.RFC3339)},
		{"TLS 1.2", func() *tls.Config {
			cfg := clientFor(good, addr)
			cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return cfg
		}, "the peer is not using TLS 1.3"},
	} {
		t.Run(c.desc, func(t *testing.T) {
			if got, err := dial(addr, c.cfg()); err == nil {
				t.Fatalf("served: %+v", got)
			}
			waitForLog(t, logs, "refused a connection: "+c.want)
		})
	}
	t.Run("plaintext", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		c.Close()
		waitForLog(t, logs, "refused a connection: the peer does not speak TLS (first record does not look like a TLS handshake)")
	})
	if got, err := dial(addr, clientFor(good, addr)); err != nil || got.seen != serialOf(good.Leaf()) {
		t.Fatalf("after the refusals, a client of the cluster: %+v, %v", got, err)
	}
}

func (p *pki) caSerial() string { return readCert(p.t, p.caFile()).Subject.SerialNumber }

// The client refuses a server of another CA, one whose certificate does
// not name the address dialed, and any server when it has no name.
func TestMutualTLSClientRefuses(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	log, _ := newLog()
	client := p.source(p.issue("client", time.Now(), time.Hour), nil)
	good := tlsServer(t, p.source(p.issue("server", time.Now(), time.Hour), nil), log)
	fake := tlsServer(t, other.source(other.issue("fake", time.Now(), time.Hour), nil), log)
	for _, c := range []struct {
		desc, addr, name, want string
	}{
		{"another CA", fake, "127.0.0.1", "is not signed by the cluster CA (" + p.caFile() + ")"},
		{"another IP", good, "10.9.9.9", "the peer's certificate is for localhost, server, 127.0.0.1, ::1, not for 10.9.9.9, the address dialed: issue it again with --san 10.9.9.9"},
		{"another name", good, "placement.example", "not for placement.example"},
		{"no name", good, "", "no server name"},
	} {
		t.Run(c.desc, func(t *testing.T) {
			cfg := client.ClientConfig()
			cfg.ServerName = c.name
			_, err := dial(c.addr, cfg)
			if got := Explain(client.annotate(err)); err == nil || !strings.Contains(got, c.want) {
				t.Errorf("dial: %v: %q; want it to say %q", err, got, c.want)
			}
		})
	}
}

// A certificate issued again to the same paths is used by the next
// connection, once the reload interval has passed, without a restart.
func TestMutualTLSRotation(t *testing.T) {
	p := newPKI(t)
	log, logs := newLog()
	clock := &fakeClock{}
	server := p.source(p.issue("server", time.Now(), time.Hour), log)
	server.now, server.interval = clock.Now, time.Second
	addr := tlsServer(t, server, log)
	client := p.source(p.issue("client", time.Now(), time.Hour), log)

	a := serialOf(server.Leaf())
	if got, err := dial(addr, clientFor(client, addr)); err != nil || got.server != a {
		t.Fatalf("before the rotation: %+v, %v; want server serial %s", got, err, a)
	}
	p.issue("server", time.Now(), time.Hour)
	b := serialOf(readCert(t, p.files("server").Cert))
	if got, err := dial(addr, clientFor(client, addr)); err != nil || got.server != a {
		t.Fatalf("within the interval: %+v, %v; want the old serial %s", got, err, a)
	}
	clock.Advance(time.Second)
	if got, err := dial(addr, clientFor(client, addr)); err != nil || got.server != b {
		t.Fatalf("after the interval: %+v, %v; want the new serial %s (old %s)", got, err, b, a)
	}
	waitForLog(t, logs, "mutual TLS: certificates reloaded", "serial="+b, "notAfter=")

	// The client's certificate rotates too: the server sees the new one.
	before := serialOf(client.Leaf())
	p.issue("client", time.Now(), time.Hour)
	if got, err := dial(addr, clientFor(client, addr)); err != nil || got.seen == before || got.seen != serialOf(client.Leaf()) {
		t.Fatalf("after the client's rotation the server saw %+v (%v), the first was %s", got, err, before)
	}

	// A half-written file keeps the previous certificate, with one warning.
	if err := os.WriteFile(p.files("server").Cert, []byte("-----BEGIN CERT"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		clock.Advance(time.Second)
		if got, err := dial(addr, clientFor(client, addr)); err != nil || got.server != b {
			t.Fatalf("with a broken file: %+v, %v; want %s", got, err, b)
		}
	}
	if n := strings.Count(logs.String(), "the previous ones stay in use"); n != 1 {
		t.Errorf("the broken file was warned of %d times:\n%s", n, logs.String())
	}
}

// A new CA replaces the old: both sides trust both while their
// certificates are issued again, then the old is dropped.
func TestMutualTLSRotateCA(t *testing.T) {
	p := newPKI(t)
	log, logs := newLog()
	server := p.source(p.issue("server", time.Now(), time.Hour), log)
	addr := tlsServer(t, server, log)
	client := p.source(p.issue("client", time.Now(), time.Hour), log)
	if _, err := dial(addr, clientFor(client, addr)); err != nil {
		t.Fatal(err)
	}
	// A client that will keep only the old CA.
	old := Files{CA: filepath.Join(p.dir, "old-ca.crt"), Cert: filepath.Join(p.dir, "old", "x.crt"), Key: filepath.Join(p.dir, "old", "x.key")}
	if _, _, err := Issue(p.caDir(), "x", filepath.Join(p.dir, "old"), nil, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	newCA := filepath.Join(p.dir, "ca2")
	if err := InitCA(newCA, time.Now(), DefaultCAValidity); err != nil {
		t.Fatal(err)
	}
	oldPEM := p.readCA()
	newPEM, _ := os.ReadFile(filepath.Join(newCA, CACertFile))
	if err := os.WriteFile(p.caFile(), append(append([]byte{}, oldPEM...), newPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	// Each step leaves a cluster whose new connections work.
	steps := []func(){
		func() {},
		func() { Issue(newCA, "server", p.certsDir(), nil, time.Now(), time.Hour) },
		func() { Issue(newCA, "client", p.certsDir(), nil, time.Now(), time.Hour) },
		func() { os.WriteFile(p.caFile(), newPEM, 0o644) },
	}
	for i, step := range steps {
		step()
		if got, err := dial(addr, clientFor(client, addr)); err != nil || got.seen != serialOf(client.Leaf()) || got.server != serialOf(server.Leaf()) {
			t.Fatalf("step %d of the CA rotation: %+v, %v\n%s", i, got, err, logs.String())
		}
	}
	newSerial := readCert(t, filepath.Join(newCA, CACertFile)).Subject.SerialNumber
	if server.Leaf().Issuer.SerialNumber != newSerial || client.Leaf().Issuer.SerialNumber != newSerial {
		t.Fatalf("issuers %v and %v, want the new CA %s", server.Leaf().Issuer, client.Leaf().Issuer, newSerial)
	}
	// A client still on the old CA alone is now refused.
	os.WriteFile(old.CA, oldPEM, 0o644)
	stale := p.source(old, nil)
	cfg := stale.ClientConfig()
	cfg.VerifyConnection = nil
	if got, err := dial(addr, cfg); err == nil {
		t.Fatalf("a client of the dropped CA was served: %+v", got)
	}
	waitForLog(t, logs, "not signed by the cluster CA")
}

func TestMutualTLSLoadWarnsOfExpiry(t *testing.T) {
	p := newPKI(t)
	log, logs := newLog()
	p.source(p.issue("old", time.Now().Add(-2*year), year), log)
	waitForLog(t, logs, "level=WARN", "has expired")
}
