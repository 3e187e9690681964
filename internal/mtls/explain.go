package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// TLS alerts (RFC 8446, section 6) Explain tells apart.
const (
	alertHandshakeFailure      tls.AlertError = 40
	alertBadCertificate        tls.AlertError = 42
	alertUnsupportedCert       tls.AlertError = 43
	alertCertificateRevoked    tls.AlertError = 44
	alertCertificateExpired    tls.AlertError = 45
	alertCertificateUnknown    tls.AlertError = 46
	alertUnknownCA             tls.AlertError = 48
	alertProtocolVersion       tls.AlertError = 70
	alertCertificateRequired   tls.AlertError = 116
	alertNoApplicationProtocol tls.AlertError = 120
)

var knownAlerts = []tls.AlertError{
	alertHandshakeFailure, alertBadCertificate, alertUnsupportedCert, alertCertificateRevoked,
	alertCertificateExpired, alertCertificateUnknown, alertUnknownCA, alertProtocolVersion,
	alertCertificateRequired, alertNoApplicationProtocol,
}

// Explain turns the error of a failed TLS handshake of an internal link
// into a sentence for the operator: which side is at fault and what to do.
// The errors of this package's transports also name the CA file the peer
// was checked against.
func Explain(err error) string {
	if err == nil {
		return ""
	}
	ca := "the cluster CA"
	if ce, ok := errors.AsType[*caError](err); ok {
		ca = fmt.Sprintf("the cluster CA (%s)", ce.caFile)
	}
	if cie, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		return explainInvalid(cie)
	}
	if uae, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		who := "the peer's certificate"
		if c := uae.Cert; c != nil {
			who = fmt.Sprintf("the peer's certificate (%s, issued by %s)", describe(c.Subject), describe(c.Issuer))
		}
		return fmt.Sprintf("%s is not signed by %s: issue it from this cluster's CA with granary cert issue", who, ca)
	}
	if he, ok := errors.AsType[x509.HostnameError](err); ok {
		return explainHostname(he)
	}
	if rhe, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return fmt.Sprintf("the peer does not speak TLS (%s): is it started without --tls-ca, --tls-cert and --tls-key?", rhe.Msg)
	}
	if a, ok := alertOf(err); ok {
		return explainAlert(a)
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "didn't provide a certificate"):
		return "the peer sent no certificate (is it started without --tls-cert and --tls-key?)"
	case strings.Contains(msg, "certificate required"):
		return explainAlert(alertCertificateRequired)
	case strings.Contains(msg, "unsupported versions"), strings.Contains(msg, "unsupported protocol version"),
		strings.Contains(msg, "protocol version not supported"), strings.Contains(msg, "no mutually supported protocol versions"):
		return "the peer is not using TLS 1.3, the only version internal links accept"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "the peer closed the connection during the handshake: it may have refused this process's certificate (its log says why)"
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return "the peer did not finish the handshake in time: is it speaking TLS?"
	}
	return "the TLS handshake failed: " + msg
}

func explainInvalid(cie x509.CertificateInvalidError) string {
	who := "the peer's certificate"
	if cie.Cert != nil {
		who = fmt.Sprintf("the peer's certificate (%s)", describe(cie.Cert.Subject))
	}
	switch cie.Reason {
	case x509.Expired:
		switch {
		case cie.Cert == nil:
			return who + " has expired or is not valid yet (" + cie.Detail + ")"
		case strings.Contains(cie.Detail, "is before"):
			return fmt.Sprintf("%s is not valid yet: valid from %s (is a clock wrong?)", who, cie.Cert.NotBefore.UTC().Format(time.RFC3339))
		}
		return fmt.Sprintf("%s expired at %s: issue it again with granary cert issue", who, cie.Cert.NotAfter.UTC().Format(time.RFC3339))
	case x509.IncompatibleUsage:
		return who + " is not for client and server authentication: issue it with granary cert issue"
	}
	return who + " is invalid: " + cie.Error()
}

func explainHostname(he x509.HostnameError) string {
	var names []string
	if c := he.Certificate; c != nil {
		names = append(names, c.DNSNames...)
		for _, ip := range c.IPAddresses {
			names = append(names, ip.String())
		}
	}
	has := "no names"
	if len(names) > 0 {
		has = strings.Join(names, ", ")
	}
	return fmt.Sprintf("the peer's certificate is for %s, not for %s, the address dialed: issue it again with --san %s",
		has, he.Host, he.Host)
}

// explainAlert is the sentence for an alert the peer sent: the peer
// refused this process.
func explainAlert(a tls.AlertError) string {
	switch a {
	case alertCertificateRequired:
		return "this process sent no certificate and the peer requires one: start it with --tls-cert and --tls-key"
	case alertUnknownCA:
		return "the peer refused this process's certificate: it is not signed by the CA the peer trusts (are both from the same granary ca init?)"
	case alertCertificateExpired:
		return "the peer refused this process's certificate as expired or not yet valid: issue it again with granary cert issue"
	case alertBadCertificate, alertUnsupportedCert, alertCertificateRevoked, alertCertificateUnknown:
		return "the peer refused this process's certificate (its log says why)"
	case alertProtocolVersion:
		return "the peer does not accept TLS 1.3, the only version internal links use"
	case alertNoApplicationProtocol:
		return "the peer does not speak this link's protocol (no common ALPN protocol)"
	}
	return "the peer ended the handshake: " + a.Error()
}

// alertOf finds the alert in err: a tls.AlertError, or the alert the peer
// sent, which crypto/tls reports as a "remote error".
func alertOf(err error) (tls.AlertError, bool) {
	if a, ok := errors.AsType[tls.AlertError](err); ok {
		return a, true
	}
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "remote error" && op.Err != nil {
		for _, a := range knownAlerts {
			if op.Err.Error() == a.Error() {
				return a, true
			}
		}
	}
	return 0, false
}

// describe names a certificate's subject or issuer: its common name, and
// the serial number in it when it has one (every cluster CA does).
func describe(n pkix.Name) string {
	s := n.CommonName
	if s == "" {
		s = n.String()
	}
	if n.SerialNumber != "" {
		s += " " + n.SerialNumber
	}
	return s
}
