// Command faultproxy runs one fault-injecting TCP proxy (package
// chaos/proxy) with an HTTP control port, so that a person can cut, heal,
// delay and throttle a link by hand:
//
//	faultproxy --listen 127.0.0.1:6380 --target 127.0.0.1:6379 --control 127.0.0.1:7979
//	curl -X POST '127.0.0.1:7979/cut?mode=blackhole&dir=up'   # mode hold|drop|blackhole, dir both|up|down
//	curl -X POST  127.0.0.1:7979/heal
//	curl -X POST '127.0.0.1:7979/latency?d=50ms&jitter=10ms'
//	curl -X POST '127.0.0.1:7979/bandwidth?bps=65536'         # 0 removes the limit
//	curl 127.0.0.1:7979/stats
//
// It stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/granaryhq/granary/chaos/proxy"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "faultproxy:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("faultproxy", flag.ContinueOnError)
	listen := fs.String("listen", "", "address to accept connections on, such as 127.0.0.1:6380 (required)")
	target := fs.String("target", "", "address to forward connections to, such as 127.0.0.1:6379 (required)")
	control := fs.String("control", "127.0.0.1:7979", "address of the HTTP control port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *listen == "" || *target == "" {
		fs.Usage()
		return errors.New("--listen and --target are required")
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	p, err := proxy.New(*listen, *target, logger)
	if err != nil {
		return err
	}
	defer p.Close()
	ln, err := net.Listen("tcp", *control)
	if err != nil {
		return fmt.Errorf("listen for control on %s: %w", *control, err)
	}
	srv := &http.Server{Handler: newControlHandler(p, logger), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("faultproxy ready", "listen", p.Addr(), "target", *target, "control", ln.Addr().String())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("control port: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("stop control port: %w", err)
	}
	return p.Close()
}
