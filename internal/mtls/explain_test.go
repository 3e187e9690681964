package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestExplain(t *testing.T) {
	p := newPKI(t)
	leaf := readCert(t, p.issue("silo-1", time.Now(), time.Hour).Cert)
	notAfter := leaf.NotAfter.UTC().Format(time.RFC3339)
	notBefore := leaf.NotBefore.UTC().Format(time.RFC3339)
	issuer := "Granary cluster CA " + p.caSerial()
	verify := func(err error) error {
		return &caError{err: &tls.CertificateVerificationError{Err: err}, caFile: "/etc/granary/ca.crt"}
	}
	for _, c := range []struct {
		desc string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"another CA", verify(x509.UnknownAuthorityError{Cert: leaf}),
			"the peer's certificate (silo-1, issued by " + issuer + ") is not signed by the cluster CA (/etc/granary/ca.crt)"},
		{"another CA, file unknown", x509.UnknownAuthorityError{}, "the peer's certificate is not signed by the cluster CA:"},
		{"expired", verify(x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired, Detail: "current time 2030-01-01T00:00:00Z is after " + notAfter}),
			"the peer's certificate (silo-1) expired at " + notAfter},
		{"not yet valid", x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired, Detail: "current time 2020-01-01T00:00:00Z is before " + notBefore},
			"the peer's certificate (silo-1) is not valid yet: valid from " + notBefore},
		{"wrong usage", x509.CertificateInvalidError{Cert: leaf, Reason: x509.IncompatibleUsage}, "not for client and server authentication"},
		{"name mismatch", verify(x509.HostnameError{Certificate: leaf, Host: "10.1.1.1"}),
			"the peer's certificate is for localhost, silo-1, 127.0.0.1, ::1, not for 10.1.1.1, the address dialed: issue it again with --san 10.1.1.1"},
		{"plaintext peer", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"},
			"the peer does not speak TLS (first record does not look like a TLS handshake)"},
		{"no client certificate", errors.New("tls: client didn't provide a certificate"), "the peer sent no certificate"},
		{"certificate required alert", tls.AlertError(116), "this process sent no certificate and the peer requires one"},
		{"certificate required text", errors.New("remote error: tls: certificate required"), "sent no certificate"},
		{"peer's unknown CA", &net.OpError{Op: "remote error", Err: errors.New("tls: unknown certificate authority")}, "not signed by the CA the peer trusts"},
		{"peer's bad certificate", &net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, "the peer refused this process's certificate"},
		{"peer's expired", fmt.Errorf("handshake: %w", tls.AlertError(45)), "refused this process's certificate as expired"},
		{"peer's protocol version", tls.AlertError(70), "does not accept TLS 1.3"},
		{"old client", errors.New("tls: client offered only unsupported versions: [303]"), "the peer is not using TLS 1.3"},
		{"old server", errors.New("tls: server selected unsupported protocol version 303"), "the peer is not using TLS 1.3"},
		{"peer closed", fmt.Errorf("reading: %w", io.EOF), "the peer closed the connection during the handshake"},
		{"timeout", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, "did not finish the handshake in time"},
		{"other", errors.New("something else"), "the TLS handshake failed: something else"},
	} {
		t.Run(c.desc, func(t *testing.T) {
			got := Explain(c.err)
			if c.want == "" && got != "" || !strings.Contains(got, c.want) {
				t.Errorf("Explain(%v) = %q, want it to say %q", c.err, got, c.want)
			}
		})
	}
}
