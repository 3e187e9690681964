// Package blocks holds what Granary's building blocks (state, pub/sub and
// service invocation, in the sub-packages) share: the error a block answers
// with, the names of the system actor types behind them, and the two calls a
// block makes into the cluster, to an actor wherever it runs and to an app
// wherever an instance of it runs.
package blocks

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
)

// Error is a block's answer to a request it cannot serve: the HTTP status,
// the error code of Dapr's API and a message naming the problem. The gateway
// writes it as {"errorCode": Code, "message": Message}.
type Error struct {
	Status  int
	Code    string
	Message string
	// Allow lists the methods a route serves, for the Allow header of a 405.
	Allow string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// NotAllowed is the 405 answer to method on a route that serves allowed.
func NotAllowed(method string, allowed ...string) *Error {
	e := Errorf(http.StatusMethodNotAllowed, "ERR_METHOD_NOT_ALLOWED", "method %s is not allowed on this route", method)
	e.Allow = strings.Join(allowed, ", ")
	return e
}

// Malformed is the 400 answer to a request body or parameter that cannot be read.
func Malformed(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, "ERR_MALFORMED_REQUEST", format, args...)
}

// SystemTypePrefix starts the names of the system actor types behind the
// building blocks. Apps cannot register such types, and the public listener
// does not serve calls to them: only the blocks (and forwards between silos)
// call them.
const SystemTypePrefix = actor.SystemTypePrefix

// IsSystemType reports whether actorType is a system actor type.
func IsSystemType(actorType string) bool { return actor.IsSystemType(actorType) }

// SystemTypeConfig is the actor type configuration of the blocks'
// partition actors. Their turns are short store writes, so a drain, or a
// shard handed over after its silo died, waits for them 5 s rather than
// the 30 s an app's actors get; an idle partition keeps nothing worth
// holding in memory for long.
func SystemTypeConfig() actor.TypeConfig {
	return actor.TypeConfig{IdleTimeout: 10 * time.Minute, DrainTimeout: 5 * time.Second, DrainRebalanced: true,
		MaxStackDepth: actor.DefaultMaxStackDepth}
}

// Actors runs a method of an actor wherever the actor lives: on this silo,
// or forwarded to its owner.
type Actors interface {
	// CallActor returns the method's response body. A method that failed
	// with an *Error fails here with an *Error of the same status, code and
	// message, on whichever silo it ran.
	CallActor(ctx context.Context, id actor.ID, method string, body []byte) ([]byte, error)
}

// HeaderTopicEvent marks a request of CallApp that delivers a pub/sub
// message: a gRPC app gets it through OnTopicEvent rather than OnInvoke.
const HeaderTopicEvent = "Granary-Topic-Event"

// Apps sends HTTP requests to the apps of the cluster by app ID.
type Apps interface {
	// CallApp sends req to a live instance of appID, with req's method,
	// request URI (the path and query the app sees), headers and body, and
	// fills resp with the app's answer, whatever its status. It fails with
	// an *Error (500 ERR_DIRECT_INVOKE) when no instance of appID is known,
	// none could be reached, or the call timed out.
	CallApp(ctx context.Context, appID string, req *fasthttp.Request, resp *fasthttp.Response) error
}
