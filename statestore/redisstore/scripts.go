package redisstore

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts the store runs. Each touches only the keys it is given, and
// every key one script call is given shares a hash slot when the store keys
// carry the same hash tag (as the statestore layout's do), so each call is one
// atomic step on one Redis node. Times are the server's, in milliseconds.
//
// The "#!lua" line (Redis 7.0 and newer) makes Redis check for out-of-memory
// before a writing script starts rather than at its first write, so a script
// either runs to its end or not at all.

// luaHelpers are shared by the scripts that need them.
const luaHelpers = `
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// txnScript checks a transaction's fence and conditions against the state as
// the earlier operations of the same transaction leave it, and only when all
// hold applies every operation.
//
//	KEYS     the data key of each operation, then the fence record's data key if ARGV[1] ~= ''
//	ARGV[1]  the value the fence record must hold exactly, or ''
//	ARGV[2]  the commit deadline (server ms: the earlier of the caller's give-up
//	         time and the index marks' window; see deadline.go), or ''
//	then, per operation, six arguments: kind ('p' put, 'd' delete),
//	condition ('' none, 'a' absent, 'e' ETag), wanted ETag, TTL in ms ('0': none),
//	value, and the new ETag of a put
//	returns  {'ok', now} | {'cond', operation number, current ETag or ''} |
//	         {'fenced'} (no record) | {'fenced', the record's value} |
//	         {'late'} when the deadline has passed
//
// The fence record is an item like any other (a HASH, see below), written
// by claims through this same script; an expired one is absent.
//
// A put stores the value, the ETag and the expiry time (Unix ms, empty for
// none) in the fields v, e and x, and expires the key at that time, so one
// HMGET reads an item whole.
var txnScript = redis.NewScript(`#!lua` + luaHelpers + `
local now = nowms()
if ARGV[2] ~= '' and now > tonumber(ARGV[2]) then return {'late'} end
local n = #KEYS
if ARGV[1] ~= '' then
  local cur = redis.call('HGET', KEYS[n], 'v')
  n = n - 1
  if not cur then return {'fenced'} end
  if cur ~= ARGV[1] then return {'fenced', cur} end
end
local state = {}
for i = 1, n do
  local k, at = KEYS[i], 2 + (i - 1) * 6
  local have = state[k]
  if have == nil then have = redis.call('HGET', k, 'e') end
  local cond = ARGV[at + 2]
  if cond == 'a' and have then return {'cond', i, have} end
  if cond == 'e' and have ~= ARGV[at + 3] then return {'cond', i, have or ''} end
  if ARGV[at + 1] == 'p' then state[k] = ARGV[at + 6] else state[k] = false end
end
for i = 1, n do
  local k, at = KEYS[i], 2 + (i - 1) * 6
  if ARGV[at + 1] == 'p' then
    if ARGV[at + 4] == '0' then
      redis.call('HSET', k, 'v', ARGV[at + 5], 'e', ARGV[at + 6], 'x', '')
      redis.call('PERSIST', k)
    else
      local expires = string.format('%d', now + tonumber(ARGV[at + 4]))
      redis.call('HSET', k, 'v', ARGV[at + 5], 'e', ARGV[at + 6], 'x', expires)
      redis.call('PEXPIREAT', k, expires)
    end
  else
    redis.call('DEL', k)
  end
end
return {'ok', now}
`)

// markScript adds keys to an index and records when.
//
//	KEYS[1]  the index sorted set; KEYS[2] its marks hash
//	ARGV     the keys
//	returns  now
var markScript = redis.NewScript(`#!lua` + luaHelpers + `
local now = nowms()
local stamp = string.format('%d', now)
for i = 1, #ARGV do
  redis.call('ZADD', KEYS[1], 0, ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], stamp)
end
return now
`)

// unindexScript removes keys seen absent from an index, unless a put may
// still commit them: a key stays when it was marked so recently that a put
// that marked it could commit after it was seen absent.
//
//	KEYS[1]  the index sorted set; KEYS[2] its marks hash
//	ARGV[1]  a server time (ms) no later than the reads that found the keys absent
//	ARGV[2]  the commit window (ms) of a mark
//	ARGV[3…] the keys
//	returns  the number of keys removed
var unindexScript = redis.NewScript(`#!lua
local seen, window, removed = tonumber(ARGV[1]), tonumber(ARGV[2]), 0
for i = 3, #ARGV do
  local mark = redis.call('HGET', KEYS[2], ARGV[i])
  if not mark or tonumber(mark) + window < seen then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
return removed
`)

var allScripts = []*redis.Script{txnScript, markScript, unindexScript}

// command is one Redis command the store sends: a call of a script, or a
// plain command.
type command struct {
	script *redis.Script // when set: EVALSHA of script with keys and args
	keys   []string
	args   []any // the script's arguments, or the whole plain command
}

// commander is what commands are issued on: a client or a pipeline.
type commander interface {
	redis.Scripter
	Do(ctx context.Context, args ...any) *redis.Cmd
}

func (c command) issue(ctx context.Context, r commander) *redis.Cmd {
	if c.script != nil {
		return c.script.EvalSha(ctx, r, c.keys, c.args...)
	}
	return r.Do(ctx, c.args...)
}

// runOne sends one command. A script call refused with NOSCRIPT, as after a
// Redis restart, was not executed: the script is loaded and the call sent again.
func runOne(ctx context.Context, client redis.UniversalClient, c command) *redis.Cmd {
	cmd := c.issue(ctx, client)
	if c.script == nil || !isNoScript(cmd.Err()) {
		return cmd
	}
	if err := c.script.Load(ctx, client).Err(); err != nil {
		return redis.NewCmdResult(nil, err)
	}
	return c.issue(ctx, client)
}

// runAll sends cmds in one pipeline, one round trip, and returns their
// results in order. Script calls refused with NOSCRIPT are sent again, in a
// second pipeline, after their scripts are loaded.
func runAll(ctx context.Context, client redis.UniversalClient, cmds []command) []*redis.Cmd {
	results := make([]*redis.Cmd, len(cmds))
	pipe := client.Pipeline()
	for i, c := range cmds {
		results[i] = c.issue(ctx, pipe)
	}
	_, _ = pipe.Exec(ctx) // each result carries its own error

	var missing []int
	for i, r := range results {
		if isNoScript(r.Err()) {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return results
	}
	loaded := make(map[*redis.Script]error)
	pipe = client.Pipeline()
	for _, i := range missing {
		script := cmds[i].script
		err, seen := loaded[script]
		if !seen {
			err = script.Load(ctx, client).Err()
			loaded[script] = err
		}
		if err != nil {
			results[i] = redis.NewCmdResult(nil, err)
			continue
		}
		results[i] = cmds[i].issue(ctx, pipe)
	}
	_, _ = pipe.Exec(ctx)
	return results
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}
