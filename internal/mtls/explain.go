package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Explain says in a sentence why a TLS handshake of an internal link
// failed, for the log line of a refused connection. caFile names the CA
// the peer's certificate was checked against.
func Explain(err error, caFile string) string {
	if err == nil {
		return ""
	}
	var cie x509.CertificateInvalidError
	if errors.As(err, &cie) {
		switch cie.Reason {
		case x509.Expired:
			if c := cie.Cert; c != nil {
				now := time.Now()
				if now.Before(c.NotBefore) {
					return fmt.Sprintf("the peer's certificate (%s) is not valid until %s", c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339))
				}
				return fmt.Sprintf("the peer's certificate (%s) expired at %s", c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339))
			}
			return "the peer's certificate has expired or is not valid yet"
		case x509.IncompatibleUsage:
			return "the peer's certificate is not for this use (it needs client and server authentication: issue it with granary cert issue)"
		}
		return "the peer's certificate is invalid: " + cie.Error()
	}
	var uae x509.UnknownAuthorityError
	if errors.As(err, &uae) {
		name := ""
		if uae.Cert != nil {
			name = fmt.Sprintf(" (%s, issued by %q)", uae.Cert.Subject.CommonName, uae.Cert.Issuer.CommonName)
		}
		return fmt.Sprintf("the peer's certificate%s is not signed by the cluster CA (%s)", name, caFile)
	}
	var he x509.HostnameError
	if errors.As(err, &he) {
		var names []string
		if he.Certificate != nil {
			names = append(names, he.Certificate.DNSNames...)
			for _, ip := range he.Certificate.IPAddresses {
				names = append(names, ip.String())
			}
		}
		return fmt.Sprintf("the peer's certificate is for %s, not for %s, the address dialed (issue it with --san %s)",
			strings.Join(names, ", "), he.Host, he.Host)
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		return "the peer does not speak TLS (is it started without --tls-ca, --tls-cert and --tls-key?)"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "didn't provide a certificate") || strings.Contains(msg, "certificate required"):
		return "the peer sent no certificate (is it started without --tls-cert and --tls-key?)"
	case strings.Contains(msg, "unsupported versions") || strings.Contains(msg, "protocol version"):
		return "the peer does not speak TLS 1.3"
	case strings.Contains(msg, "bad certificate") || strings.Contains(msg, "unknown certificate authority"):
		return "the peer refused this process's certificate (see the peer's log for why)"
	case errors.Is(err, io.EOF) || strings.Contains(msg, "connection reset"):
		return "the peer closed the connection during the handshake (it may have refused this process's certificate)"
	}
	return "TLS handshake failed: " + msg
}
