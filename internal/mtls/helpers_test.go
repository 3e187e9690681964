package mtls

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer is a log safe for concurrent writers.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

// pki is a CA directory with certificates issued from it.
type pki struct {
	t   *testing.T
	dir string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{t: t, dir: t.TempDir()}
	// From three years ago, so that it can have issued expired certificates.
	if err := InitCA(filepath.Join(p.dir, "ca"), time.Now().Add(-3*365*24*time.Hour), DefaultCAValidity); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pki) caFile() string { return filepath.Join(p.dir, "ca", CACertFile) }

// issue issues name's certificate, valid from now for validity.
func (p *pki) issue(name string, now time.Time, validity time.Duration) Files {
	p.t.Helper()
	cert, key, err := Issue(filepath.Join(p.dir, "ca"), name, filepath.Join(p.dir, "certs"), nil, now, validity)
	if err != nil {
		p.t.Fatal(err)
	}
	return Files{CA: p.caFile(), Cert: cert, Key: key}
}

func (p *pki) source(f Files, log *slog.Logger) *Source {
	p.t.Helper()
	s, err := Load(f, log)
	if err != nil {
		p.t.Fatal(err)
	}
	s.interval = 0 // every handshake looks at the files
	return s
}

// tlsServer accepts TLS connections with cfg and answers each with the
// serial of the client's certificate, until the test ends.
func tlsServer(t *testing.T, cfg *tls.Config, log *slog.Logger) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, cfg)
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				if err := tc.Handshake(); err != nil {
					log.Warn("refused a connection: "+Explain(err, "ca.crt"), "remote", c.RemoteAddr().String())
					return
				}
				io.WriteString(tc, tc.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)+"\n")
			}()
		}
	}()
	return ln.Addr().String()
}

// dial connects with cfg and returns the server's line, or the error.
func dial(addr string, cfg *tls.Config) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && len(b) == 0 {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func clientFor(s *Source, addr string) *tls.Config {
	cfg := s.ClientConfig()
	cfg.ServerName, _, _ = net.SplitHostPort(addr)
	return cfg
}
