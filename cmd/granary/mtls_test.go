package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/mtls"
	"github.com/granaryhq/granary/internal/testutil"
	"github.com/granaryhq/granary/internal/testutil/redistest"
)

// TestClusterWithMutualTLS runs placement and silos with certificates of
// one CA and checks that they work together, that silos with a certificate
// of another CA, with none, or with an expired one are refused and logged,
// and that the expired silo joins once its certificate is issued again,
// without a restart.
func TestClusterWithMutualTLS(t *testing.T) {
	dir := t.TempDir()
	caDir, otherCA, certs := filepath.Join(dir, "ca"), filepath.Join(dir, "other-ca"), filepath.Join(dir, "certs")
	past := time.Now().Add(-3 * 365 * 24 * time.Hour)
	for _, d := range []string{caDir, otherCA} {
		if err := mtls.InitCA(d, past, mtls.DefaultCAValidity); err != nil {
			t.Fatal(err)
		}
	}
	issue := func(ca, name string, now time.Time, validity time.Duration) []string {
		t.Helper()
		out := certs
		if ca == otherCA {
			out = filepath.Join(dir, "other-certs")
		}
		cert, key, err := mtls.Issue(ca, name, out, nil, now, validity)
		if err != nil {
			t.Fatal(err)
		}
		return []string{"--tls-ca", filepath.Join(caDir, mtls.CACertFile), "--tls-cert", cert, "--tls-key", key}
	}
	store := redistest.URL(t)
	raftPort, grpcAddr := testutil.FreePort(t), "127.0.0.1:"+strconv.Itoa(testutil.FreePort(t))
	placementLog := runInProcess(t, "placement", runPlacement, append([]string{"--id", "p1", "--raft-addr", "127.0.0.1:" + strconv.Itoa(raftPort),
		"--grpc-addr", grpcAddr, "--data-dir", t.TempDir(), "--peers", "p1=127.0.0.1:" + strconv.Itoa(raftPort), "--metrics-port", "0"},
		issue(caDir, "p1", time.Now(), time.Hour)...)...)

	silo := func(id string, tlsArgs []string) (string, *lockedBuffer) {
		app := newNestApp(t)
		port := testutil.FreePort(t)
		base := "http://127.0.0.1:" + strconv.Itoa(port)
		app.gateway.Store(&base)
		logs := runInProcess(t, id, runSilo, append([]string{"--id", id, "--placement", grpcAddr, "--internal-addr", "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)),
			"--http-port", strconv.Itoa(port), "--grpc-port", "0", "--metrics-port", "0", "--state-store", store,
			"--app-url", "app=" + app.srv.URL, "--shutdown-timeout", "5s", "--routing-window", "2s"}, tlsArgs...)...)
		return base, logs
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	serves := func(base string) error {
		for i := range 8 {
			resp, err := client.Post(base+"/v1.0/actors/Inner/tls"+strconv.Itoa(i)+"/method/echo", "application/json", nil)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d: %s", resp.StatusCode, b)
			}
		}
		return nil
	}

	s1, _ := silo("s1", issue(caDir, "s1", time.Now(), time.Hour))
	testutil.Eventually(t, 30*time.Second, "s1 to serve actors over mutual TLS", func() error { return serves(s1) })

	// A silo of another CA altogether refuses placement (its log says so),
	// and placement sees it go.
	foreign := issue(otherCA, "foreign", time.Now(), time.Hour)
	foreign[1] = filepath.Join(otherCA, mtls.CACertFile)
	_, foreignLog := silo("foreign", foreign)
	// An intruder that trusts the cluster's CA (its certificate is public)
	// but shows a certificate of its own CA.
	intruder := issue(otherCA, "intruder", time.Now(), time.Hour)
	kp, err := tls.LoadX509KeyPair(intruder[3], intruder[5])
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range 3 {
			c, err := tls.Dial("tcp", grpcAddr, &tls.Config{
				// Sent whatever CAs the server asks for, as an attacker would.
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &kp, nil },
				InsecureSkipVerify:   true, NextProtos: []string{"h2"}})
			if err == nil {
				c.SetDeadline(time.Now().Add(2 * time.Second))
				io.ReadAll(c)
				c.Close()
			}
			time.Sleep(time.Second)
		}
	}()
	_, _ = silo("plain", nil)
	expiredArgs := issue(caDir, "late", past, 365*24*time.Hour)
	late, _ := silo("late", expiredArgs)

	testutil.Eventually(t, 20*time.Second, "placement to log each refusal", func() error {
		log := placementLog.String()
		for _, want := range []string{"is not signed by the cluster CA", "the peer does not speak TLS", "expired at"} {
			if !strings.Contains(log, "refused a connection: ") || !strings.Contains(log, want) {
				return fmt.Errorf("no refusal saying %q", want)
			}
		}
		return nil
	})
	testutil.Eventually(t, 10*time.Second, "the foreign silo to log why it refused placement", func() error {
		if !strings.Contains(foreignLog.String(), "TLS handshake failed: the peer's certificate") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if err := serves(late); err == nil {
		t.Fatal("the silo with an expired certificate serves actors")
	}
	// Rotation: a new certificate over the expired one's files.
	issue(caDir, "late", time.Now(), time.Hour)
	testutil.Eventually(t, 30*time.Second, "the reissued silo to join and serve", func() error { return serves(late) })
	if err := serves(s1); err != nil {
		t.Fatalf("s1 after the rotation: %v", err)
	}
}
