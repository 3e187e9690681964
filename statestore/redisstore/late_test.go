package redisstore

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/granaryhq/granary/chaos/proxy"
	"github.com/granaryhq/granary/internal/testutil/redistest"
	"github.com/granaryhq/granary/statestore"
)

// TestTransactionHeldInTheNetworkNeverCommitsLate: a transaction whose
// bytes the network holds past the client's timeout fails for the caller;
// when the network delivers them afterwards, as TCP does once a partition
// heals, it must not commit. It used to: a turn's write that had failed
// landed in the store in the middle of the actor's next turn, and a
// retried increment was applied twice.
func TestTransactionHeldInTheNetworkNeverCommitsLate(t *testing.T) {
	modes(t, func(t *testing.T, opts Options) {
		target, err := url.Parse(redistest.URL(t))
		if err != nil {
			t.Fatal(err)
		}
		p, err := proxy.New("127.0.0.1:0", target.Host, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		through := *target
		through.Host = p.Addr()
		opts.ReadTimeout = 400 * time.Millisecond
		s := openAt(t, through.String(), opts)
		direct := openAt(t, target.String(), Options{KeyPrefix: s.prefix})
		mustTransact(t, s, put("before", "1")) // the link works

		p.CutWith(proxy.Hold, proxy.Upstream)
		ctx := context.Background()
		err = s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{put("held", "1")}})
		if err == nil {
			t.Fatal("a transaction whose bytes were held succeeded")
		}
		p.Heal() // the held bytes reach Redis now, after the caller gave up
		time.Sleep(300 * time.Millisecond)
		if _, err := direct.Get(ctx, "held"); !errors.Is(err, statestore.ErrNotFound) {
			t.Fatalf("the transaction that failed for its caller committed once its bytes arrived (get: %v)", err)
		}
		mustTransact(t, s, put("after", "1")) // and the store works on
	})
}
