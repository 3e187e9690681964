package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/granaryhq/granary/internal/stateinput"
	"github.com/granaryhq/granary/statestore"
)

// MaxStateKeyLength bounds an actor state key.
const MaxStateKeyLength = stateinput.MaxKeyLength

// stateOperation is one element of an actor state transaction body.
type stateOperation struct {
	Operation *string       `json:"operation"`
	Request   *stateRequest `json:"request"`
}

type stateRequest struct {
	Key      *stateinput.Text                    `json:"key"`
	Value    json.RawMessage                     `json:"value"`
	ETag     *string                             `json:"etag"`
	Metadata map[string]stateinput.MetadataValue `json:"metadata"`
}

var jsonNull = []byte("null")

// decodeTransaction parses an actor state transaction body (a bare JSON array)
// into store operations keyed by actor state key.
func decodeTransaction(body []byte) ([]statestore.Op, *apiError) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return nil, malformed("state transaction body must be a JSON array of operations")
	}
	var raw []stateOperation
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return nil, malformed("state transaction body is not valid: " + err.Error())
	}
	ops := make([]statestore.Op, 0, len(raw))
	for i, r := range raw {
		where := fmt.Sprintf("operation %d", i)
		if r.Operation == nil {
			return nil, badRequest(where + ": missing \"operation\"")
		}
		if r.Request == nil || r.Request.Key == nil {
			return nil, badRequest(where + ": missing \"request.key\"")
		}
		if r.Request.Key.Invalid != "" {
			return nil, badRequest(fmt.Sprintf("%s: key %s", where, r.Request.Key.Invalid))
		}
		key := r.Request.Key.S
		if err := stateinput.ValidateKey(key); err != nil {
			return nil, badRequest(fmt.Sprintf("%s: key %q %v", where, key, err))
		}
		op := statestore.Op{Key: key}
		if r.Request.ETag != nil {
			op.ETag = *r.Request.ETag
		}
		switch *r.Operation {
		case "upsert":
			op.Kind = statestore.Put
			op.Value = r.Request.Value
			if len(op.Value) == 0 {
				op.Value = jsonNull
			}
			ttl, err := stateinput.TTL(r.Request.Metadata)
			if err != nil {
				return nil, badRequest(fmt.Sprintf("%s: %v", where, err))
			}
			op.TTL = ttl
		case "delete":
			op.Kind = statestore.Delete
		default:
			return nil, badRequest(fmt.Sprintf("%s: unknown operation %q (want \"upsert\" or \"delete\")", where, *r.Operation))
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// scheduleBody is the body of a reminder or timer registration.
type scheduleBody struct {
	Data     json.RawMessage `json:"data"`
	DueTime  string          `json:"dueTime"`
	Period   string          `json:"period"`
	TTL      string          `json:"ttl"`
	Callback string          `json:"callback"`
}

// decodeSchedule parses a reminder or timer body. An empty body means "fire now, once".
func decodeSchedule(body []byte) (scheduleBody, *apiError) {
	var s scheduleBody
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return s, nil
	}
	if trimmed[0] != '{' {
		return s, malformed("body must be a JSON object with data, dueTime, period and ttl")
	}
	if err := json.Unmarshal(trimmed, &s); err != nil {
		return s, malformed("body is not valid: " + err.Error())
	}
	if bytes.Equal(bytes.TrimSpace(s.Data), jsonNull) {
		s.Data = nil
	}
	return s, nil
}

// appRegistration is the body of PUT /v1.0-alpha1/apps/{appId}.
type appRegistration struct {
	URL string `json:"url"`
}

func decodeAppRegistration(body []byte) (appRegistration, *apiError) {
	var r appRegistration
	if err := json.Unmarshal(body, &r); err != nil {
		return r, malformed("body must be {\"url\": \"http://host:port\"}: " + err.Error())
	}
	if r.URL == "" {
		return r, badRequest("missing \"url\"")
	}
	return r, nil
}
