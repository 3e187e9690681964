package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/granaryhq/granary/statestore"
)

// maxLateAttempts bounds how often a transaction is sent again after
// arriving at Redis too late: past its commit deadline (see deadline.go), or
// for its earlier index marks.
const maxLateAttempts = 3

// Transact applies txn atomically in one script call. Keys the transaction
// puts into an index are added to it first; keys it deletes from an index
// are removed from it after the commit.
func (s *Store) Transact(ctx context.Context, txn statestore.Txn) error {
	if !s.begin() {
		return s.fail("transact", statestore.ErrClosed)
	}
	defer s.end()
	if err := txn.Validate(); err != nil {
		return s.fail("transact", err)
	}
	if len(txn.Ops) == 0 && txn.Fence == nil {
		return nil
	}
	p := s.plan(txn)
	for attempt := 1; ; attempt++ {
		deadline := int64(-1)
		if len(p.marks) > 0 {
			at, err := s.mark(ctx, p.marks)
			if err != nil {
				return s.fail("transact: add to index", err)
			}
			deadline = at + s.window.Milliseconds()
		}
		sent := time.Now()
		commitBy, giveUp, bounded := s.commitDeadline(ctx, sent)
		if bounded && (deadline < 0 || commitBy < deadline) {
			deadline = commitBy
		}
		p.args[1] = ""
		if deadline >= 0 {
			p.args[1] = strconv.FormatInt(deadline, 10)
		}
		res, err := s.runTxn(ctx, p.keys, p.args)
		if err != nil {
			if bounded && maybeSent(err) {
				// The caller must not go on while the script may still
				// run and commit: wait for its deadline.
				awaitDeadline(ctx, giveUp)
			}
			return s.fail("transact", err)
		}
		out, err := parseTxn(txn, res)
		if err != nil {
			return s.fail("transact", err)
		}
		if out.err == nil && !out.late {
			s.clock.observe(out.committedAt, time.Now())
		}
		if out.err != nil {
			return s.fail("transact", out.err)
		}
		if out.late {
			if attempt < maxLateAttempts {
				continue
			}
			return s.fail("transact", fmt.Errorf("reached Redis past its commit deadline %d times (the network delays it past the read timeout %v or the index window %v)", attempt, s.readTimeout, s.window))
		}
		if len(p.unmarks) > 0 {
			if err := s.unindex(ctx, p.unmarks, out.committedAt); err != nil {
				// The delete has committed; the key stays in the index
				// until a Scan finds it absent and removes it.
				s.log.Warn("redis store: remove deleted keys from their index", "addr", s.addr, "err", err)
			}
		}
		return nil
	}
}

// txnPlan is a transaction turned into txnScript keys and arguments, and the
// index work around it.
type txnPlan struct {
	keys []string
	args []any
	// marks and unmarks map an index to the keys the transaction leaves
	// present (put last) and absent (deleted last).
	marks, unmarks map[string][]string
}

func (s *Store) plan(txn statestore.Txn) txnPlan {
	n := len(txn.Ops)
	p := txnPlan{
		keys: make([]string, 0, n+1),
		args: make([]any, 2, 2+6*n),
	}
	p.args[0] = ""
	p.args[1] = ""
	etags := s.etags.reserve(n)
	indexed := false
	for i, op := range txn.Ops {
		p.keys = append(p.keys, s.dataKey(op.Key))
		kind := "p"
		if op.Kind == statestore.Delete {
			kind = "d"
		}
		cond := ""
		switch {
		case op.ETag != "":
			cond = "e"
		case op.IfAbsent:
			cond = "a"
		}
		ttl := "0"
		if op.TTL > 0 {
			ttl = strconv.FormatInt(int64((op.TTL+time.Millisecond-1)/time.Millisecond), 10)
		}
		value := op.Value
		if value == nil {
			value = []byte{}
		}
		etag := ""
		if op.Kind == statestore.Put {
			etag = etags.at(i)
		}
		p.args = append(p.args, kind, cond, op.ETag, ttl, value, etag)
		indexed = indexed || op.Index != ""
	}
	if txn.Fence != nil {
		p.keys = append(p.keys, s.dataKey(txn.Fence.Key))
		p.args[0] = txn.Fence.Record
	}
	if indexed {
		p.marks, p.unmarks = indexChanges(txn.Ops)
	}
	return p
}

func (s *Store) runTxn(ctx context.Context, keys []string, args []any) ([]any, error) {
	return s.run(ctx, command{script: txnScript, keys: keys, args: args}).Slice()
}
