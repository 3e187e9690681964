package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/granaryhq/granary/statestore"
)

// Index maintenance. An index is a sorted set in a hash slot of its own, so
// a transaction's script cannot update it; the store updates it around the
// transaction instead, in an order that keeps Scan complete:
//
//   - A key a transaction puts is added to its index (markScript) before the
//     transaction runs, and the time of that mark is recorded. So a key that
//     has committed is always listed; a listed key may be gone (its
//     transaction was refused, or the key was deleted or expired later).
//   - The transaction script refuses to run more than the window (10 s) after
//     the mark, and Transact then marks again. So every put that marked a key
//     at time m has committed, or will never commit, by m + window.
//   - A key is removed from its index (unindexScript) only when it was found
//     absent at a time t with m + window < t, m being its latest mark: every
//     put that marked it committed before t, so absent at t means deleted or
//     expired since, and a put after t marks anew, later than t, and so stays
//     listed (the check and the removal are one script on the index's slot).
//
// Removal happens after a delete commits (t is the commit time) and in Scan,
// which skips listed keys that are gone (t is the time the reads began).
// A key deleted within the window after its last put stays listed, skipped,
// until a later Scan removes it. All times are the Redis server's; with one
// server no clock skew enters.

// indexChanges returns, per index, the keys whose last indexed operation in
// ops is a put (marks) and a delete (unmarks).
func indexChanges(ops []statestore.Op) (marks, unmarks map[string][]string) {
	last := make(map[string]int)
	for i, op := range ops {
		if op.Index != "" {
			last[op.Key] = i
		}
	}
	for i, op := range ops {
		if op.Index == "" || last[op.Key] != i {
			continue
		}
		if op.Kind == statestore.Put {
			if marks == nil {
				marks = make(map[string][]string)
			}
			marks[op.Index] = append(marks[op.Index], op.Key)
		} else {
			if unmarks == nil {
				unmarks = make(map[string][]string)
			}
			unmarks[op.Index] = append(unmarks[op.Index], op.Key)
		}
	}
	return marks, unmarks
}

// mark adds keys to their indexes and returns the earliest server time of
// the marks: the transaction must commit within s.window of it.
func (s *Store) mark(ctx context.Context, byIndex map[string][]string) (int64, error) {
	cmds := make([]command, 0, len(byIndex))
	for index, keys := range byIndex {
		cmds = append(cmds, command{script: markScript, keys: []string{s.indexKey(index), s.marksKey(index)}, args: stringArgs(nil, keys)})
	}
	var earliest int64
	for i, r := range s.runIndexCommands(ctx, cmds) {
		at, err := r.Int64()
		if err != nil {
			return 0, err
		}
		if i == 0 || at < earliest {
			earliest = at
		}
	}
	return earliest, nil
}

// unindex removes keys seen absent at server time seenAt (or later) from
// their indexes, keeping those a put may still commit.
func (s *Store) unindex(ctx context.Context, byIndex map[string][]string, seenAt int64) error {
	cmds := make([]command, 0, len(byIndex))
	for index, keys := range byIndex {
		args := stringArgs([]any{seenAt, s.window.Milliseconds()}, keys)
		cmds = append(cmds, command{script: unindexScript, keys: []string{s.indexKey(index), s.marksKey(index)}, args: args})
	}
	var errs []error
	for _, r := range s.runIndexCommands(ctx, cmds) {
		errs = append(errs, r.Err())
	}
	return errors.Join(errs...)
}

// runIndexCommands sends the index scripts of one transaction or scan: a
// single one like any other command, several in one pipeline.
func (s *Store) runIndexCommands(ctx context.Context, cmds []command) []*redis.Cmd {
	if len(cmds) == 1 {
		return []*redis.Cmd{s.run(ctx, cmds[0])}
	}
	return runAll(ctx, s.client, cmds)
}

func stringArgs(args []any, strs []string) []any {
	for _, s := range strs {
		args = append(args, s)
	}
	return args
}

// Scan returns up to limit live items of index after the key after. Keys the
// index still lists but that are gone (deleted, expired, or put by a
// transaction that did not commit) are skipped and removed from the index
// once no put of them can still be on its way.
func (s *Store) Scan(ctx context.Context, index, after string, limit int) ([]statestore.Item, error) {
	if !s.begin() {
		return nil, s.fail("scan", statestore.ErrClosed)
	}
	defer s.end()
	if limit < 0 {
		return nil, s.fail("scan", fmt.Errorf("negative limit %d", limit))
	}
	from := "-"
	if after != "" {
		from = "(" + after
	}
	var items []statestore.Item
	for len(items) < limit {
		want := limit - len(items)
		keys, err := s.client.ZRangeByLex(ctx, s.indexKey(index), &redis.ZRangeBy{Min: from, Max: "+", Count: int64(want)}).Result()
		if err != nil {
			return nil, s.failKey("scan", index, err)
		}
		if len(keys) == 0 {
			break
		}
		// TIME first: on one server it runs before the reads, so a key
		// they find absent was absent at some time after it.
		cmds := make([]command, 1+len(keys))
		cmds[0] = command{args: []any{"time"}}
		for i, k := range keys {
			cmds[1+i] = readItem(s.dataKey(k))
		}
		results := runAll(ctx, s.client, cmds)
		res, err := results[0].Slice()
		if err != nil {
			return nil, s.failKey("scan", index, err)
		}
		seenAt, err := parseTime(res)
		if err != nil {
			return nil, s.failKey("scan", index, err)
		}
		var gone []string
		for i, k := range keys {
			res, err := results[1+i].Slice()
			if err != nil {
				return nil, s.failKey("scan", index, err)
			}
			item, err := parseItem(k, res)
			if err != nil {
				return nil, s.failKey("scan", index, err)
			}
			if item.Exists() {
				items = append(items, item)
			} else {
				gone = append(gone, k)
			}
		}
		if len(gone) > 0 {
			if err := s.unindex(ctx, map[string][]string{index: gone}, seenAt); err != nil {
				s.log.Warn("redis store: remove gone keys from their index", "addr", s.addr, "index", index, "err", err)
			}
		}
		if len(keys) < want {
			break
		}
		from = "(" + keys[len(keys)-1]
	}
	return items, nil
}
