// Package statestore defines Store, the durable key-value contract that keeps
// actor state, reminders and the shard fences that guard them, the key layout
// Granary uses on top of it, and the shard claims (claim.go) built on its
// compare-and-set. Implementations live in sub-packages (boltstore,
// redisstore, memstore) and all pass the conformance suite in
// statestore/storetest.
package statestore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Store is a durable, binary-safe key-value store with versioned values,
// atomic multi-key transactions, per-key TTLs, fence checks and indexed scans.
//
// Keys and values are arbitrary byte strings (Go strings and []byte). Every
// method is safe for concurrent use. A method that returns nil has made its
// effect durable: an acknowledged write survives a crash of the process.
type Store interface {
	// Get returns the live item stored under key, or an error wrapping
	// ErrNotFound when the key is absent or expired.
	Get(ctx context.Context, key string) (Item, error)

	// BulkGet returns one item per key, in the order of keys. An absent or
	// expired key yields an Item whose Exists method reports false.
	BulkGet(ctx context.Context, keys []string) ([]Item, error)

	// Transact applies every operation of txn atomically: all of them or none.
	// It fails with an error wrapping ErrETagMismatch when a condition of an
	// operation does not hold, and with an error wrapping ErrFenced (a
	// *FencedError) when txn.Fence is set and the record at Fence.Key is not,
	// byte for byte, Fence.Record. The fence is checked in the same atomic
	// step as the writes. Operations apply in order; a later operation on the
	// same key sees the effect of an earlier one.
	Transact(ctx context.Context, txn Txn) error

	// Scan returns up to limit live items of the named index whose keys sort
	// strictly after the key after (bytewise), in key order. An empty after
	// starts at the beginning. A key joins an index when it is put with
	// Op.Index set and leaves it when it is deleted or expires. Every key
	// committed to the index before Scan is called is returned by a complete
	// paging through the index.
	Scan(ctx context.Context, index, after string, limit int) ([]Item, error)

	// Close releases the store. Calls after Close fail.
	Close() error
}

// Item is a value as stored.
type Item struct {
	Key   string
	Value []byte
	// ETag identifies this version of the value; it changes on every write.
	// It is empty only for an absent key (see Exists).
	ETag string
	// Expires is when the item stops being visible; zero means never.
	Expires time.Time
}

// Exists reports whether the item was found.
func (i Item) Exists() bool { return i.ETag != "" }

// OpKind says what an Op does.
type OpKind uint8

const (
	// Put stores Op.Value under Op.Key.
	Put OpKind = iota + 1
	// Delete removes Op.Key. Deleting an absent key succeeds unless a
	// condition says otherwise.
	Delete
)

func (k OpKind) String() string {
	switch k {
	case Put:
		return "put"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Op is one operation of a transaction.
type Op struct {
	Kind  OpKind
	Key   string
	Value []byte

	// ETag, when not empty, requires the key to exist with exactly this ETag
	// (optimistic concurrency, "last write" mode with a version check).
	ETag string
	// IfAbsent, with an empty ETag, requires the key not to exist
	// ("first write" mode: the first writer of a key wins).
	IfAbsent bool

	// TTL, when positive, makes a put expire after this long. A put without a
	// TTL clears any earlier TTL of the key.
	TTL time.Duration

	// Index, when not empty, names the scan index the key belongs to: a put
	// adds the key to it and a delete removes the key from it. Callers pass
	// the same index for every write of a key.
	Index string
}

// Txn is an atomic group of operations, optionally guarded by a fence.
type Txn struct {
	// Fence, when set, refuses the whole transaction with ErrFenced unless
	// the live item at Fence.Key exists and its value equals Fence.Record.
	// An absent (or expired) record refuses. Stores only read the check.
	Fence *FenceCheck
	Ops   []Op
}

// FenceCheck names a fence record and the exact value a writer requires it
// to hold: the encoding of the writer's held claim (Claim.HeldRecord).
type FenceCheck struct {
	Key    string
	Record []byte
}

// Errors that callers branch on. Implementations wrap them with context.
var (
	ErrNotFound     = errors.New("statestore: key not found")
	ErrETagMismatch = errors.New("statestore: etag mismatch")
	ErrFenced       = errors.New("statestore: fenced: the writer's claim is not the fence record's")
	ErrClosed       = errors.New("statestore: store is closed")
)

// ConditionError reports which operation's condition failed. It wraps
// ErrETagMismatch.
type ConditionError struct {
	Key  string
	Want string // the ETag required, or "absent" for IfAbsent
	Have string // the current ETag, or "absent"
}

func (e *ConditionError) Error() string {
	return fmt.Sprintf("statestore: etag mismatch for key %q: want %s, have %s", e.Key, e.Want, e.Have)
}

func (e *ConditionError) Unwrap() error { return ErrETagMismatch }

// FencedError reports a transaction refused by its fence check, or a release
// of a fence record the releaser does not hold. It wraps ErrFenced.
type FencedError struct {
	Key   string
	Want  []byte // the record the writer required
	Found []byte // the record stored; nil when there is none
}

func (e *FencedError) Error() string {
	if e.Found == nil {
		return fmt.Sprintf("statestore: fence %q: no record, want %q", e.Key, e.Want)
	}
	return fmt.Sprintf("statestore: fence %q holds %q, want %q", e.Key, e.Found, e.Want)
}

func (e *FencedError) Unwrap() error { return ErrFenced }

// Validate checks the shape of a transaction, independently of stored data.
// Stores call it before doing any work.
func (t Txn) Validate() error {
	if t.Fence != nil {
		if t.Fence.Key == "" {
			return errors.New("statestore: fence check with an empty key")
		}
		if len(t.Fence.Record) == 0 {
			return fmt.Errorf("statestore: fence check of %q with an empty record", t.Fence.Key)
		}
	}
	for i, op := range t.Ops {
		if op.Key == "" {
			return fmt.Errorf("statestore: operation %d: empty key", i)
		}
		switch op.Kind {
		case Put:
		case Delete:
			if op.TTL != 0 || op.Value != nil {
				return fmt.Errorf("statestore: operation %d: delete of %q carries a value or TTL", i, op.Key)
			}
		default:
			return fmt.Errorf("statestore: operation %d: unknown kind %v", i, op.Kind)
		}
		if op.TTL < 0 {
			return fmt.Errorf("statestore: operation %d: negative TTL", i)
		}
		if op.ETag != "" && op.IfAbsent {
			return fmt.Errorf("statestore: operation %d: both ETag and IfAbsent set", i)
		}
	}
	return nil
}

// MultiTransactor is implemented by stores that can commit many independent
// transactions together more cheaply than one by one.
type MultiTransactor interface {
	// TransactMany applies each transaction atomically, as Transact would,
	// and returns one error per transaction (nil for those applied). A
	// transaction refused by its fence or a condition does not affect the
	// others; a failure of the store fails them all.
	TransactMany(ctx context.Context, txns []Txn) []error
}
