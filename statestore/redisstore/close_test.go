package redisstore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/granaryhq/granary/internal/testutil/redistest"
	"github.com/granaryhq/granary/statestore"
)

// TestCloseUnderLoad closes the store while 32 goroutines call it: every
// call either succeeds or fails with ErrClosed, and Close returns.
func TestCloseUnderLoad(t *testing.T) {
	modes(t, func(t *testing.T, opts Options) {
		s := openTest(t, opts)
		ctx := context.Background()
		var ok atomic.Int64
		started := make(chan struct{})
		var once sync.Once
		var wg sync.WaitGroup
		for w := range 32 {
			wg.Go(func() {
				for i := 0; ; i++ {
					k := "w" + strconv.Itoa(w)
					var err error
					if i%2 == 0 {
						err = s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{put(k, strconv.Itoa(i))}})
					} else {
						_, err = s.Get(ctx, k)
					}
					if errors.Is(err, statestore.ErrClosed) {
						return
					}
					if err != nil {
						t.Errorf("call before Close: %v", err)
						return
					}
					if ok.Add(1) > 200 {
						once.Do(func() { close(started) })
					}
				}
			})
		}
		<-started
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		wg.Wait()
	})
}

// TestWarnsWhenNotDurable: Open logs a warning when the server would lose
// acknowledged writes in a crash, and stays quiet when it would not.
func TestWarnsWhenNotDurable(t *testing.T) {
	for _, tt := range []struct {
		name string
		url  func(t *testing.T) string
		warn bool
	}{
		{"no persistence", func(t *testing.T) string { return redistest.StartServer(t, false).URL() }, true},
		{"appendfsync always", func(t *testing.T) string { return redistest.StartServer(t, true).URL() }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			openAt(t, tt.url(t), Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
			if got := strings.Contains(buf.String(), "can lose acknowledged writes"); got != tt.warn {
				t.Errorf("warned = %v, want %v; log: %s", got, tt.warn, buf.String())
			}
		})
	}
}
