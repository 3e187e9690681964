package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/granaryhq/granary/internal/mtls"
	"github.com/granaryhq/granary/internal/testutil"
)

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCAInitCommand(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca")
	code, out, errOut := runCmd("ca", "init", "--dir", ca, "--validity", "8760h")
	if code != 0 {
		t.Fatalf("ca init: exit %d, %q", code, errOut)
	}
	for _, want := range []string{filepath.Join(ca, "ca.crt"), filepath.Join(ca, "ca.key"), "Next: granary cert issue --ca-dir " + ca + " --name NAME --out DIR"} {
		if !strings.Contains(out, want) {
			t.Errorf("ca init printed %q; want it to say %q", out, want)
		}
	}
	caCert := readPEMCert(t, filepath.Join(ca, "ca.crt"))
	if !caCert.IsCA || caCert.Subject.CommonName != "Granary cluster CA" {
		t.Errorf("CA %v, IsCA %v", caCert.Subject, caCert.IsCA)
	}
	if left := time.Until(caCert.NotAfter); left < 8759*time.Hour || left > 8761*time.Hour {
		t.Errorf("CA valid for %v more, want 8760h", left)
	}
	key, _ := os.ReadFile(filepath.Join(ca, "ca.key"))
	code, _, errOut = runCmd("ca", "init", "--dir", ca)
	if code != 1 || !strings.Contains(errOut, filepath.Join(ca, "ca.crt")) || !strings.Contains(errOut, "never overwritten") {
		t.Errorf("a second ca init: exit %d, %q", code, errOut)
	}
	if again, _ := os.ReadFile(filepath.Join(ca, "ca.key")); string(again) != string(key) {
		t.Error("a second ca init changed the key")
	}
}

func TestCertIssueCommand(t *testing.T) {
	dir := t.TempDir()
	ca, certs := filepath.Join(dir, "ca"), filepath.Join(dir, "certs")
	if code, _, errOut := runCmd("ca", "init", "--dir", ca); code != 0 {
		t.Fatalf("ca init: %d %q", code, errOut)
	}
	code, out, errOut := runCmd("cert", "issue", "--ca-dir", ca, "--name", "s1", "--out", certs, "--san", "10.1.2.3", "--san", "s1.example", "--validity", "48h")
	if code != 0 {
		t.Fatalf("cert issue: exit %d, %q", code, errOut)
	}
	certPath, keyPath := filepath.Join(certs, "s1.crt"), filepath.Join(certs, "s1.key")
	leaf := readPEMCert(t, certPath)
	for _, want := range []string{certPath, keyPath, "localhost, s1, s1.example, 127.0.0.1, ::1, 10.1.2.3", "valid until: " + leaf.NotAfter.UTC().Format(time.RFC3339)} {
		if !strings.Contains(out, want) {
			t.Errorf("cert issue printed %q; want it to say %q", out, want)
		}
	}
	if left := time.Until(leaf.NotAfter); left < 47*time.Hour || left > 49*time.Hour {
		t.Errorf("valid for %v more, want 48h", left)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, %v", fi.Mode().Perm(), err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readPEMCert(t, filepath.Join(ca, "ca.crt")))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "10.1.2.3", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the certificate does not chain to the CA: %v", err)
	}
	src, err := mtls.Load(mtls.Files{CA: filepath.Join(ca, "ca.crt"), Cert: certPath, Key: keyPath}, nil)
	if err != nil {
		t.Fatalf("the issued files do not load: %v", err)
	}
	if src.Leaf().SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Error("Load read another certificate")
	}
	// Issuing again rotates the files in place.
	if code, _, errOut := runCmd("cert", "issue", "--ca-dir", ca, "--name", "s1", "--out", certs); code != 0 {
		t.Fatalf("cert issue again: exit %d, %q", code, errOut)
	}
	if again := readPEMCert(t, certPath); again.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("issuing again kept the certificate")
	}

	none := filepath.Join(dir, "none")
	for _, c := range []struct {
		desc string
		args []string
		want string
	}{
		{"no CA", []string{"--ca-dir", none, "--name", "s1", "--out", certs}, "no CA in " + none + ": run granary ca init --dir " + none},
		{"bad name", []string{"--ca-dir", ca, "--name", "../s1", "--out", certs}, `name "../s1"`},
		{"bad SAN", []string{"--ca-dir", ca, "--name", "s1", "--out", certs, "--san", "a b"}, "white space"},
		{"negative validity", []string{"--ca-dir", ca, "--name", "s1", "--out", certs, "--validity", "-1h"}, "--validity -1h0m0s"},
	} {
		t.Run(c.desc, func(t *testing.T) {
			code, _, errOut := runCmd(append([]string{"cert", "issue"}, c.args...)...)
			if code != 1 || !strings.Contains(errOut, c.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, c.want)
			}
		})
	}
}

// Missing or unknown subcommands and missing flags are usage errors: exit
// 2 with a message.
func TestCACertUsage(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ca"}, "Usage: granary ca init"},
		{[]string{"ca", "make"}, `granary ca: unknown subcommand "make"`},
		{[]string{"ca", "init"}, "--dir is required"},
		{[]string{"ca", "init", "--dir", ca, "extra"}, `unexpected argument "extra"`},
		{[]string{"ca", "init", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"cert"}, "Usage: granary cert issue"},
		{[]string{"cert", "sign"}, `granary cert: unknown subcommand "sign"`},
		{[]string{"cert", "issue"}, "--ca-dir is required"},
		{[]string{"cert", "issue", "--ca-dir", ca}, "--name is required"},
		{[]string{"cert", "issue", "--ca-dir", ca, "--name", "x"}, "--out is required"},
		{[]string{"cert", "issue", "--san", ""}, "empty SAN"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, _, errOut := runCmd(c.args...)
			if code != 2 || !strings.Contains(errOut, c.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, c.want)
			}
		})
	}
	if _, err := os.Stat(ca); err == nil {
		t.Error("a usage error created the CA")
	}
	for _, args := range [][]string{{"ca", "-h"}, {"cert", "help"}} {
		if code, out, _ := runCmd(args...); code != 0 || !strings.Contains(out, "Usage: granary "+args[0]) {
			t.Errorf("%q: exit %d, %q", args, code, out)
		}
	}
	for _, args := range [][]string{{"ca", "init", "-h"}, {"cert", "issue", "-h"}} {
		if code, _, errOut := runCmd(args...); code != 2 || !strings.Contains(errOut, "Flags:") || !strings.Contains(errOut, "-validity") {
			t.Errorf("%q: exit %d, %q", args, code, errOut)
		}
	}
}

func readPEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := readCert(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The gateway serves HTTP and the gRPC API over TLS with --gateway-tls-*.
func TestGatewayTLS(t *testing.T) {
	dir := t.TempDir()
	if err := mtls.InitCA(dir, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	cert, key, err := mtls.Issue(dir, "gateway", dir, nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, mtls.CACertFile))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	port, grpcPort := testutil.FreePort(t), testutil.FreePort(t)
	logs := runInProcess(t, "dev", runDev, "--http-port", strconv.Itoa(port), "--grpc-port", strconv.Itoa(grpcPort), "--metrics-port", "0",
		"--data-dir", t.TempDir(), "--shutdown-timeout", "5s", "--gateway-tls-cert", cert, "--gateway-tls-key", key)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	testutil.Eventually(t, 20*time.Second, "the gateway to answer over TLS", func() error {
		resp, err := client.Get("https://127.0.0.1:" + strconv.Itoa(port) + "/v1.0/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://127.0.0.1:" + strconv.Itoa(port) + "/v1.0/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("a plaintext request to the TLS gateway was answered %d", resp.StatusCode)
		}
	}
	cc, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(grpcPort), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := runtimev1.NewDaprClient(cc).GetMetadata(ctx, &runtimev1.GetMetadataRequest{}); err != nil {
		t.Fatalf("GetMetadata over TLS: %v\n%s", err, logs.String())
	}
}
