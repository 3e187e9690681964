package mtls

import (
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestInitCARefusesToOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if err := InitCA(dir, time.Now(), DefaultCAValidity); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	err := InitCA(dir, time.Now(), DefaultCAValidity)
	if err == nil || !strings.Contains(err.Error(), "never overwritten") {
		t.Fatalf("second InitCA: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if string(before) != string(after) {
		t.Fatal("the CA key changed")
	}
	for name, mode := range map[string]os.FileMode{CACertFile: 0o644, CAKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, %v; want %v", name, fi.Mode().Perm(), err, mode)
		}
	}
	ca, _, err := loadCA(dir)
	if err != nil || !ca.IsCA || !strings.HasPrefix(ca.Subject.CommonName, "Granary cluster CA ") || ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("CA %+v, %v", ca, err)
	}
}

func TestIssue(t *testing.T) {
	p := newPKI(t)
	out := filepath.Join(p.dir, "out")
	certPath, keyPath, err := Issue(filepath.Join(p.dir, "ca"), "silo-1", out, []string{"10.0.0.7", "silo-1.internal"}, time.Now(), DefaultCertValidity)
	if err != nil {
		t.Fatal(err)
	}
	if certPath != filepath.Join(out, "silo-1.crt") || keyPath != filepath.Join(out, "silo-1.key") {
		t.Fatalf("paths %s %s", certPath, keyPath)
	}
	if fi, _ := os.Stat(keyPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", fi.Mode().Perm())
	}
	s, err := Load(Files{CA: p.caFile(), Cert: certPath, Key: keyPath}, nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf := s.Leaf()
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(ips, []string{"127.0.0.1", "::1", "10.0.0.7"}) || !slices.Equal(leaf.DNSNames, []string{"localhost", "silo-1", "silo-1.internal"}) {
		t.Errorf("SANs %v %v", ips, leaf.DNSNames)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) || leaf.IsCA {
		t.Errorf("usages %v, CA %v", leaf.ExtKeyUsage, leaf.IsCA)
	}
	for _, c := range []struct{ name, san, want string }{
		{".hidden", "", "name"}, {"a/b", "", "name"}, {"", "", "name"},
		{"ok", "has space", "neither"}, {"ok", "a..b", "neither"},
	} {
		var sans []string
		if c.san != "" {
			sans = []string{c.san}
		}
		if _, _, err := Issue(filepath.Join(p.dir, "ca"), c.name, out, sans, time.Now(), time.Hour); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Issue(%q, san %q): %v", c.name, c.san, err)
		}
	}
	_, _, err = Issue(filepath.Join(p.dir, "nothing"), "x", out, nil, time.Now(), time.Hour)
	if err == nil || !strings.Contains(err.Error(), "run granary ca init --dir") {
		t.Errorf("Issue without a CA: %v", err)
	}
}

func TestLoadRefusesMismatches(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	a, b := p.issue("a", time.Now(), time.Hour), p.issue("b", time.Now(), time.Hour)
	foreign := other.issue("f", time.Now(), time.Hour)
	for _, c := range []struct {
		name string
		f    Files
		want string
	}{
		{"key of another cert", Files{CA: a.CA, Cert: a.Cert, Key: b.Key}, "with its key"},
		{"cert of another CA", Files{CA: a.CA, Cert: foreign.Cert, Key: foreign.Key}, "not issued by the CA"},
		{"missing CA", Files{CA: filepath.Join(p.dir, "none.crt"), Cert: a.Cert, Key: a.Key}, "CA certificate"},
		{"CA file not PEM", Files{CA: a.Key, Cert: a.Cert, Key: a.Key}, "no PEM certificate"},
	} {
		if _, err := Load(c.f, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestMutualTLSRefusals(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	log, logs := newLog()
	server := p.source(p.issue("server", time.Now(), time.Hour), log)
	addr := tlsServer(t, server.ServerConfig(), log)

	good := p.source(p.issue("good", time.Now(), time.Hour), nil)
	if got, err := dial(addr, clientFor(good, addr)); err != nil || got != good.Leaf().SerialNumber.Text(16) {
		t.Fatalf("a client of the cluster CA: %q, %v", got, err)
	}

	foreign := other.source(other.issue("intruder", time.Now(), time.Hour), nil)
	cfg := foreign.ClientConfig()
	cfg.InsecureSkipVerify, cfg.VerifyConnection = true, nil // it would refuse the server first
	if got, err := dial(addr, cfg); err == nil && got != "" {
		t.Fatalf("a client of another CA was served: %q", got)
	}
	// A server of another CA is refused by a good client, too.
	otherServer := other.source(other.issue("fake-server", time.Now(), time.Hour), nil)
	fakeAddr := tlsServer(t, otherServer.ServerConfig(), log)
	if _, err := dial(fakeAddr, clientFor(good, fakeAddr)); err == nil || !strings.Contains(Explain(err, "ca.crt"), "not signed by the cluster CA") {
		t.Fatalf("a server of another CA: %v (%s)", err, Explain(err, "ca.crt"))
	}

	noCert := good.ClientConfig()
	noCert.GetClientCertificate = nil
	if got, err := dial(addr, noCert); err == nil && got != "" {
		t.Fatalf("a client without a certificate was served: %q", got)
	}

	expired := p.source(p.issue("old", time.Now().Add(-2*365*24*time.Hour), 365*24*time.Hour), nil)
	if got, err := dial(addr, clientFor(expired, addr)); err == nil && got != "" {
		t.Fatalf("a client with an expired certificate was served: %q", got)
	}

	waitFor(t, func() bool {
		s := logs.String()
		return strings.Contains(s, "is not signed by the cluster CA") && strings.Contains(s, "sent no certificate") && strings.Contains(s, "expired at")
	}, logs)
}

func waitFor(t *testing.T, cond func() bool, logs *logBuffer) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("the refusals were not logged as expected:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRotationWithoutRestart(t *testing.T) {
	p := newPKI(t)
	log, logs := newLog()
	serverFiles := p.issue("server", time.Now(), time.Hour)
	server := p.source(serverFiles, log)
	addr := tlsServer(t, server.ServerConfig(), log)
	clientFiles := p.issue("client", time.Now(), time.Hour)
	client := p.source(clientFiles, log)
	first := client.Leaf().SerialNumber.Text(16)
	if got, err := dial(addr, clientFor(client, addr)); err != nil || got != first {
		t.Fatalf("before the rotation: %q, %v", got, err)
	}
	// The same paths, a new certificate.
	rotated := p.issue("client", time.Now(), time.Hour)
	if rotated != clientFiles {
		t.Fatalf("reissued to other paths: %+v", rotated)
	}
	got, err := dial(addr, clientFor(client, addr))
	if err != nil || got == first || got != client.Leaf().SerialNumber.Text(16) {
		t.Fatalf("after the rotation the server saw %q (%v), the first was %s", got, err, first)
	}
	if !strings.Contains(logs.String(), "certificates reloaded") {
		t.Errorf("no reload logged:\n%s", logs.String())
	}

	// A half-written file keeps the previous certificate.
	if err := os.WriteFile(clientFiles.Cert, []byte("-----BEGIN CERT"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got2, err := dial(addr, clientFor(client, addr)); err != nil || got2 != got {
		t.Fatalf("with a broken file: %q, %v", got2, err)
	}
	if !strings.Contains(logs.String(), "the previous ones stay in use") {
		t.Errorf("the broken file was not logged")
	}

	// A new CA: both sides trust old and new while the certificates move.
	if err := InitCA(filepath.Join(p.dir, "ca2"), time.Now(), DefaultCAValidity); err != nil {
		t.Fatal(err)
	}
	oldCA, _ := os.ReadFile(p.caFile())
	newCA, _ := os.ReadFile(filepath.Join(p.dir, "ca2", CACertFile))
	if err := os.WriteFile(p.caFile(), append(oldCA, newCA...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"server", "client"} {
		if _, _, err := Issue(filepath.Join(p.dir, "ca2"), name, filepath.Join(p.dir, "certs"), nil, time.Now(), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(p.caFile(), newCA, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := dial(addr, clientFor(client, addr)); err != nil || got != client.Leaf().SerialNumber.Text(16) {
		t.Fatalf("after the CA rotation: %q, %v", got, err)
	}
	if !strings.HasPrefix(client.Leaf().Issuer.CommonName, "Granary cluster CA ") || server.Leaf().SerialNumber.Cmp(client.Leaf().SerialNumber) == 0 {
		t.Fatal("unexpected certificates")
	}
}

func TestRaftStreamLayer(t *testing.T) {
	p := newPKI(t)
	log, logs := newLog()
	a := p.source(p.issue("a", time.Now(), time.Hour), log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	layer := NewRaftStreamLayer(ln, ln.Addr(), a, log)
	defer layer.Close()
	if layer.Addr() != ln.Addr() {
		t.Fatalf("Addr %v", layer.Addr())
	}
	accepted := make(chan string, 4)
	go func() {
		for {
			c, err := layer.Accept()
			if err != nil {
				close(accepted)
				return
			}
			b := make([]byte, 5)
			io.ReadFull(c, b)
			accepted <- string(b)
			c.Close()
		}
	}()
	// A plaintext peer is refused and logged; the next good one is served.
	plain, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	plain.Write([]byte("hello raft, no tls here\r\n\r\n"))
	b := p.source(p.issue("b", time.Now(), time.Hour), nil)
	dialer := NewRaftStreamLayer(mustListen(t), nil, b, nil)
	c, err := dialer.Dial(raft.ServerAddress(ln.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("votes"))
	select {
	case got := <-accepted:
		if got != "votes" {
			t.Fatalf("accepted %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the good peer was not accepted")
	}
	c.Close()
	plain.Close()
	waitFor(t, func() bool { return strings.Contains(logs.String(), "does not speak TLS") }, logs)
	layer.Close()
	select {
	case _, ok := <-accepted:
		if ok {
			t.Fatal("accepted after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not fail after Close")
	}
}

func mustListen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestExplain(t *testing.T) {
	p := newPKI(t)
	leaf := p.source(p.issue("n", time.Now(), time.Hour), nil).Leaf()
	for _, c := range []struct {
		err  error
		want string
	}{
		{x509.UnknownAuthorityError{Cert: leaf}, "not signed by the cluster CA (ca.crt)"},
		{x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired}, "expired at"},
		{x509.HostnameError{Certificate: leaf, Host: "10.1.1.1"}, "not for 10.1.1.1"},
		{errors.New("tls: client didn't provide a certificate"), "sent no certificate"},
		{errors.New("remote error: tls: certificate required"), "sent no certificate"},
		{errors.New("tls: client offered only unsupported versions: [303]"), "TLS 1.3"},
		{errors.New("remote error: tls: bad certificate"), "refused this process's certificate"},
		{io.EOF, "closed the connection"},
		{errors.New("something else"), "TLS handshake failed: something else"},
	} {
		if got := Explain(c.err, "ca.crt"); !strings.Contains(got, c.want) {
			t.Errorf("Explain(%v) = %q, want it to say %q", c.err, got, c.want)
		}
	}
	if Explain(nil, "") != "" {
		t.Error("Explain(nil)")
	}
}
