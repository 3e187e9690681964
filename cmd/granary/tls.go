package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/granaryhq/granary/internal/mtls"
	"github.com/granaryhq/granary/internal/rawsock"
)

// tlsFlags are the mutual TLS flags of the internal links (placement and
// silo): the cluster's CA and this process's certificate.
type tlsFlags struct {
	ca, cert, key string
}

func (f *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.ca, "tls-ca", "", "the cluster CA's certificate (granary ca init): with --tls-cert and --tls-key, every link to placement and between silos is mutual TLS 1.3, and a peer without a certificate from this CA is refused")
	fs.StringVar(&f.cert, "tls-cert", "", "this process's certificate (granary cert issue); reloaded when the file changes")
	fs.StringVar(&f.key, "tls-key", "", "the key of --tls-cert; reloaded when the file changes")
}

func (f *tlsFlags) check() error {
	set := 0
	for _, v := range []string{f.ca, f.cert, f.key} {
		if v != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		return errors.New("--tls-ca, --tls-cert and --tls-key go together: give all three for mutual TLS, or none")
	}
	return nil
}

// internalTLS is the mutual TLS of a process's internal links; a nil
// *internalTLS is plaintext.
type internalTLS struct {
	src *mtls.Source
	log *slog.Logger
}

// load reads the certificates, or returns nil when f sets none.
func (f *tlsFlags) load(log *slog.Logger) (*internalTLS, error) {
	if f.ca == "" {
		return nil, nil
	}
	src, err := mtls.Load(mtls.Files{CA: f.ca, Cert: f.cert, Key: f.key}, log)
	if err != nil {
		return nil, fmt.Errorf("mutual TLS: %w", err)
	}
	log.Info("internal links use mutual TLS 1.3", "ca", f.ca, "cert", f.cert)
	return &internalTLS{src: src, log: log}, nil
}

// credentials are the gRPC credentials of the link named side, nil when
// plaintext.
func (t *internalTLS) credentials(side string) credentials.TransportCredentials {
	if t == nil {
		return nil
	}
	return mtls.GRPCCredentials(t.src, t.log, side)
}

func (t *internalTLS) close() {
	if t != nil {
		t.src.Close()
	}
}

// gatewayTLSFlags are the optional TLS of the public gateway (HTTP and gRPC).
type gatewayTLSFlags struct {
	cert, key string
}

func (f *gatewayTLSFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cert, "gateway-tls-cert", "", "serve the gateway (HTTP and gRPC API) over TLS with this certificate; reloaded when the file changes")
	fs.StringVar(&f.key, "gateway-tls-key", "", "the key of --gateway-tls-cert")
}

func (f *gatewayTLSFlags) check() error {
	if (f.cert == "") != (f.key == "") {
		return errors.New("--gateway-tls-cert and --gateway-tls-key go together")
	}
	return nil
}

// config is the gateway's server TLS config, nil when the gateway is
// plaintext.
func (f *gatewayTLSFlags) config(log *slog.Logger) (*tls.Config, error) {
	if f.cert == "" {
		return nil, nil
	}
	kp := &keyPair{certFile: f.cert, keyFile: f.key, log: log}
	if err := kp.reload(); err != nil {
		return nil, fmt.Errorf("gateway TLS: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: kp.get}, nil
}

// keyPair is a certificate and key read again when either file changes
// (checked at most once a second, on a handshake).
type keyPair struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // modification times and sizes of the files read
	checked time.Time
}

func fileStamp(paths ...string) string {
	s := ""
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
		}
	}
	return s
}

func (k *keyPair) reload() error {
	stamp := fileStamp(k.certFile, k.keyFile)
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("loading %s and %s: %w", k.certFile, k.keyFile, err)
	}
	k.cert, k.stamp = &cert, stamp
	return nil
}

func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if now := time.Now(); now.Sub(k.checked) >= time.Second {
		k.checked = now
		if stamp := fileStamp(k.certFile, k.keyFile); stamp != k.stamp {
			if err := k.reload(); err != nil {
				k.stamp = stamp // warn once per change
				k.log.Warn("gateway TLS: keeping the previous certificate", "err", err)
			} else {
				k.log.Info("gateway TLS: certificate reloaded", "cert", k.certFile)
			}
		}
	}
	return k.cert, nil
}

// gatewayListener is ln, the gateway's HTTP/1.1 listener, handing out
// connections that read and write with raw system calls (internal/rawsock),
// in TLS when cfg is set: the raw calls go beneath TLS.
func gatewayListener(ln net.Listener, cfg *tls.Config) net.Listener {
	ln = rawsock.Listener(ln, 0)
	if cfg == nil {
		return ln
	}
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	return tls.NewListener(ln, cfg)
}

// scheme is the gateway URL's scheme.
func scheme(cfg *tls.Config) string {
	if cfg == nil {
		return "http"
	}
	return "https"
}
