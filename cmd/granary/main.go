// Command granary is Granary's one binary. Subcommands:
//
//	granary dev       everything in one process: a single silo, the embedded
//	                  state store and the gateway, for development
//	granary placement one node of the Raft-replicated placement service
//	granary silo      one silo of a cluster: joins placement, hosts actors
//	granary cluster   a local cluster of real processes (cluster up)
//	granary chaos     the chaos suite: a cluster under faults, checked (chaos run)
//	granary ca        the cluster's certificate authority (ca init)
//	granary cert      certificates of placement nodes and silos (cert issue)
//	granary version   print the version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/granaryhq/granary/silo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `granary: a distributed virtual-actor runtime

Usage:
  granary dev [flags]       run a one-process dev cluster (see granary dev -h)
  granary placement [flags] run one placement node (see granary placement -h)
  granary silo [flags]      run one silo of a cluster (see granary silo -h)
  granary cluster up        run a local cluster of processes (see granary cluster up -h)
  granary chaos run         run the chaos suite against this build (see granary chaos run -h)
  granary ca init           create the cluster's CA for mutual TLS (see granary ca -h)
  granary cert issue        issue a placement node's or silo's certificate (see granary cert -h)
  granary version           print the version
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "dev":
		err = runDev(ctx, args[1:], stdout, stderr)
	case "placement":
		err = runPlacement(ctx, args[1:], stdout, stderr)
	case "silo":
		err = runSilo(ctx, args[1:], stdout, stderr)
	case "cluster":
		err = runCluster(ctx, args[1:], stdout, stderr)
	case "chaos":
		err = runChaos(ctx, args[1:], stdout, stderr)
	case "ca":
		err = runCA(ctx, args[1:], stdout, stderr)
	case "cert":
		err = runCert(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "granary", silo.Version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "granary: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, errUsage) {
			return 2
		}
		fmt.Fprintln(stderr, "granary:", err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")
