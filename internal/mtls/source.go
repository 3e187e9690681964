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
// (or several, concatenated, while a CA is rotated), the process's
// certificate and its key.
type Files struct {
	CA, Cert, Key string
}

// Source keeps a process's certificate and the pool of CAs it trusts, and
// reads them again when their files change: new connections use the new
// ones, and no restart is needed. A change that does not load (a file
// half-written, a key that does not match) keeps the previous material.
type Source struct {
	files Files
	log   *slog.Logger
	// interval is the least time between two looks at the files.
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	cur     *material
	stamp   string // the files' sizes and modification times when last looked at
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
// warning, since peers refuse it and a rotation fixes it without a restart.
func Load(f Files, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Source{files: f, log: log, interval: time.Second, now: time.Now}
	m, err := s.read()
	if err != nil {
		return nil, err
	}
	s.cur, s.stamp, s.checked = m, s.fileStamp(), s.now()
	s.warnExpiry(m)
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
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", s.files.Cert, err)
	}
	cert.Leaf = leaf
	// The chain is checked as of the certificate's own lifetime: expiry is
	// the peers' concern.
	at := leaf.NotAfter.Add(-time.Second)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%s is not issued by the CA of %s: %w", s.files.Cert, s.files.CA, err)
	}
	return &material{cert: &cert, leaf: leaf, pool: pool}, nil
}

func (s *Source) warnExpiry(m *material) {
	if now := s.now(); now.After(m.leaf.NotAfter) {
		s.log.Warn("this process's certificate has expired: peers refuse it until it is issued again",
			"cert", s.files.Cert, "notAfter", m.leaf.NotAfter.UTC())
	} else if now.Before(m.leaf.NotBefore) {
		s.log.Warn("this process's certificate is not valid yet: peers refuse it until then",
			"cert", s.files.Cert, "notBefore", m.leaf.NotBefore.UTC())
	}
}

func (s *Source) fileStamp() string {
	st := ""
	for _, p := range []string{s.files.CA, s.files.Cert, s.files.Key} {
		if fi, err := os.Stat(p); err == nil {
			st += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
		} else {
			st += "-;"
		}
	}
	return st
}

// current returns the material to use now, reading the files again first
// when they changed and the interval has passed since the last look.
func (s *Source) current() *material {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(s.checked) < s.interval {
		return s.cur
	}
	s.checked = now
	stamp := s.fileStamp()
	if stamp == s.stamp {
		return s.cur
	}
	s.stamp = stamp // one warning per change that does not load
	m, err := s.read()
	if err != nil {
		s.log.Warn("mutual TLS: the changed certificate files do not load; the previous ones stay in use", "err", err)
		return s.cur
	}
	s.cur = m
	s.log.Info("mutual TLS: certificates reloaded", "cert", s.files.Cert, "serial", m.leaf.SerialNumber.Text(16), "notAfter", m.leaf.NotAfter.UTC())
	s.warnExpiry(m)
	return m
}

// Leaf returns the certificate in use now.
func (s *Source) Leaf() *x509.Certificate { return s.current().leaf }

// CAFile names the CA file, for messages.
func (s *Source) CAFile() string { return s.files.CA }

// Close releases the source; it holds nothing that needs closing today.
func (s *Source) Close() {}

// ServerConfig is the TLS config of a listener of internal links: TLS 1.3
// only, a client certificate from the current CAs required, and the current
// certificate shown. nextProtos is the ALPN list (gRPC needs "h2").
func (s *Source) ServerConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: nextProtos,
		// A config per handshake, so a reload applies to the next connection.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				NextProtos:   nextProtos,
				Certificates: []tls.Certificate{*m.cert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    m.pool,
			}, nil
		},
	}
}

// ClientConfig is the TLS config of a dialer of internal links: TLS 1.3
// only, the current certificate shown, and the server's certificate
// checked against the current CAs and the name or address dialed
// (tls.Config.ServerName, which gRPC sets from the target).
func (s *Source) ClientConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: nextProtos,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.current().cert, nil
		},
		// The standard verification would use a pool fixed when the config
		// was made; VerifyConnection does the same checks with the current
		// one.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return s.verifyServer(cs)
		},
	}
}

func (s *Source) verifyServer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	host := cs.ServerName
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: s.current().pool, Intermediates: inter, DNSName: host,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return nil
}
