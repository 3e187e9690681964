package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/redis/go-redis/v9"
)

// The Redis client library logs through a process-wide logger of its own,
// for instance once per failed dial during an outage. Those failures reach
// callers as errors already, so the store sends the library's messages to
// slog at debug level instead of to stderr.
var routeClientLogs = sync.OnceFunc(func() { redis.SetLogger(slogAdapter{}) })

type slogAdapter struct{}

func (slogAdapter) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	slog.Default().DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
