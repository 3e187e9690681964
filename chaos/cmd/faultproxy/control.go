package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/granaryhq/granary/chaos/proxy"
)

// faults is what the control port drives: a *proxy.Proxy.
type faults interface {
	CutWith(mode proxy.CutMode, dirs proxy.Direction)
	Heal()
	SetLatency(d, jitter time.Duration)
	SetBandwidth(bytesPerSecond int)
	Stats() proxy.Stats
}

// newControlHandler serves the control port:
//
//	POST /cut?mode=hold|drop|blackhole&dir=both|up|down   (defaults: hold, both)
//	POST /heal
//	POST /latency?d=50ms&jitter=10ms                      (jitter defaults to 0)
//	POST /bandwidth?bps=N                                 (bytes per second, 0 = unlimited)
//	GET  /stats                                           (proxy.Stats as JSON)
//
// A POST that worked answers 204; a bad parameter 400.
func newControlHandler(f faults, logger *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cut", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		mode, err := parseCutMode(q.Get("mode"))
		if err != nil {
			badRequest(w, err)
			return
		}
		dir, err := parseDirection(q.Get("dir"))
		if err != nil {
			badRequest(w, err)
			return
		}
		f.CutWith(mode, dir)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /heal", func(w http.ResponseWriter, r *http.Request) {
		f.Heal()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /latency", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if !q.Has("d") {
			badRequest(w, fmt.Errorf("missing d, such as d=50ms"))
			return
		}
		d, err := parseDuration("d", q.Get("d"))
		if err != nil {
			badRequest(w, err)
			return
		}
		var jitter time.Duration
		if q.Has("jitter") {
			if jitter, err = parseDuration("jitter", q.Get("jitter")); err != nil {
				badRequest(w, err)
				return
			}
		}
		f.SetLatency(d, jitter)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /bandwidth", func(w http.ResponseWriter, r *http.Request) {
		bps, err := parseBandwidth(r.URL.Query().Get("bps"))
		if err != nil {
			badRequest(w, err)
			return
		}
		f.SetBandwidth(bps)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(f.Stats()); err != nil {
			logger.Warn("faultproxy: write stats", "err", err)
		}
	})
	return mux
}

func badRequest(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusBadRequest)
}

func parseCutMode(s string) (proxy.CutMode, error) {
	switch s {
	case "", "hold":
		return proxy.Hold, nil
	case "drop":
		return proxy.Drop, nil
	case "blackhole":
		return proxy.Blackhole, nil
	}
	return 0, fmt.Errorf("mode %q: want hold, drop or blackhole", s)
}

func parseDirection(s string) (proxy.Direction, error) {
	switch s {
	case "", "both":
		return proxy.Both, nil
	case "up", "upstream":
		return proxy.Upstream, nil
	case "down", "downstream":
		return proxy.Downstream, nil
	}
	return 0, fmt.Errorf("dir %q: want both, up or down", s)
}

func parseDuration(name, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	if d < 0 {
		return 0, fmt.Errorf("%s %v: must not be negative", name, d)
	}
	return d, nil
}

func parseBandwidth(s string) (int, error) {
	bps, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("bps %q: want a whole number of bytes per second", s)
	}
	if bps < 0 {
		return 0, fmt.Errorf("bps %d: must not be negative", bps)
	}
	return bps, nil
}
