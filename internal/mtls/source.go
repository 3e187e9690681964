package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// Files are the three files of a process's mutual TLS: the CA certificate
// (or several, concatenated, while the CA is rotated), the process's
// certificate and its key.
type Files struct {
	CA, Cert, Key string
}

// Source keeps a process's certificate and the CAs it trusts, and reads
// them again when their files change, so new connections use the new ones
// without a restart. A change that does not load (a file half-written, a
// key that does not match) keeps the previous material.
type Source struct {
	files Files
	log   *slog.Logger
	// interval is the least time between two looks at the files; now is
	// the clock it is measured on.
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	cur     *material
	stamp   stamp // the files when last read
	checked time.Time
}

// material is one loaded set of files.
type material struct {
	cert *tls.Certificate
	leaf *x509.Certificate
	pool *x509.CertPool
}

// Load reads and checks the three files: the certificate must match its
// key and be issued by one of the CAs. An expired certificate loads, with a
// warning: peers refuse it, and issuing it again fixes that without a
// restart.
func Load(f Files, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Source{files: f, log: log, interval: time.Second, now: time.Now}
	stamp := s.fileStamp()
	m, err := s.read()
	if err != nil {
		return nil, err
	}
	s.cur, s.stamp, s.checked = m, stamp, s.now()
	s.warnValidity(m)
	return s, nil
}

func (s *Source) read() (*material, error) {
	caPEM, err := os.ReadFile(s.files.CA)
	if err != nil {
		return nil, fmt.Errorf("reading the CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", s.files.CA)
	}
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return nil, fmt.Errorf("loading %s with its key %s: %w", s.files.Cert, s.files.Key, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", s.files.Cert, err)
		}
		cert.Leaf = leaf
	}
	// The chain is checked within the certificate's own lifetime: whether
	// it is valid now is for peers to judge.
	opts := x509.VerifyOptions{Roots: pool, CurrentTime: leaf.NotAfter.Add(-time.Second), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := leaf.Verify(opts); err != nil {
		return nil, fmt.Errorf("%s is not issued by the CA in %s: %w", s.files.Cert, s.files.CA, err)
	}
	return &material{cert: &cert, leaf: leaf, pool: pool}, nil
}

func (s *Source) warnValidity(m *material) {
	switch now := s.now(); {
	case now.After(m.leaf.NotAfter):
		s.log.Warn("this process's certificate has expired: peers refuse it until it is issued again",
			"cert", s.files.Cert, "notAfter", m.leaf.NotAfter.UTC())
	case now.Before(m.leaf.NotBefore):
		s.log.Warn("this process's certificate is not valid yet: peers refuse it until then",
			"cert", s.files.Cert, "notBefore", m.leaf.NotBefore.UTC())
	}
}

// stamp is what a look at the three files sees: each one's identity, size
// and modification time, or nil for a file missing.
type stamp [3]os.FileInfo

func (s *Source) fileStamp() stamp {
	var st stamp
	for i, p := range []string{s.files.CA, s.files.Cert, s.files.Key} {
		if fi, err := os.Stat(p); err == nil {
			st[i] = fi
		}
	}
	return st
}

// same reports whether no file changed between a and b. The identity
// catches a rename within the file system's timestamp granularity.
func (a stamp) same(b stamp) bool {
	for i := range a {
		x, y := a[i], b[i]
		if x == nil || y == nil {
			if x != y {
				return false
			}
			continue
		}
		if !os.SameFile(x, y) || x.Size() != y.Size() || !x.ModTime().Equal(y.ModTime()) {
			return false
		}
	}
	return true
}

// current returns the material to use now, reading the files again first
// when the interval has passed since the last look and they changed.
func (s *Source) current() *material {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(s.checked) < s.interval {
		return s.cur
	}
	s.checked = now
	stamp := s.fileStamp()
	if stamp.same(s.stamp) {
		return s.cur
	}
	s.stamp = stamp // so a change that does not load is logged once
	m, err := s.read()
	if err != nil {
		s.log.Warn("mutual TLS: the changed certificate files do not load; the previous ones stay in use", "err", err)
		return s.cur
	}
	s.cur = m
	s.log.Info("mutual TLS: certificates reloaded", "cert", s.files.Cert,
		"serial", m.leaf.SerialNumber.Text(16), "notAfter", m.leaf.NotAfter.UTC())
	s.warnValidity(m)
	return m
}

// Leaf returns the certificate in use now.
func (s *Source) Leaf() *x509.Certificate { return s.current().leaf }

// Close releases the source. It starts no goroutine: the files are looked
// at during handshakes.
func (s *Source) Close() {}

// annotate marks err, a handshake's error, with the CA file the peer was
// checked against, for Explain.
func (s *Source) annotate(err error) error {
	if err == nil {
		return nil
	}
	return &caError{err: err, caFile: s.files.CA}
}

// caError is a handshake error and the CA file of the handshake.
type caError struct {
	err    error
	caFile string
}

func (e *caError) Error() string { return e.err.Error() }
func (e *caError) Unwrap() error { return e.err }

// ServerConfig is the TLS config of a listener of internal links: TLS 1.3
// only, a client certificate issued by the current CAs required, and the
// current certificate shown. nextProtos is the ALPN list ("h2" for gRPC).
func (s *Source) ServerConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: nextProtos,
		ClientAuth: tls.RequireAndVerifyClientCert,
		// A config per handshake, so a reload applies to the next
		// connection.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				NextProtos:   nextProtos,
				Certificates: []tls.Certificate{*m.cert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    m.pool,
				// A handshake resumed from a ticket would skip checking the
				// client against the current CAs.
				SessionTicketsDisabled: true,
			}, nil
		},
	}
}

// ClientConfig is the TLS config of a dialer of internal links: TLS 1.3
// only, the current certificate shown, and the server's certificate
// checked against the current CAs and the server name. The server name is
// the ServerName of the returned config, which the caller sets to the host
// dialed; a copy's is seen only when it is a DNS name, as an IP address is
// not in the handshake. The config refuses every server when it has none.
func (s *Source) ClientConfig(nextProtos ...string) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: nextProtos,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.current().cert, nil
		},
		// The standard verification would use the pool of the moment the
		// config was made; VerifyConnection does the same checks against
		// the current one.
		InsecureSkipVerify: true,
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		name := cs.ServerName
		if name == "" {
			name = cfg.ServerName
		}
		return s.verifyServer(cs, name)
	}
	return cfg
}

// verifyServer checks the server's chain against the current CAs, and its
// names against name.
func (s *Source) verifyServer(cs tls.ConnectionState, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the server sent no certificate")
	}
	if name == "" {
		return errors.New("tls: no server name to check the server's certificate against (set tls.Config.ServerName)")
	}
	if h, _, err := net.SplitHostPort(name); err == nil {
		name = h
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: s.current().pool, Intermediates: inter, DNSName: name, CurrentTime: s.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return nil
}
