package statestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Claim is the right of one silo process to serve a shard: the cluster it
// belongs to, the placement table version it was granted under, the silo and
// the process incarnation. Claims are compared whole, never ordered as a
// number: only ClaimShard's rules relate two of them.
type Claim struct {
	Cluster     string
	Version     uint64
	Silo        string
	Incarnation string
}

// String is "<version>/<silo>/<incarnation>", as the Granary-Activation
// header carries it.
func (c Claim) String() string {
	return strconv.FormatUint(c.Version, 10) + "/" + c.Silo + "/" + c.Incarnation
}

// Validate checks that every field can be encoded in a fence record: none is
// empty or holds whitespace or control characters, and the silo and the
// incarnation hold no "/" (which String uses as its separator).
func (c Claim) Validate() error {
	for _, f := range []struct{ name, value, alsoBanned string }{
		{"cluster", c.Cluster, ""},
		{"silo", c.Silo, "/"},
		{"incarnation", c.Incarnation, "/"},
	} {
		if err := checkClaimField(f.value, f.alsoBanned); err != nil {
			return fmt.Errorf("statestore: claim %s %q: %w", f.name, f.value, err)
		}
	}
	return nil
}

func checkClaimField(v, alsoBanned string) error {
	if v == "" {
		return errors.New("empty")
	}
	if !utf8.ValidString(v) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range v {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("holds the character %q", r)
		}
	}
	if alsoBanned != "" && strings.ContainsAny(v, alsoBanned) {
		return fmt.Errorf("holds %q", alsoBanned)
	}
	return nil
}

// FenceRecord is what a shard fence record holds: a claim, held or released
// by its silo.
type FenceRecord struct {
	Claim    Claim
	Released bool
}

// fenceRecordMagic starts every encoded fence record.
const fenceRecordMagic = "granary-shard-fence/1"

// Encode returns the canonical encoding of r, one line:
//
//	granary-shard-fence/1 held|released <cluster> <version> <silo> <incarnation>
//
// Two records are equal exactly when their encodings are. The claim must be
// valid (Claim.Validate), or the result does not parse.
func (r FenceRecord) Encode() []byte {
	state := "held"
	if r.Released {
		state = "released"
	}
	c := r.Claim
	b := make([]byte, 0, len(fenceRecordMagic)+len(state)+len(c.Cluster)+len(c.Silo)+len(c.Incarnation)+25)
	b = append(b, fenceRecordMagic...)
	b = append(b, ' ')
	b = append(b, state...)
	b = append(b, ' ')
	b = append(b, c.Cluster...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, c.Version, 10)
	b = append(b, ' ')
	b = append(b, c.Silo...)
	b = append(b, ' ')
	return append(b, c.Incarnation...)
}

// HeldRecord is the encoding of the fence record that holds c: what a
// writer under c requires (FenceCheck.Record).
func (c Claim) HeldRecord() []byte { return FenceRecord{Claim: c}.Encode() }

// ParseFenceRecord decodes an encoded fence record. It accepts only the
// canonical encoding, so that Encode(ParseFenceRecord(b)) == b.
func ParseFenceRecord(b []byte) (FenceRecord, error) {
	fields := strings.Split(string(b), " ")
	if len(fields) != 6 || fields[0] != fenceRecordMagic {
		return FenceRecord{}, fmt.Errorf("statestore: %q is not a shard fence record (want %q, held or released, cluster, version, silo and incarnation separated by single spaces)", truncate(b, 120), fenceRecordMagic)
	}
	var r FenceRecord
	switch fields[1] {
	case "held":
	case "released":
		r.Released = true
	default:
		return FenceRecord{}, fmt.Errorf("statestore: shard fence record %q: state %q, want held or released", truncate(b, 120), fields[1])
	}
	version, err := strconv.ParseUint(fields[3], 10, 64)
	if err != nil || strconv.FormatUint(version, 10) != fields[3] {
		return FenceRecord{}, fmt.Errorf("statestore: shard fence record %q: version %q is not a decimal number", truncate(b, 120), fields[3])
	}
	r.Claim = Claim{Cluster: fields[2], Version: version, Silo: fields[4], Incarnation: fields[5]}
	if err := r.Claim.Validate(); err != nil {
		return FenceRecord{}, fmt.Errorf("statestore: shard fence record %q: %w", truncate(b, 120), err)
	}
	return r, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// ClaimRefusedError reports a claim that a fence record's holder keeps. It
// wraps ErrFenced.
type ClaimRefusedError struct {
	Key      string
	Holder   Claim // the claim the record names; zero when the record is unreadable
	Released bool  // the holder has released the record
	// OtherCluster: the record belongs to another cluster (a takeover would win).
	OtherCluster bool
	// Newer: the record holds a newer version of the claimant's own cluster,
	// which the claimant's placement has to move past.
	Newer  bool
	Reason string
}

func (e *ClaimRefusedError) Error() string {
	if e.Holder == (Claim{}) {
		return fmt.Sprintf("statestore: claim of %q refused: %s", e.Key, e.Reason)
	}
	state := "held"
	if e.Released {
		state = "released"
	}
	return fmt.Sprintf("statestore: claim of %q refused: %s (%s by cluster %q, version %d, silo %q, incarnation %q)",
		e.Key, e.Reason, state, e.Holder.Cluster, e.Holder.Version, e.Holder.Silo, e.Holder.Incarnation)
}

func (e *ClaimRefusedError) Unwrap() error { return ErrFenced }

// maxCASAttempts is how often ClaimShard, ReleaseShard and NextVersion read
// again after losing a compare-and-set to a concurrent writer.
const maxCASAttempts = 3

// ClaimShard claims the shard fence record at key for c with compare-and-set.
// The claim wins over an absent record, a record equal to c (claiming again
// is idempotent), a record released by the same cluster at a version no newer
// than c's, and a record held by the same cluster at an older version. It is
// refused, with a *ClaimRefusedError wrapping ErrFenced, by a record of
// another cluster (unless takeover is set: it overrides this case only), by
// a newer version of c's cluster, and by the same version held by another
// silo or incarnation. Store failures are returned wrapped as they are.
func ClaimShard(ctx context.Context, s Store, key string, c Claim, takeover bool) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("statestore: claim %q: %w", key, err)
	}
	return claimShard(ctx, s, key, c, c.HeldRecord(), takeover)
}

func claimShard(ctx context.Context, s Store, key string, c Claim, held []byte, takeover bool) error {
	var lost error
	for range maxCASAttempts {
		item, err := s.Get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			item, err = Item{Key: key}, nil
		}
		if err != nil {
			return fmt.Errorf("statestore: claim %q: reading the fence record: %w", key, err)
		}
		op, err := claimStep(key, item, c, held, takeover)
		if err != nil || op == nil {
			return err
		}
		err = s.Transact(ctx, Txn{Ops: []Op{*op}})
		if !errors.Is(err, ErrETagMismatch) {
			if err != nil {
				return fmt.Errorf("statestore: claim %q: %w", key, err)
			}
			return nil
		}
		lost = err
	}
	return fmt.Errorf("statestore: claim %q: the record changed under each of %d attempts: %w: %w", key, maxCASAttempts, ErrFenced, lost)
}

// claimStep decides the claim of key for c against the record as read:
// nothing to do (nil, nil), the conditional write that claims it, or a
// refusal.
func claimStep(key string, item Item, c Claim, held []byte, takeover bool) (*Op, error) {
	if !item.Exists() {
		return &Op{Kind: Put, Key: key, Value: held, IfAbsent: true}, nil
	}
	if bytes.Equal(item.Value, held) {
		return nil, nil
	}
	claim := &Op{Kind: Put, Key: key, Value: held, ETag: item.ETag}
	r, err := ParseFenceRecord(item.Value)
	if err != nil {
		return nil, &ClaimRefusedError{Key: key, Reason: err.Error()}
	}
	refused := &ClaimRefusedError{Key: key, Holder: r.Claim, Released: r.Released}
	switch {
	case r.Claim.Cluster != c.Cluster:
		if takeover {
			return claim, nil
		}
		refused.OtherCluster = true
		refused.Reason = fmt.Sprintf("the shard belongs to cluster %q, not %q", r.Claim.Cluster, c.Cluster)
	case r.Claim.Version > c.Version:
		refused.Newer = true
		refused.Reason = fmt.Sprintf("version %d of the cluster has it, newer than %d", r.Claim.Version, c.Version)
	case r.Released, r.Claim.Version < c.Version:
		return claim, nil
	default:
		refused.Reason = fmt.Sprintf("version %d is held by another silo process", c.Version)
	}
	return nil, refused
}

// claimWorkers bounds the claims ClaimShards writes at once on a store that
// does not commit many transactions together.
const claimWorkers = 32

// ClaimShards claims every fence record of keys for c, as ClaimShard would
// each, and returns one error per key (nil for those claimed). It reads all
// records in one BulkGet and writes the claims in one TransactMany when the
// store is a MultiTransactor; a claim that loses a race is retried alone.
func ClaimShards(ctx context.Context, s Store, keys []string, c Claim, takeover bool) []error {
	errs := make([]error, len(keys))
	fail := func(err error) []error {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	if err := c.Validate(); err != nil {
		return fail(fmt.Errorf("statestore: claim %d shards: %w", len(keys), err))
	}
	if len(keys) == 0 {
		return errs
	}
	held := c.HeldRecord()
	items, err := s.BulkGet(ctx, keys)
	if err != nil {
		return fail(fmt.Errorf("statestore: claim %d shards: reading their fence records: %w", len(keys), err))
	}
	var (
		pending []int // indexes into keys of the claims to write
		txns    []Txn
	)
	for i, item := range items {
		op, err := claimStep(keys[i], item, c, held, takeover)
		if err != nil {
			errs[i] = err
		} else if op != nil {
			pending = append(pending, i)
			txns = append(txns, Txn{Ops: []Op{*op}})
		}
	}
	if len(txns) == 0 {
		return errs
	}
	for j, err := range transactAll(ctx, s, txns) {
		i := pending[j]
		switch {
		case errors.Is(err, ErrETagMismatch):
			errs[i] = claimShard(ctx, s, keys[i], c, held, takeover)
		case err != nil:
			errs[i] = fmt.Errorf("statestore: claim %q: %w", keys[i], err)
		}
	}
	return errs
}

// transactAll applies txns, each atomically: in one TransactMany when s is a
// MultiTransactor, otherwise by up to claimWorkers Transact calls at once.
func transactAll(ctx context.Context, s Store, txns []Txn) []error {
	if m, ok := s.(MultiTransactor); ok {
		return m.TransactMany(ctx, txns)
	}
	errs := make([]error, len(txns))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(claimWorkers, len(txns)) {
		wg.Go(func() {
			for i := range next {
				errs[i] = s.Transact(ctx, txns[i])
			}
		})
	}
feed:
	for i := range txns {
		select {
		case next <- i:
		case <-ctx.Done():
			// The rest are not sent: a caller that gave up (a silo
			// shutting down) is not kept waiting for them.
			for j := i; j < len(txns); j++ {
				errs[j] = ctx.Err()
			}
			break feed
		}
	}
	close(next)
	wg.Wait()
	return errs
}

// ReleaseShard marks the fence record at key, held by c, released by c, so
// that a later claim of c's cluster wins it at once. Releasing a record
// already released by c succeeds; a record not held by c (absent, or another
// claim's) is refused with a *FencedError wrapping ErrFenced.
func ReleaseShard(ctx context.Context, s Store, key string, c Claim) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("statestore: release %q: %w", key, err)
	}
	held := c.HeldRecord()
	released := FenceRecord{Claim: c, Released: true}.Encode()
	var lost error
	for range maxCASAttempts {
		item, err := s.Get(ctx, key)
		switch {
		case errors.Is(err, ErrNotFound):
			return fmt.Errorf("statestore: release %q: %w", key, &FencedError{Key: key, Want: held})
		case err != nil:
			return fmt.Errorf("statestore: release %q: reading the fence record: %w", key, err)
		case bytes.Equal(item.Value, released):
			return nil
		case !bytes.Equal(item.Value, held):
			return fmt.Errorf("statestore: release %q: %w", key, &FencedError{Key: key, Want: held, Found: item.Value})
		}
		err = s.Transact(ctx, Txn{Ops: []Op{{Kind: Put, Key: key, Value: released, ETag: item.ETag}}})
		if !errors.Is(err, ErrETagMismatch) {
			if err != nil {
				return fmt.Errorf("statestore: release %q: %w", key, err)
			}
			return nil
		}
		lost = err
	}
	return fmt.Errorf("statestore: release %q: the record changed under each of %d attempts: %w: %w", key, maxCASAttempts, ErrFenced, lost)
}

// NextVersion counts up the decimal counter at key (ClusterVersionKey) with
// compare-and-set and returns its new value: 1 when the key is absent. Two
// concurrent callers never get the same value.
func NextVersion(ctx context.Context, s Store, key string) (uint64, error) {
	var lost error
	for range maxCASAttempts {
		item, err := s.Get(ctx, key)
		op := Op{Kind: Put, Key: key}
		var next uint64 = 1
		switch {
		case errors.Is(err, ErrNotFound):
			op.IfAbsent = true
		case err != nil:
			return 0, fmt.Errorf("statestore: version counter %q: %w", key, err)
		default:
			cur, perr := strconv.ParseUint(string(item.Value), 10, 64)
			if perr != nil || strconv.FormatUint(cur, 10) != string(item.Value) {
				return 0, fmt.Errorf("statestore: version counter %q holds %q, not a decimal number", key, truncate(item.Value, 40))
			}
			if cur == ^uint64(0) {
				return 0, fmt.Errorf("statestore: version counter %q is at its maximum", key)
			}
			next, op.ETag = cur+1, item.ETag
		}
		op.Value = strconv.AppendUint(nil, next, 10)
		err = s.Transact(ctx, Txn{Ops: []Op{op}})
		if err == nil {
			return next, nil
		}
		if !errors.Is(err, ErrETagMismatch) {
			return 0, fmt.Errorf("statestore: version counter %q: %w", key, err)
		}
		lost = err
	}
	return 0, fmt.Errorf("statestore: version counter %q changed under each of %d attempts: %w", key, maxCASAttempts, lost)
}
