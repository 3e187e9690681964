package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCAInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	now := time.Now()
	if err := InitCA(dir, now, DefaultCAValidity); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{".": 0o700, CACertFile: 0o644, CAKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, %v; want mode %v", name, fi.Mode().Perm(), err, mode)
		}
	}
	ca := readCert(t, filepath.Join(dir, CACertFile))
	pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key %T, want ECDSA P-256", ca.PublicKey)
	}
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.MaxPathLen != 0 || !ca.MaxPathLenZero ||
		ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("CA constraints: IsCA %v, basic %v, MaxPathLen %d zero %v, usage %v", ca.IsCA, ca.BasicConstraintsValid, ca.MaxPathLen, ca.MaxPathLenZero, ca.KeyUsage)
	}
	if ca.Subject.CommonName != "Granary cluster CA" || ca.Subject.SerialNumber == "" {
		t.Errorf("subject %v", ca.Subject)
	}
	if !ca.NotBefore.Equal(now.Add(-time.Minute).Truncate(time.Second)) || !ca.NotAfter.Equal(now.Add(DefaultCAValidity).Truncate(time.Second)) {
		t.Errorf("valid %v to %v", ca.NotBefore, ca.NotAfter)
	}
	if ca.SerialNumber.BitLen() < 100 {
		t.Errorf("serial %v: not 128 random bits", ca.SerialNumber)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
}

func TestCAInitNeverOverwrites(t *testing.T) {
	for _, present := range []string{CACertFile, CAKeyFile} {
		t.Run(present, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, present)
			if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
				t.Fatal(err)
			}
			err := InitCA(dir, time.Now(), DefaultCAValidity)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "never overwritten") {
				t.Fatalf("InitCA over %s: %v", present, err)
			}
			if b, _ := os.ReadFile(path); string(b) != "keep me" {
				t.Errorf("%s was overwritten", present)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("InitCA left files behind: %v", entries)
			}
		})
	}
	dir := t.TempDir()
	if err := InitCA(dir, time.Now(), DefaultCAValidity); err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err := InitCA(dir, time.Now(), DefaultCAValidity); err == nil {
		t.Fatal("a second InitCA succeeded")
	}
	if again, _ := os.ReadFile(filepath.Join(dir, CAKeyFile)); string(again) != string(key) {
		t.Fatal("a second InitCA changed the key")
	}
}

func TestCertIssue(t *testing.T) {
	p := newPKI(t)
	out := filepath.Join(p.dir, "out", "silo-1")
	now := time.Now()
	certPath, keyPath, err := Issue(p.caDir(), "silo-1", out, []string{"10.0.0.7", "silo-1.internal", "fd00::7", "localhost"}, now, DefaultCertValidity)
	if err != nil {
		t.Fatal(err)
	}
	if certPath != filepath.Join(out, "silo-1.crt") || keyPath != filepath.Join(out, "silo-1.key") {
		t.Fatalf("paths %s %s", certPath, keyPath)
	}
	for path, mode := range map[string]os.FileMode{certPath: 0o644, keyPath: 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, %v; want %v", path, fi.Mode().Perm(), err, mode)
		}
	}
	leaf := readCert(t, certPath)
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(ips, []string{"127.0.0.1", "::1", "10.0.0.7", "fd00::7"}) {
		t.Errorf("IP SANs %v", ips)
	}
	if !slices.Equal(leaf.DNSNames, []string{"localhost", "silo-1", "silo-1.internal"}) {
		t.Errorf("DNS SANs %v", leaf.DNSNames)
	}
	if leaf.Subject.CommonName != "silo-1" || leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature ||
		!slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("CN %q, CA %v, usage %v %v", leaf.Subject.CommonName, leaf.IsCA, leaf.KeyUsage, leaf.ExtKeyUsage)
	}
	if !leaf.NotAfter.Equal(now.Add(DefaultCertValidity).Truncate(time.Second)) {
		t.Errorf("NotAfter %v", leaf.NotAfter)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, p.caFile()))
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		for _, name := range []string{"127.0.0.1", "::1", "localhost", "silo-1", "10.0.0.7", "silo-1.internal"} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("verify for %s as %v: %v", name, usage, err)
			}
		}
	}
	if _, err := Load(Files{CA: p.caFile(), Cert: certPath, Key: keyPath}, nil); err != nil {
		t.Errorf("the issued files do not load: %v", err)
	}

	// Issuing again replaces both files: a new key, a new serial.
	oldKey, _ := os.ReadFile(keyPath)
	if _, _, err := Issue(p.caDir(), "silo-1", out, nil, now, time.Hour); err != nil {
		t.Fatal(err)
	}
	if newKey, _ := os.ReadFile(keyPath); string(newKey) == string(oldKey) {
		t.Error("the key was not replaced")
	}
	if again := readCert(t, certPath); again.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("the certificate was not replaced")
	}
	if entries, _ := os.ReadDir(out); len(entries) != 2 {
		t.Errorf("files left in %s: %v", out, entries)
	}
	// The name is a SAN only when it is a DNS name.
	for name, want := range map[string][]string{
		"silo_2":    {"localhost", "silo_2"},
		"-silo":     {"localhost"},
		"localhost": {"localhost"},
		"Placement": {"localhost", "placement"},
	} {
		if c := readCert(t, p.issue(name, now, time.Hour).Cert); !slices.Equal(c.DNSNames, want) {
			t.Errorf("%s: DNS SANs %v, want %v", name, c.DNSNames, want)
		}
	}
}

func TestCertIssueRefuses(t *testing.T) {
	p := newPKI(t)
	out := filepath.Join(p.dir, "out")
	for _, c := range []struct {
		desc, caDir, name string
		sans              []string
		want              string
	}{
		{"hidden file", p.caDir(), ".hidden", nil, `name ".hidden"`},
		{"a path", p.caDir(), "a/b", nil, `name "a/b"`},
		{"parent directory", p.caDir(), "..", nil, `name ".."`},
		{"empty name", p.caDir(), "", nil, `name ""`},
		{"space in name", p.caDir(), "silo 1", nil, `name "silo 1"`},
		{"empty SAN", p.caDir(), "ok", []string{""}, `SAN "": empty`},
		{"SAN with a space", p.caDir(), "ok", []string{"has space"}, "white space"},
		{"SAN with a tab", p.caDir(), "ok", []string{"host\t"}, "white space"},
		{"SAN of no kind", p.caDir(), "ok", []string{"a..b"}, "neither an IP address nor a DNS name"},
		{"SAN with a port", p.caDir(), "ok", []string{"10.0.0.1:7001"}, "neither"},
		{"no CA", filepath.Join(p.dir, "nothing"), "ok", nil, "no CA in " + filepath.Join(p.dir, "nothing") + ": run granary ca init --dir " + filepath.Join(p.dir, "nothing")},
		{"CA key missing", filepath.Join(p.dir, "certonly"), "ok", nil, "reading the CA key"},
	} {
		t.Run(c.desc, func(t *testing.T) {
			if c.desc == "CA key missing" {
				os.MkdirAll(c.caDir, 0o700)
				os.WriteFile(filepath.Join(c.caDir, CACertFile), p.readCA(), 0o644)
			}
			_, _, err := Issue(c.caDir, c.name, out, c.sans, time.Now(), time.Hour)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Issue: %v; want it to say %q", err, c.want)
			}
		})
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("refused issues wrote %v", entries)
	}
}

func TestCertLoadRefusesMismatches(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	a, b := p.issue("a", time.Now(), time.Hour), p.issue("b", time.Now(), time.Hour)
	foreign := other.issue("f", time.Now(), time.Hour)
	missing := filepath.Join(p.dir, "none.crt")
	for _, c := range []struct {
		desc string
		f    Files
		want []string
	}{
		{"key of another certificate", Files{CA: a.CA, Cert: a.Cert, Key: b.Key}, []string{a.Cert, b.Key, "with its key"}},
		{"certificate of another CA", Files{CA: a.CA, Cert: foreign.Cert, Key: foreign.Key}, []string{foreign.Cert, "not issued by the CA in " + a.CA}},
		{"CA missing", Files{CA: missing, Cert: a.Cert, Key: a.Key}, []string{"reading the CA certificate", missing}},
		{"CA not PEM", Files{CA: a.Key, Cert: a.Cert, Key: a.Key}, []string{a.Key + " holds no PEM certificate"}},
		{"certificate missing", Files{CA: a.CA, Cert: missing, Key: a.Key}, []string{missing}},
	} {
		t.Run(c.desc, func(t *testing.T) {
			_, err := Load(c.f, nil)
			for _, w := range c.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Load: %v; want it to say %q", err, w)
				}
			}
		})
	}
}
