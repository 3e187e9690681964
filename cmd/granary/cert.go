package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/internal/mtls"
)

// This file is `granary ca init` and `granary cert issue`: the cluster's
// CA and the certificates of its processes (docs/operations.md).

const caUsage = `Usage: granary ca init --dir DIR [--validity 87600h]

Creates the cluster's certificate authority: DIR/ca.crt (give it to every
process as --tls-ca) and DIR/ca.key (keep it off the cluster's hosts).
An existing CA is never overwritten.
`

const certUsage = `Usage: granary cert issue --ca-dir DIR --name NAME --out OUT [--san ADDR]... [--validity 8760h]

Issues the certificate of a placement node or silo, signed by the CA in DIR:
OUT/NAME.crt and OUT/NAME.key (give them as --tls-cert and --tls-key).
It names 127.0.0.1, ::1, localhost and NAME; add every address other
processes dial it at with --san. Issuing over existing files rotates them:
running processes pick the new certificate up without a restart.
`

func runCA(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, caUsage)
		return errUsage
	}
	switch args[0] {
	case "init":
		return runCAInit(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, caUsage)
		return nil
	}
	fmt.Fprintf(stderr, "granary ca: unknown subcommand %q (want init)\n\n%s", args[0], caUsage)
	return errUsage
}

func runCAInit(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("granary ca init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "directory of the new CA (required)")
	validity := fs.Duration("validity", mtls.DefaultCAValidity, "how long the CA is valid")
	fs.Usage = func() {
		fmt.Fprint(stderr, caUsage+"\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlagSet(fs, args, stderr); err != nil {
		return err
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "granary ca init: --dir is required")
		return errUsage
	}
	if *validity <= 0 {
		return fmt.Errorf("--validity %v: want a positive duration", *validity)
	}
	if err := mtls.InitCA(*dir, clock.Real.Now(), *validity); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "CA created:\n  certificate: %s\n  key:         %s (keep it secret: it signs every certificate)\n\nNext: granary cert issue --ca-dir %s --name NAME --out DIR\n",
		filepath.Join(*dir, mtls.CACertFile), filepath.Join(*dir, mtls.CAKeyFile), *dir)
	return nil
}

func runCert(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, certUsage)
		return errUsage
	}
	switch args[0] {
	case "issue":
		return runCertIssue(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, certUsage)
		return nil
	}
	fmt.Fprintf(stderr, "granary cert: unknown subcommand %q (want issue)\n\n%s", args[0], certUsage)
	return errUsage
}

// sanFlag collects the values of a repeated --san.
type sanFlag []string

func (s *sanFlag) String() string { return strings.Join(*s, ",") }

func (s *sanFlag) Set(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("empty SAN")
	}
	*s = append(*s, v)
	return nil
}

func runCertIssue(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("granary cert issue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	caDir := fs.String("ca-dir", "", "directory of the CA (granary ca init; required)")
	name := fs.String("name", "", "the process's name, e.g. its --id (required)")
	out := fs.String("out", "", "directory the certificate and key are written to (required)")
	var sans sanFlag
	fs.Var(&sans, "san", "an IP address or DNS name the process is dialed at (repeatable)")
	validity := fs.Duration("validity", mtls.DefaultCertValidity, "how long the certificate is valid")
	fs.Usage = func() {
		fmt.Fprint(stderr, certUsage+"\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlagSet(fs, args, stderr); err != nil {
		return err
	}
	for _, f := range []struct{ flag, value string }{{"--ca-dir", *caDir}, {"--name", *name}, {"--out", *out}} {
		if f.value == "" {
			fmt.Fprintf(stderr, "granary cert issue: %s is required\n", f.flag)
			return errUsage
		}
	}
	if *validity <= 0 {
		return fmt.Errorf("--validity %v: want a positive duration", *validity)
	}
	certPath, keyPath, err := mtls.Issue(*caDir, *name, *out, sans, clock.Real.Now(), *validity)
	if err != nil {
		return err
	}
	cert, err := readCert(certPath)
	if err != nil {
		return err
	}
	names := append([]string{}, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	fmt.Fprintf(stdout, "certificate of %s issued:\n  certificate: %s\n  key:         %s\n  SANs:        %s\n  valid until: %s\n",
		*name, certPath, keyPath, strings.Join(names, ", "), cert.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the issued certificate: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	return c, nil
}
