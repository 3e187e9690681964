package gateway

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/blocks"
	"github.com/granaryhq/granary/statestore"
)

// Error codes of the HTTP API (docs/api.md).
const (
	codeMalformed         = "ERR_MALFORMED_REQUEST"
	codeBadRequest        = "ERR_BAD_REQUEST"
	codeInstanceMissing   = "ERR_ACTOR_INSTANCE_MISSING"
	codeReminderNoHost    = "ERR_ACTOR_REMINDER_NON_HOSTED"
	codeReminderNotFound  = "ERR_ACTOR_REMINDER_NOT_FOUND"
	codeNoAddress         = "ERR_ACTOR_NO_ADDRESS"
	codeInvoke            = "ERR_ACTOR_INVOKE_METHOD"
	codeStackDepth        = "ERR_ACTOR_STACK_DEPTH"
	codeStateGet          = "ERR_ACTOR_STATE_GET"
	codeStateSave         = "ERR_ACTOR_STATE_TRANSACTION_SAVE"
	codeReminderCreate    = "ERR_ACTOR_REMINDER_CREATE"
	codeReminderGet       = "ERR_ACTOR_REMINDER_GET"
	codeReminderDelete    = "ERR_ACTOR_REMINDER_DELETE"
	codeTimerCreate       = "ERR_ACTOR_TIMER_CREATE"
	codeRuntimeClosed     = "ERR_ACTOR_RUNTIME_CLOSED"
	codeNotReady          = "ERR_HEALTH_NOT_READY"
	codeUnauthorized      = "ERR_UNAUTHORIZED"
	codeNotFound          = "ERR_NOT_FOUND"
	codeMethodNotAllowed  = "ERR_METHOD_NOT_ALLOWED"
	codeBodyTooLarge      = "ERR_BODY_TOO_LARGE"
	codeHeadersTooLarge   = "ERR_HEADERS_TOO_LARGE"
	codeURITooLong        = "ERR_URI_TOO_LONG"
	codeExpectationFailed = "ERR_EXPECTATION_FAILED"
	codeRequestTimeout    = "ERR_REQUEST_TIMEOUT"
	codeAppRegister       = "ERR_APP_REGISTRATION"
)

// apiError is an error with its HTTP status and error code.
type apiError struct {
	status  int
	code    string
	message string
	allow   string // the Allow header of a 405
	// cause is the error the silo returned, when there was one.
	cause error
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func newError(status int, code, message string) *apiError {
	return &apiError{status: status, code: code, message: message}
}

func badRequest(message string) *apiError {
	return newError(http.StatusBadRequest, codeBadRequest, message)
}

func malformed(message string) *apiError {
	return newError(http.StatusBadRequest, codeMalformed, message)
}

// errorBody is the JSON body of every error.
type errorBody struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

func writeError(ctx *fasthttp.RequestCtx, e *apiError) {
	body, _ := json.Marshal(errorBody{ErrorCode: e.code, Message: e.message})
	ctx.Response.Reset()
	ctx.SetStatusCode(e.status)
	ctx.SetContentType("application/json")
	if e.allow != "" {
		ctx.Response.Header.Set("Allow", e.allow)
	}
	ctx.SetBody(body)
}

// runtimeError maps an error from the silo to the protocol's status and code;
// fallback is the code for failures no other row covers.
func runtimeError(err error, fallback string) *apiError {
	e := runtimeErrorOf(err, fallback)
	if e.cause == nil {
		e.cause = err
	}
	return e
}

func runtimeErrorOf(err error, fallback string) *apiError {
	var ae *apiError
	var be *blocks.Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &be):
		// A system actor's answer, as its block wrote it.
		return newError(be.Status, be.Code, be.Message)
	case errors.Is(err, actor.ErrClosed), errors.Is(err, actor.ErrTypeUnavailable), errors.Is(err, actor.ErrFenced):
		return newError(http.StatusServiceUnavailable, codeRuntimeClosed, err.Error())
	case errors.Is(err, actor.ErrTypeNotHosted), errors.Is(err, actor.ErrNotOwner):
		return newError(http.StatusNotFound, codeNoAddress, err.Error())
	case errors.Is(err, actor.ErrStackDepth):
		return newError(http.StatusInternalServerError, codeStackDepth, err.Error())
	case errors.Is(err, actor.ErrNotActive):
		return newError(http.StatusBadRequest, codeInstanceMissing, err.Error())
	case errors.Is(err, statestore.ErrETagMismatch):
		return newError(http.StatusConflict, codeStateSave, err.Error())
	}
	return newError(http.StatusInternalServerError, fallback, err.Error())
}
