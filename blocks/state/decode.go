package state

// Request bodies of the state API.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/granaryhq/granary/blocks"
	"github.com/granaryhq/granary/internal/stateinput"
)

// stateItem is one item of a save body, or the request of a transaction
// operation.
type stateItem struct {
	Key      *stateinput.Text                    `json:"key"`
	Value    json.RawMessage                     `json:"value"`
	ETag     *json.RawMessage                    `json:"etag"`
	Metadata map[string]stateinput.MetadataValue `json:"metadata"`
	Options  *itemOptions                        `json:"options"`
}

type itemOptions struct {
	Concurrency string `json:"concurrency"`
	Consistency string `json:"consistency"`
}

// checkOptions checks the concurrency and consistency options. Every read
// and write is strongly consistent, so consistency chooses nothing.
func checkOptions(concurrency, consistency string) *blocks.Error {
	switch concurrency {
	case "", "first-write", "last-write":
	default:
		return blocks.Malformed("options.concurrency %q is not first-write or last-write", concurrency)
	}
	switch consistency {
	case "", "eventual", "strong":
	default:
		return blocks.Malformed("options.consistency %q is not eventual or strong", consistency)
	}
	return nil
}

// etagText reads an ETag given as a JSON string or, as some clients send it,
// a number.
func etagText(raw *json.RawMessage) (string, error) {
	if raw == nil {
		return "", nil
	}
	b := bytes.TrimSpace(*raw)
	switch {
	case bytes.Equal(b, []byte("null")):
		return "", nil
	case len(b) > 0 && b[0] == '"':
		var s string
		err := json.Unmarshal(b, &s)
		return s, err
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return "", fmt.Errorf("etag must be a string")
	}
	return n.String(), nil
}

// op checks an item and turns it into a write; where names it in errors.
// With raw, the value is a base64 JSON string of the bytes to store.
func (it *stateItem) op(where string, code string, raw bool) (writeOp, *blocks.Error) {
	if it.Key == nil {
		return writeOp{}, blocks.Malformed("%s: missing \"key\"", where)
	}
	if it.Key.Invalid != "" {
		return writeOp{}, blocks.Malformed("%s: key %s", where, it.Key.Invalid)
	}
	if e := checkKey(it.Key.S); e != nil {
		e.Message = where + ": " + e.Message
		return writeOp{}, e
	}
	op := writeOp{Key: it.Key.S, Value: it.Value}
	if raw && len(it.Value) > 0 && string(it.Value) != "null" {
		if err := json.Unmarshal(it.Value, &op.Value); err != nil {
			return writeOp{}, blocks.Malformed("%s: with %s: base64, the value must be a base64 string: %v", where, HeaderValueEncoding, err)
		}
	}
	etag, err := etagText(it.ETag)
	if err != nil {
		return writeOp{}, blocks.Errorf(http.StatusBadRequest, code, "%s: invalid etag: %v", where, err)
	}
	op.ETag = etag
	if it.Options != nil {
		if e := checkOptions(it.Options.Concurrency, it.Options.Consistency); e != nil {
			e.Message = where + ": " + e.Message
			return writeOp{}, e
		}
		// First write wins: without an ETag, only a writer that finds
		// the key absent may write it.
		op.IfAbsent = it.Options.Concurrency == "first-write"
	}
	ttl, err := stateinput.TTL(it.Metadata)
	if err != nil {
		return writeOp{}, blocks.Malformed("%s: %v", where, err)
	}
	op.TTL = int64(ttl.Seconds())
	return op, nil
}

// decodeSave reads a save body: a JSON array of items.
func decodeSave(body []byte, raw bool) ([]writeOp, *blocks.Error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '[' {
		return nil, blocks.Malformed("the body of a state save must be a JSON array of {\"key\", \"value\"} items")
	}
	var items []stateItem
	if err := json.Unmarshal(b, &items); err != nil {
		return nil, blocks.Malformed("the state save body is not valid: %v", err)
	}
	ops := make([]writeOp, 0, len(items))
	for i := range items {
		op, e := items[i].op(fmt.Sprintf("item %d", i), codeSave, raw)
		if e != nil {
			return nil, e
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// decodeBulkGet reads a bulk get body: {"keys": [...], "parallelism": n}.
func decodeBulkGet(body []byte) ([]string, *blocks.Error) {
	var req struct {
		Keys        []stateinput.Text `json:"keys"`
		Parallelism *int              `json:"parallelism"`
	}
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return nil, blocks.Malformed("the body of a bulk get must be a JSON object {\"keys\": [...]}")
	}
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, blocks.Malformed("the bulk get body is not valid: %v", err)
	}
	if req.Parallelism != nil && *req.Parallelism < 0 {
		return nil, blocks.Malformed("parallelism %d must not be negative", *req.Parallelism)
	}
	keys := make([]string, len(req.Keys))
	for i, k := range req.Keys {
		if k.Invalid != "" {
			return nil, blocks.Malformed("key %d %s", i, k.Invalid)
		}
		if e := checkKey(k.S); e != nil {
			return nil, e
		}
		keys[i] = k.S
	}
	return keys, nil
}

// decodeTransaction reads a transaction body:
// {"operations": [{"operation": "upsert"|"delete", "request": {...}}], "metadata": {...}}.
func decodeTransaction(body []byte, raw bool) ([]writeOp, *blocks.Error) {
	var req struct {
		Operations []struct {
			Operation *string    `json:"operation"`
			Request   *stateItem `json:"request"`
		} `json:"operations"`
		Metadata map[string]string `json:"metadata"`
	}
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return nil, blocks.Malformed("the body of a state transaction must be a JSON object {\"operations\": [...]}")
	}
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, blocks.Malformed("the state transaction body is not valid: %v", err)
	}
	ops := make([]writeOp, 0, len(req.Operations))
	for i, o := range req.Operations {
		where := fmt.Sprintf("operation %d", i)
		if o.Operation == nil {
			return nil, blocks.Malformed("%s: missing \"operation\"", where)
		}
		if o.Request == nil {
			return nil, blocks.Malformed("%s: missing \"request\"", where)
		}
		op, e := o.Request.op(where, codeTransaction, raw)
		if e != nil {
			return nil, e
		}
		switch *o.Operation {
		case "upsert":
		case "delete":
			op.Delete, op.Value, op.TTL = true, nil, 0
		default:
			return nil, blocks.Errorf(http.StatusBadRequest, codeOperation, "%s: operation type %q is not supported (want upsert or delete)", where, *o.Operation)
		}
		ops = append(ops, op)
	}
	return ops, nil
}
