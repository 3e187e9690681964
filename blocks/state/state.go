// Package state is the state building block: Dapr's key-value state API
// (/v1.0/state/{store}) served by system actors. The keys of a store are
// spread over Partitions partition actors of the type TypeName(store);
// every write to a key is a turn of its partition's actor, so writes to one
// key are serialised on the one silo that owns the partition, and each is
// committed fenced by the claim of the partition's shard. A transaction over
// keys of several partitions commits as one store transaction, atomic and
// ETag-checked by the store. Reads go to the shared store from any silo: it
// holds every acknowledged write, so no read needs a hop to the owner.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/blocks"
	"github.com/granaryhq/granary/internal/stateinput"
	"github.com/granaryhq/granary/statestore"
)

// Partitions is how many partition actors share the keys of one store. It is
// part of the key layout: a key's partition names where it is stored, so it
// never changes.
const Partitions = 256

// TypeName is the system actor type of the partitions of store.
func TypeName(store string) string { return blocks.SystemTypePrefix + "state." + store }

// Error codes of the state API.
const (
	CodeStoreNotFound = "ERR_STATE_STORE_NOT_FOUND"
	codeSave          = "ERR_STATE_SAVE"
	codeGet           = "ERR_STATE_GET"
	codeBulkGet       = "ERR_STATE_BULK_GET"
	codeDelete        = "ERR_STATE_DELETE"
	codeTransaction   = "ERR_STATE_TRANSACTION"
	codeOperation     = "ERR_NOT_SUPPORTED_STATE_OPERATION"
)

// Config configures a Service.
type Config struct {
	// Name is the store's name in the API, e.g. "statestore".
	Name    string
	Runtime *actor.Runtime
	Store   statestore.Store
	Actors  blocks.Actors
	Logger  *slog.Logger
}

// Service serves one named state store.
type Service struct {
	name   string
	typ    string
	store  statestore.Store
	actors blocks.Actors
	log    *slog.Logger
}

// New returns the service of one store and hosts its partition actors on
// cfg.Runtime.
func New(cfg Config) (*Service, error) {
	if err := actor.ValidateName(cfg.Name); err != nil {
		return nil, fmt.Errorf("state store name %q %v", cfg.Name, err)
	}
	if cfg.Runtime == nil || cfg.Store == nil || cfg.Actors == nil {
		return nil, errors.New("state: Runtime, Store and Actors are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{name: cfg.Name, typ: TypeName(cfg.Name), store: cfg.Store, actors: cfg.Actors, log: cfg.Logger}
	err := cfg.Runtime.RegisterNative(s.typ, func(self *actor.Self) actor.NativeActor { return &partition{self: self} },
		blocks.SystemTypeConfig())
	if err != nil {
		return nil, fmt.Errorf("state store %s: %w", cfg.Name, err)
	}
	return s, nil
}

// Name is the store's name.
func (s *Service) Name() string { return s.name }

// partitionOf is the partition that holds key.
func partitionOf(key string) string {
	return strconv.FormatUint(xxhash.Sum64String(key)%Partitions, 10)
}

// storeKey is where key is stored.
func (s *Service) storeKey(key string) string {
	return statestore.ActorStateKey(s.typ, partitionOf(key), key)
}

// Serve answers one request under /v1.0/state/{store}; rest is the path
// after the store's name.
func (s *Service) Serve(ctx *fasthttp.RequestCtx, method string, rest []string) error {
	// The store and the partitions are called under a context of their
	// own: the request's is fasthttp's, whose Done channel is the
	// server's shutdown, and a context derived from it costs a goroutine.
	switch {
	case len(rest) == 0:
		if method != "POST" && method != "PUT" {
			return blocks.NotAllowed(method, "POST", "PUT")
		}
		return s.save(ctx)
	case len(rest) == 1 && rest[0] == "bulk" && (method == "POST" || method == "PUT"):
		return s.bulkGet(ctx)
	case len(rest) == 1 && rest[0] == "transaction" && (method == "POST" || method == "PUT"):
		return s.transaction(ctx)
	}
	key := strings.Join(rest, "/")
	switch method {
	case "GET":
		return s.get(ctx, key)
	case "DELETE":
		return s.delete(ctx, key)
	}
	return blocks.NotAllowed(method, "GET", "DELETE")
}

func (s *Service) get(ctx *fasthttp.RequestCtx, key string) error {
	if e := checkKey(key); e != nil {
		return e
	}
	item, err := s.store.Get(context.Background(), s.storeKey(key))
	if errors.Is(err, statestore.ErrNotFound) {
		ctx.SetStatusCode(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return blocks.Errorf(http.StatusInternalServerError, codeGet, "state store %s: reading key %q: %v", s.name, key, err)
	}
	ctx.SetStatusCode(http.StatusOK)
	ctx.Response.Header.Set("ETag", item.ETag)
	if !item.Expires.IsZero() {
		ctx.Response.Header.Set("Metadata.ttlExpireTime", item.Expires.UTC().Format(time.RFC3339))
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(item.Value)
	return nil
}

// HeaderValueEncoding, set to "base64" on a save, transaction or bulk get,
// carries values as base64 JSON strings of their bytes instead of JSON
// values: the gRPC API stores and reads bytes that need not be JSON.
const HeaderValueEncoding = "Granary-Value-Encoding"

func base64Values(ctx *fasthttp.RequestCtx) bool {
	return string(ctx.Request.Header.Peek(HeaderValueEncoding)) == "base64"
}

// dataOf is a stored value as bulk get answers it: as it is when it is JSON
// (values saved through the HTTP API always are), else as a JSON string;
// with raw, as a base64 JSON string.
func dataOf(v []byte, raw bool) json.RawMessage {
	if !raw && json.Valid(v) {
		return v
	}
	var enc []byte
	if raw {
		enc, _ = json.Marshal(v) // bytes encode as base64
	} else {
		enc, _ = json.Marshal(string(v))
	}
	return enc
}

// bulkItem is one element of a bulk get answer.
type bulkItem struct {
	Key      string            `json:"key"`
	Data     json.RawMessage   `json:"data,omitempty"`
	ETag     string            `json:"etag,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Error    string            `json:"error,omitempty"`
}

func (s *Service) bulkGet(ctx *fasthttp.RequestCtx) error {
	keys, e := decodeBulkGet(ctx.PostBody())
	if e != nil {
		return e
	}
	raw := base64Values(ctx)
	storeKeys := make([]string, len(keys))
	for i, k := range keys {
		storeKeys[i] = s.storeKey(k)
	}
	items, err := s.store.BulkGet(context.Background(), storeKeys)
	if err != nil {
		return blocks.Errorf(http.StatusInternalServerError, codeBulkGet, "state store %s: bulk get of %d keys: %v", s.name, len(keys), err)
	}
	out := make([]bulkItem, len(keys))
	for i, it := range items {
		out[i].Key = keys[i]
		if it.Exists() {
			out[i].Data, out[i].ETag = dataOf(it.Value, raw), it.ETag
			if !it.Expires.IsZero() {
				out[i].Metadata = map[string]string{"ttlExpireTime": it.Expires.UTC().Format(time.RFC3339)}
			}
		}
	}
	body, err := json.Marshal(out)
	if err != nil {
		return blocks.Errorf(http.StatusInternalServerError, codeBulkGet, "state store %s: encoding the answer: %v", s.name, err)
	}
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
	return nil
}

func (s *Service) save(ctx *fasthttp.RequestCtx) error {
	ops, e := decodeSave(ctx.PostBody(), base64Values(ctx))
	if e != nil {
		return e
	}
	if err := s.write(context.Background(), methodSave, ops); err != nil {
		return err
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

func (s *Service) delete(ctx *fasthttp.RequestCtx, key string) error {
	if e := checkKey(key); e != nil {
		return e
	}
	op := writeOp{Key: key, Delete: true, ETag: string(ctx.Request.Header.Peek("If-Match"))}
	args := ctx.QueryArgs()
	if e := checkOptions(string(args.Peek("concurrency")), string(args.Peek("consistency"))); e != nil {
		return e
	}
	if err := s.write(context.Background(), methodDelete, []writeOp{op}); err != nil {
		return err
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

func (s *Service) transaction(ctx *fasthttp.RequestCtx) error {
	ops, e := decodeTransaction(ctx.PostBody(), base64Values(ctx))
	if e != nil {
		return e
	}
	if len(ops) > 0 {
		part := partitionOf(ops[0].Key)
		single := true
		for _, op := range ops[1:] {
			if partitionOf(op.Key) != part {
				single = false
				break
			}
		}
		var err error
		if single {
			err = s.callPartition(context.Background(), part, methodTransact, ops)
		} else {
			err = s.commitAcross(context.Background(), ops)
		}
		if err != nil {
			return err
		}
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

// commitAcross commits a transaction over keys of several partitions as one
// store transaction: the store checks every ETag and applies all of it or
// none, as it does for the writes of each partition.
func (s *Service) commitAcross(ctx context.Context, ops []writeOp) error {
	txn := statestore.Txn{Ops: make([]statestore.Op, len(ops))}
	for i, op := range ops {
		txn.Ops[i] = op.storeOp()
		txn.Ops[i].Key = s.storeKey(op.Key)
	}
	return s.writeError(methodTransact, s.store.Transact(ctx, txn))
}

// write applies the writes of a save or delete: each partition's share as
// one turn of its actor, the partitions at once.
func (s *Service) write(ctx context.Context, method string, ops []writeOp) error {
	if len(ops) == 0 {
		return nil
	}
	groups := map[string][]writeOp{}
	var order []string
	for _, op := range ops {
		p := partitionOf(op.Key)
		if _, ok := groups[p]; !ok {
			order = append(order, p)
		}
		groups[p] = append(groups[p], op)
	}
	if len(order) == 1 {
		return s.callPartition(ctx, order[0], method, ops)
	}
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for i, p := range order {
		wg.Go(func() { errs[i] = s.callPartition(ctx, p, method, groups[p]) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// callPartition runs ops as one turn of partition p.
func (s *Service) callPartition(ctx context.Context, p, method string, ops []writeOp) error {
	body, err := json.Marshal(ops)
	if err != nil {
		return blocks.Errorf(http.StatusInternalServerError, codeFor(method), "encoding the writes: %v", err)
	}
	_, err = s.actors.CallActor(ctx, actor.ID{Type: s.typ, ID: p}, method, body)
	if err == nil {
		return nil
	}
	if be, ok := errors.AsType[*blocks.Error](err); ok && (be.Code == codeFor(method) || be.Status < 500) {
		return be
	}
	return blocks.Errorf(http.StatusInternalServerError, codeFor(method), "state store %s: %v", s.name, err)
}

// writeError maps a store's refusal of a write to the API's answer.
func (s *Service) writeError(method string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, statestore.ErrETagMismatch):
		return blocks.Errorf(http.StatusConflict, codeFor(method), "possible etag mismatch: %v", err)
	}
	return blocks.Errorf(http.StatusInternalServerError, codeFor(method), "state store %s: %v", s.name, err)
}

const (
	methodSave     = "save"
	methodDelete   = "delete"
	methodTransact = "transact"
)

func codeFor(method string) string {
	switch method {
	case methodDelete:
		return codeDelete
	case methodTransact:
		return codeTransaction
	}
	return codeSave
}

// partition is the actor of one partition of a store's keys.
type partition struct{ self *actor.Self }

// Invoke applies one group of writes, atomically and fenced by the
// partition's claim.
func (p *partition) Invoke(ctx context.Context, method string, body []byte) ([]byte, error) {
	switch method {
	case methodSave, methodDelete, methodTransact:
	default:
		return nil, blocks.Errorf(http.StatusNotFound, "ERR_NOT_FOUND", "state partition has no method %q", method)
	}
	var ops []writeOp
	if err := json.Unmarshal(body, &ops); err != nil {
		return nil, blocks.Malformed("state partition %s: writes: %v", p.self.ID(), err)
	}
	storeOps := make([]statestore.Op, len(ops))
	for i, op := range ops {
		if partitionOf(op.Key) != p.self.ID().ID {
			return nil, blocks.Malformed("key %q does not belong to partition %s", op.Key, p.self.ID().ID)
		}
		storeOps[i] = op.storeOp()
	}
	err := p.self.Transact(ctx, storeOps...)
	switch {
	case err == nil:
		return nil, nil
	case errors.Is(err, statestore.ErrETagMismatch):
		return nil, blocks.Errorf(http.StatusConflict, codeFor(method), "possible etag mismatch: %v", err)
	}
	return nil, err
}

// writeOp is one write as a partition receives it.
type writeOp struct {
	Key      string `json:"k"`
	Value    []byte `json:"v,omitempty"` // the bytes to store, JSON or not
	Delete   bool   `json:"d,omitempty"`
	ETag     string `json:"e,omitempty"`
	IfAbsent bool   `json:"a,omitempty"`
	TTL      int64  `json:"t,omitempty"` // seconds
}

func (op writeOp) storeOp() statestore.Op {
	o := statestore.Op{Key: op.Key, ETag: op.ETag, IfAbsent: op.IfAbsent && op.ETag == ""}
	if op.Delete {
		o.Kind, o.IfAbsent = statestore.Delete, false
		return o
	}
	o.Kind = statestore.Put
	o.Value = op.Value
	if len(o.Value) == 0 {
		o.Value = []byte("null")
	}
	o.TTL = time.Duration(op.TTL) * time.Second
	return o
}

// checkKey checks a key from the request path or a body.
func checkKey(key string) *blocks.Error {
	if err := stateinput.ValidateKey(key); err != nil {
		return blocks.Malformed("state key %q %v", key, err)
	}
	if strings.Contains(key, "||") {
		return blocks.Malformed("input key %q can't contain '||'", key)
	}
	return nil
}
