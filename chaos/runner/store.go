package runner

// Reading the store's committed writes straight from Redis, by the key
// layout the docs give, without the runtime's code: each write of the
// workload app carries an audit entry, in the same transaction, naming the
// claim it ran under.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/granaryhq/granary/chaos/app"
	"github.com/granaryhq/granary/chaos/history"
)

// auditPattern matches the items holding audit entries under the Redis
// store's default prefix: granary:d:actor{<type>/<shard>}/<id>/state/audit/<req>.
const auditPattern = "granary:d:actor{Chaos*}/*/state/" + "audit/*"

// parseAuditKey splits an audit item's key into actor type, actor ID and
// request ID.
func parseAuditKey(key string) (actorType, id, req string, err error) {
	rest, ok := strings.CutPrefix(key, "granary:d:actor{")
	if !ok {
		return "", "", "", fmt.Errorf("audit key %q: no actor{ prefix", key)
	}
	tag, rest, ok := strings.Cut(rest, "}/")
	if !ok {
		return "", "", "", fmt.Errorf("audit key %q: no shard tag", key)
	}
	actorType, _, ok = strings.Cut(tag, "/")
	if !ok {
		return "", "", "", fmt.Errorf("audit key %q: shard tag %q has no shard", key, tag)
	}
	id, rest, ok = strings.Cut(rest, "/state/audit/")
	if !ok || id == "" || rest == "" {
		return "", "", "", fmt.Errorf("audit key %q: want <id>/state/audit/<request>", key)
	}
	return actorType, id, rest, nil
}

// decodeAudit reads an item's value: the JSON the app wrote, possibly
// stored as a JSON string of it.
func decodeAudit(v string) (app.Audit, error) {
	var a app.Audit
	if err := json.Unmarshal([]byte(v), &a); err == nil && a.Claim != "" {
		return a, nil
	}
	var inner string
	if err := json.Unmarshal([]byte(v), &inner); err != nil {
		return a, fmt.Errorf("audit value %q is not the app's JSON", v)
	}
	if err := json.Unmarshal([]byte(inner), &a); err != nil || a.Claim == "" {
		return a, fmt.Errorf("audit value %q is not the app's JSON", v)
	}
	return a, nil
}

// committedWrites scans the database for audit entries and returns one
// store record per entry, with the time the app sent the write.
func committedWrites(ctx context.Context, rdb *redis.Client) ([]history.StoreRecord, error) {
	var out []history.StoreRecord
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, auditPattern, 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("scanning the store's audit entries: %w", err)
		}
		if len(keys) > 0 {
			pipe := rdb.Pipeline()
			cmds := make([]*redis.StringCmd, len(keys))
			for i, k := range keys {
				cmds[i] = pipe.HGet(ctx, k, "v")
			}
			if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
				return nil, fmt.Errorf("reading the store's audit entries: %w", err)
			}
			for i, k := range keys {
				actorType, id, _, err := parseAuditKey(k)
				if err != nil {
					return nil, err
				}
				v, err := cmds[i].Result()
				if err == redis.Nil {
					continue // expired or deleted since the scan
				}
				if err != nil {
					return nil, fmt.Errorf("reading %s: %w", k, err)
				}
				a, err := decodeAudit(v)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", k, err)
				}
				out = append(out, history.StoreRecord{Type: actorType, Actor: id, Key: a.Key, Claim: a.Claim, CommitAt: a.At})
			}
		}
		if next == 0 {
			return out, nil
		}
		cursor = next
	}
}
