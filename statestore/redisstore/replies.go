package redisstore

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/granaryhq/granary/statestore"
)

// etagSource makes ETags that never repeat, for any key, even after a key
// is deleted and created again: an ETag is a random 64-bit nonce drawn when
// the store opens, as 16 hex digits, followed by a number the store counts up
// in base 36, one per put. The count never repeats within one store; two
// stores give equal ETags only if they drew the same nonce, which for n
// stores ever opened on one database has a chance below n²/2⁶⁵. Counting on
// the client keeps every script to the keys of its own hash slot, which a
// counter kept in Redis could not.
type etagSource struct {
	nonce string
	n     atomic.Uint64
}

func newETagSource() *etagSource {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return &etagSource{nonce: hex.EncodeToString(b[:])}
}

// etagRange is a block of reserved counts.
type etagRange struct {
	src   *etagSource
	first uint64
}

// reserve reserves n ETags.
func (e *etagSource) reserve(n int) etagRange {
	last := e.n.Add(uint64(n))
	return etagRange{src: e, first: last - uint64(n) + 1}
}

// at is the i-th ETag of the block.
func (r etagRange) at(i int) string {
	return r.src.nonce + strconv.FormatUint(r.first+uint64(i), 36)
}

// readItem is the HMGET command that reads the item at a data key.
func readItem(dataKey string) command {
	return command{args: []any{"hmget", dataKey, "v", "e", "x"}}
}

// parseItem decodes the reply of readItem into the item of key. An absent
// key gives an item whose Exists is false.
func parseItem(key string, res []any) (statestore.Item, error) {
	if len(res) != 3 {
		return statestore.Item{}, fmt.Errorf("unexpected read reply %v", res)
	}
	if res[1] == nil {
		return statestore.Item{Key: key}, nil
	}
	value, ok1 := res[0].(string)
	etag, ok2 := res[1].(string)
	expires, ok3 := res[2].(string)
	if !ok1 || !ok2 || !ok3 || etag == "" {
		return statestore.Item{}, fmt.Errorf("unexpected read reply %v", res)
	}
	item := statestore.Item{Key: key, Value: []byte(value), ETag: etag}
	if expires != "" {
		ms, err := strconv.ParseInt(expires, 10, 64)
		if err != nil {
			return statestore.Item{}, fmt.Errorf("unexpected expiry %q", expires)
		}
		item.Expires = time.UnixMilli(ms)
	}
	return item, nil
}

// parseTime decodes the reply of TIME into Unix milliseconds.
func parseTime(res []any) (int64, error) {
	if len(res) == 2 {
		sec, ok1 := res[0].(string)
		usec, ok2 := res[1].(string)
		s, err1 := strconv.ParseInt(sec, 10, 64)
		us, err2 := strconv.ParseInt(usec, 10, 64)
		if ok1 && ok2 && err1 == nil && err2 == nil {
			return s*1000 + us/1000, nil
		}
	}
	return 0, fmt.Errorf("unexpected TIME reply %v", res)
}

// fencedError is the error of a txnScript refused by its fence check: the
// reply's second element is the record found, if there is one.
func fencedError(f *statestore.FenceCheck, res []any) (*statestore.FencedError, bool) {
	fe := &statestore.FencedError{Key: f.Key, Want: append([]byte(nil), f.Record...)}
	switch len(res) {
	case 1:
	case 2:
		found, ok := res[1].(string)
		if !ok {
			return nil, false
		}
		fe.Found = []byte(found)
	default:
		return nil, false
	}
	return fe, true
}

// txnOutcome is a decoded txnScript reply.
type txnOutcome struct {
	committedAt int64 // server time of the commit, when committed
	late        bool  // refused before writing: the index marks are too old
	err         error // a refused condition or fence check
}

// parseTxn decodes a txnScript reply for txn.
func parseTxn(txn statestore.Txn, res []any) (txnOutcome, error) {
	bad := func() (txnOutcome, error) { return txnOutcome{}, fmt.Errorf("unexpected transaction reply %v", res) }
	if len(res) == 0 {
		return bad()
	}
	switch res[0] {
	case "ok":
		if len(res) != 2 {
			return bad()
		}
		at, ok := res[1].(int64)
		if !ok {
			return bad()
		}
		return txnOutcome{committedAt: at}, nil
	case "late":
		return txnOutcome{late: true}, nil
	case "fenced":
		if txn.Fence == nil {
			return bad()
		}
		fe, ok := fencedError(txn.Fence, res)
		if !ok {
			return bad()
		}
		return txnOutcome{err: fe}, nil
	case "cond":
		if len(res) != 3 {
			return bad()
		}
		i, ok1 := res[1].(int64)
		have, ok2 := res[2].(string)
		if !ok1 || !ok2 || i < 1 || int(i) > len(txn.Ops) {
			return bad()
		}
		op := txn.Ops[i-1]
		ce := &statestore.ConditionError{Key: op.Key, Want: op.ETag, Have: have}
		if op.IfAbsent {
			ce.Want = "absent"
		}
		if have == "" {
			ce.Have = "absent"
		}
		return txnOutcome{err: ce}, nil
	}
	return bad()
}
