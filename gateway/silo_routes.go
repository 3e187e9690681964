package gateway

// The silo routes: health, metadata and app registration, and the answers
// they share with the actor routes.

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/silo"
)

// healthz answers /v1.0/healthz, and /v1.0/healthz/outbound when outbound:
// that one reports only whether the API serves calls, so it is 204 while the
// silo is still starting (registering its apps, reading their
// subscriptions), as apps waiting on it before they start need.
func (s *Server) healthz(ctx *fasthttp.RequestCtx, outbound bool) *apiError {
	err := s.backend.Ready()
	starting := errors.Is(err, silo.ErrStarting)
	switch {
	case err == nil, starting && outbound:
	case starting:
		return newError(http.StatusServiceUnavailable, codeNotReady, "not ready: "+err.Error())
	default:
		return newError(http.StatusServiceUnavailable, codeRuntimeClosed, "not ready: "+err.Error())
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

func (s *Server) metadata(ctx *fasthttp.RequestCtx) *apiError {
	return writeJSON(ctx, http.StatusOK, s.backend.Metadata())
}

func (s *Server) apps(ctx *fasthttp.RequestCtx, method, appID string) *apiError {
	if e := validName("app id", appID); e != nil {
		return e
	}
	switch method {
	case "PUT", "POST":
		reg, e := decodeAppRegistration(ctx.PostBody())
		if e != nil {
			return e
		}
		if err := s.backend.RegisterApp(ctx, appID, reg.URL); err != nil {
			var fe silo.InputError
			if errors.As(err, &fe) {
				return badRequest(err.Error())
			}
			return newError(http.StatusBadGateway, codeAppRegister, err.Error())
		}
		ctx.SetStatusCode(http.StatusNoContent)
		return nil
	case "DELETE":
		if err := s.backend.UnregisterApp(ctx, appID); err != nil {
			return newError(http.StatusNotFound, codeAppRegister, err.Error())
		}
		ctx.SetStatusCode(http.StatusNoContent)
		return nil
	}
	return notAllowed(method, "PUT", "POST", "DELETE")
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) *apiError {
	body, err := marshalJSON(v)
	if err != nil {
		return newError(http.StatusInternalServerError, "ERR_INTERNAL", err.Error())
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
	return nil
}

// onlyMethods refuses a method the route does not serve.
func onlyMethods(method string, allowed ...string) *apiError {
	if slices.Contains(allowed, method) {
		return nil
	}
	return notAllowed(method, allowed...)
}

// notAllowed is the 405 answer; its Allow header lists the route's methods.
func notAllowed(method string, allowed ...string) *apiError {
	e := newError(http.StatusMethodNotAllowed, codeMethodNotAllowed, "method "+method+" is not allowed on this route")
	e.allow = strings.Join(allowed, ", ")
	return e
}
