package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// profiler takes CPU profiles of granary (through its --debug-addr pprof
// endpoint) and of this program while a load is measured, into dir.
type profiler struct {
	dir       string
	debugAddr string // granary's, host:port
}

// profileName is the file name of a profile: "granary-b-grpc.pprof".
func profileName(process string, sc scenario) string {
	return process + "-" + sc.load + "-" + sc.proto + ".pprof"
}

// start begins profiling warmup from now, for the seconds given, and
// returns a function that waits for both profiles and returns the paths
// written or the first error.
func (p profiler) start(ctx context.Context, sc scenario, warmup time.Duration, seconds int) (wait func() ([]string, error)) {
	granaryPath := filepath.Join(p.dir, profileName("granary", sc))
	clientPath := filepath.Join(p.dir, profileName("client", sc))
	done := make(chan error, 2)
	go func() {
		if !sleep(ctx, warmup) {
			done <- ctx.Err()
			done <- ctx.Err()
			return
		}
		go func() { done <- p.fetch(ctx, granaryPath, seconds) }()
		done <- profileSelf(ctx, clientPath, time.Duration(seconds)*time.Second)
	}()
	return func() ([]string, error) {
		var first error
		for range 2 {
			if err := <-done; err != nil && first == nil {
				first = err
			}
		}
		return []string{granaryPath, clientPath}, first
	}
}

// fetch writes granary's CPU profile over the next seconds to path.
func (p profiler) fetch(ctx context.Context, path string, seconds int) error {
	url := "http://" + p.debugAddr + "/debug/pprof/profile?seconds=" + strconv.Itoa(seconds)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("granary's CPU profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("granary's CPU profile: status %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("granary's CPU profile: %w", err)
	}
	return f.Close()
}

// profileSelf writes this program's CPU profile over the next d to path.
func profileSelf(ctx context.Context, path string, d time.Duration) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("this program's CPU profile: %w", err)
	}
	sleep(ctx, d)
	pprof.StopCPUProfile()
	return f.Close()
}

// sleep waits d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
