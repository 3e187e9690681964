package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/boltstore"
	"github.com/granaryhq/granary/statestore/redisstore"
)

// openStore opens the state store named by rawURL: the embedded bbolt store
// in dataDir when rawURL is empty, or Redis for a redis:// or rediss:// URL.
// It returns the store and a description for logs and metadata (without the
// password).
func openStore(ctx context.Context, rawURL, dataDir string, log *slog.Logger) (statestore.Store, string, error) {
	if rawURL == "" || rawURL == "bbolt" || rawURL == "embedded" {
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return nil, "", fmt.Errorf("--data-dir %s: %w", dataDir, err)
		}
		path := filepath.Join(dataDir, "state.db")
		s, err := boltstore.Open(path, boltstore.Options{Logger: log})
		if err != nil {
			return nil, "", fmt.Errorf("embedded state store: %w", err)
		}
		return s, "bbolt (" + path + ")", nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", fmt.Errorf("--state-store: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "redis", "rediss":
		s, err := redisstore.Open(ctx, rawURL, redisstore.Options{Logger: log})
		if err != nil {
			return nil, "", fmt.Errorf("--state-store: %w", err)
		}
		return s, "redis (" + u.Redacted() + ")", nil
	}
	return nil, "", fmt.Errorf("--state-store %q: want empty (embedded) or a redis:// or rediss:// URL", u.Redacted())
}
