package mtls

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

// waitForLog waits until the log has every one of want.
func waitForLog(t *testing.T, logs *logBuffer, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, missing := logs.String(), ""
		for _, w := range want {
			if !strings.Contains(s, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say %q:\n%s", missing, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// year is how long the certificates of the tests that expire live.
const year = 365 * 24 * time.Hour

// pki is a CA directory with the certificates issued from it.
type pki struct {
	t   *testing.T
	dir string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{t: t, dir: t.TempDir()}
	// From three years ago, so that it can have issued expired certificates.
	if err := InitCA(p.caDir(), time.Now().Add(-3*year), DefaultCAValidity); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pki) caDir() string    { return filepath.Join(p.dir, "ca") }
func (p *pki) caFile() string   { return filepath.Join(p.caDir(), CACertFile) }
func (p *pki) certsDir() string { return filepath.Join(p.dir, "certs") }
func (p *pki) readCA() []byte   { b, _ := os.ReadFile(p.caFile()); return b }
func (p *pki) files(n string) Files {
	return Files{CA: p.caFile(), Cert: filepath.Join(p.certsDir(), n+".crt"), Key: filepath.Join(p.certsDir(), n+".key")}
}

// issue issues name's certificate, valid from now for validity.
func (p *pki) issue(name string, now time.Time, validity time.Duration, sans ...string) Files {
	p.t.Helper()
	cert, key, err := Issue(p.caDir(), name, p.certsDir(), sans, now, validity)
	if err != nil {
		p.t.Fatal(err)
	}
	return Files{CA: p.caFile(), Cert: cert, Key: key}
}

// source loads f, looking at the files again at every handshake. A nil
// log discards.
func (p *pki) source(f Files, log *slog.Logger) *Source {
	p.t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := Load(f, log)
	if err != nil {
		p.t.Fatal(err)
	}
	s.interval = 0
	return s
}

// fakeClock is a clock tests move by hand.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// tlsServer accepts connections with src's ServerConfig and answers each
// with the serial of the client's certificate, until the test ends. A
// refused handshake is logged as the transports log it.
func tlsServer(t *testing.T, src *Source, log *slog.Logger) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cfg := src.ServerConfig()
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
					log.Warn("refused a connection: "+Explain(src.annotate(err)), "remote", c.RemoteAddr().String())
					return
				}
				io.WriteString(tc, serialOf(tc.ConnectionState().PeerCertificates[0])+"\n")
			}()
		}
	}()
	return ln.Addr().String()
}

// exchange is what a client saw of a connection to tlsServer.
type exchange struct {
	seen   string // the client's serial, as the server saw it
	server string // the server's serial
}

// dial connects with cfg and reads the server's line.
func dial(addr string, cfg *tls.Config) (exchange, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return exchange{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && len(b) == 0 {
		return exchange{}, err
	}
	return exchange{seen: strings.TrimSpace(string(b)), server: serialOf(c.ConnectionState().PeerCertificates[0])}, nil
}

// clientFor is s's client config for dialing addr.
func clientFor(s *Source, addr string) *tls.Config {
	cfg := s.ClientConfig()
	cfg.ServerName, _, _ = net.SplitHostPort(addr)
	return cfg
}

func serialOf(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// readCert parses the certificate in path.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
