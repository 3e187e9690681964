package redistest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/clock"
)

// Server is a private redis-server process owned by one test. It listens on
// 127.0.0.1 and keeps its data in a temporary directory; it is killed when the
// test ends.
type Server struct {
	t          testing.TB
	bin        string
	dir        string
	port       int
	persistent bool
	tls        *serverTLS

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

type serverTLS struct {
	certFile, keyFile, caFile string
	client                    *tls.Config
}

// StartServer starts a private redis-server on a free port. A persistent
// server writes every write to its append-only file before answering
// (appendonly yes, appendfsync always), so an acknowledged write survives
// Kill; otherwise it keeps nothing on disk.
func StartServer(t testing.TB, persistent bool) *Server {
	t.Helper()
	s := newServer(t, persistent)
	s.start()
	return s
}

// StartTLSServer starts a private redis-server that speaks only TLS, with a
// certificate for 127.0.0.1 issued by a throwaway CA. TLSConfig returns a
// client configuration that trusts that CA.
func StartTLSServer(t testing.TB) *Server {
	t.Helper()
	s := newServer(t, false)
	tlsFiles, err := writeTLSFiles(s.dir)
	if err != nil {
		t.Fatalf("redistest: make TLS certificates: %v", err)
	}
	s.tls = tlsFiles
	s.start()
	return s
}

func newServer(t testing.TB, persistent bool) *Server {
	t.Helper()
	s := &Server{
		t:          t,
		bin:        redisServerPath(t),
		dir:        t.TempDir(),
		port:       freePort(t),
		persistent: persistent,
	}
	t.Cleanup(s.Kill)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is a URL of database 0 of the server: rediss:// for a TLS server.
func (s *Server) URL() string {
	scheme := "redis"
	if s.tls != nil {
		scheme = "rediss"
	}
	return scheme + "://" + s.Addr() + "/0"
}

// TLSConfig is the client TLS configuration for a server from
// StartTLSServer, and nil for a plain one.
func (s *Server) TLSConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.client.Clone()
}

// Stop shuts the server down gracefully (SIGTERM) and waits for it to exit.
// Stopping a stopped server does nothing.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill kills the server (SIGKILL), as a crash would, and waits for it to exit.
// Killing a stopped server does nothing.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Restart stops the server if it runs, then starts it again on the same port
// with the same data directory, and waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	timer := clock.Real.NewTimer(startupTimeout)
	defer timer.Stop()
	select {
	case <-s.exited:
	case <-timer.C():
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

func (s *Server) args() []string {
	args := []string{
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"),
		"--daemonize", "no",
		"--save", "",
	}
	if s.persistent {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	port := strconv.Itoa(s.port)
	if s.tls == nil {
		return append(args, "--port", port)
	}
	return append(args,
		"--port", "0",
		"--tls-port", port,
		"--tls-cert-file", s.tls.certFile,
		"--tls-key-file", s.tls.keyFile,
		"--tls-ca-cert-file", s.tls.caFile,
		"--tls-auth-clients", "no",
	)
}

func (s *Server) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	cmd := exec.Command(s.bin, s.args()...)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("redistest: start redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	var clientTLS *tls.Config
	if s.tls != nil {
		clientTLS = s.tls.client
	}
	if err := waitUntilUp(s.Addr(), clientTLS, exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		s.t.Fatalf("redistest: redis-server on %s: %v\n%s", s.Addr(), err, s.logTail())
	}
	s.cmd, s.exited = cmd, exited
}

// logTail returns the end of the server's log, for failure messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// ping sends one PING to addr.
func ping(addr string, tlsConfig *tls.Config, timeout time.Duration) error {
	// Dial first: the client library would log every refused dial.
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	conn.Close()
	c := newClient(addr, 0, tlsConfig)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Ping(ctx).Err()
}

// waitUntilUp polls addr until it answers PING, the process exits (exited
// closes) or startupTimeout passes.
func waitUntilUp(addr string, tlsConfig *tls.Config, exited <-chan struct{}) error {
	deadline := clock.Real.NewTimer(startupTimeout)
	defer deadline.Stop()
	var last error
	for {
		if last = ping(addr, tlsConfig, time.Second); last == nil {
			return nil
		}
		poll := clock.Real.NewTimer(20 * time.Millisecond)
		select {
		case <-exited:
			poll.Stop()
			return fmt.Errorf("redis-server exited before answering (last ping: %v)", last)
		case <-deadline.C():
			poll.Stop()
			return fmt.Errorf("%w (last ping: %v)", errNotUp, last)
		case <-poll.C():
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeTLSFiles writes a CA, and a server certificate for 127.0.0.1 signed by
// it, into dir.
func writeTLSFiles(dir string) (*serverTLS, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "granary test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTemplate, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	files := &serverTLS{
		certFile: filepath.Join(dir, "server.crt"),
		keyFile:  filepath.Join(dir, "server.key"),
		caFile:   filepath.Join(dir, "ca.crt"),
	}
	writes := []struct {
		path, kind string
		der        []byte
	}{
		{files.certFile, "CERTIFICATE", leafDER},
		{files.keyFile, "PRIVATE KEY", keyDER},
		{files.caFile, "CERTIFICATE", caDER},
	}
	for _, w := range writes {
		if err := os.WriteFile(w.path, pem.EncodeToMemory(&pem.Block{Type: w.kind, Bytes: w.der}), 0o600); err != nil {
			return nil, err
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	files.client = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return files, nil
}
