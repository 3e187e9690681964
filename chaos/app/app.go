// Package app is the chaos suite's workload app: it serves the actor
// callback protocol for the actor types ChaosRegister, ChaosCounter and
// ChaosTicker, keeps their state through the gateway of the silo beside it,
// and logs every turn and reminder tick to a history file.
//
// Every write transaction also upserts an audit key (AuditKey) holding an
// Audit, so the store afterwards shows each committed write with the claim
// it ran under.
package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/granaryhq/granary/chaos/history"
)

// The actor types the app hosts.
const (
	TypeRegister = "ChaosRegister"
	TypeCounter  = "ChaosCounter"
	TypeTicker   = "ChaosTicker"
)

// HeaderActivation is the header naming the activation a call runs under:
// "<version>/<silo>/<incarnation>".
const HeaderActivation = "Granary-Activation"

// HeaderConfirmed is the header saying when (Unix ns) the silo last
// confirmed the call's claim and lease before sending it.
const HeaderConfirmed = "Granary-Claim-Confirmed"

const (
	// DefaultIdleTimeout is the actorIdleTimeout reported when Config has none.
	DefaultIdleTimeout = 15 * time.Second
	// gatewayTimeout bounds each call to the gateway.
	gatewayTimeout = 5 * time.Second
	// maxBody bounds a request body and a gateway answer, in bytes.
	maxBody = 1 << 20
)

// Config says where the app keeps state and logs its history.
type Config struct {
	// GatewayURL is the base URL of the silo gateway, such as
	// http://127.0.0.1:7001. Required.
	GatewayURL string
	// HistoryPath is the JSON-lines file records are appended to. Required.
	HistoryPath string
	// IdleTimeout is the actorIdleTimeout GET /dapr/config reports;
	// 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Client makes the gateway calls; nil means a client with a 5 s timeout.
	Client *http.Client
	// Now is the clock turns are timed with; nil means time.Now.
	Now func() time.Time
	// Log receives warnings and errors; nil means slog.Default().
	Log *slog.Logger
}

// App serves the callback protocol. Create it with New and release it with
// Close once its server has stopped.
type App struct {
	gw      *gateway
	now     func() time.Time
	log     *slog.Logger
	file    *os.File
	history *history.Writer
	config  []byte // the answer to GET /dapr/config
}

// New checks cfg and opens the history file for appending.
func New(cfg Config) (*App, error) {
	base, err := gatewayBase(cfg.GatewayURL)
	if err != nil {
		return nil, err
	}
	if cfg.HistoryPath == "" {
		return nil, errors.New("app: no history path")
	}
	if cfg.IdleTimeout < 0 {
		return nil, fmt.Errorf("app: negative idle timeout %v", cfg.IdleTimeout)
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Timeout: gatewayTimeout,
			// Turns of many actors run at once; keep a connection for each.
			Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	config, err := json.Marshal(actorConfig{
		Entities:                []string{TypeRegister, TypeCounter, TypeTicker},
		ActorIdleTimeout:        cfg.IdleTimeout.String(),
		DrainOngoingCallTimeout: "5s",
		DrainRebalancedActors:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("app: encoding actor config: %w", err)
	}
	// Each record reaches the file in one write call of its own (no
	// buffering), so a crash of the app loses at most a partial line.
	f, err := os.OpenFile(cfg.HistoryPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("app: opening history: %w", err)
	}
	return &App{
		gw:      &gateway{base: base, client: cfg.Client},
		now:     cfg.Now,
		log:     cfg.Log,
		file:    f,
		history: history.NewWriter(f),
		config:  config,
	}, nil
}

// gatewayBase checks the gateway's base URL and drops a trailing slash.
func gatewayBase(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("app: no gateway URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("app: gateway URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("app: gateway URL %q is not an http(s) URL", raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

// actorConfig is the answer to GET /dapr/config.
type actorConfig struct {
	Entities                []string `json:"entities"`
	ActorIdleTimeout        string   `json:"actorIdleTimeout"`
	DrainOngoingCallTimeout string   `json:"drainOngoingCallTimeout"`
	DrainRebalancedActors   bool     `json:"drainRebalancedActors"`
}

// Close closes the history file. Records of turns still running are lost,
// so stop the server first.
func (a *App) Close() error {
	if err := a.file.Close(); err != nil {
		return fmt.Errorf("app: closing history: %w", err)
	}
	return nil
}

// Handler routes the callback protocol; any other request is a 404.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /dapr/config", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, json.RawMessage(a.config))
	})
	mux.HandleFunc("PUT /actors/{type}/{id}/method/{method...}", a.serveMethod)
	mux.HandleFunc("DELETE /actors/{type}/{id}", a.serveDeactivate)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no route for "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// abortedAnswer is the answer of a turn that failed before it sent any
// write: the operation certainly did not happen.
type abortedAnswer struct {
	OK      bool   `json:"ok"`
	Aborted string `json:"aborted"`
}

// serveMethod runs one turn. A call to a type or method the app does not
// have is a 404 and no turn; a call without a valid activation header is a
// 400 and no turn. Every other call is logged as a turn once it has ended,
// whatever it answers.
func (a *App) serveMethod(w http.ResponseWriter, r *http.Request) {
	typ, id, name := r.PathValue("type"), r.PathValue("id"), r.PathValue("method")
	m, err := lookupMethod(typ, name)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	t, ok := a.beginTurn(w, r, name)
	if !ok {
		return
	}
	var result any
	body, err := readBody(w, r)
	if err == nil {
		result, err = m(t, body)
	}
	status := http.StatusOK
	if err != nil {
		status = statusOf(err)
		if status >= http.StatusInternalServerError {
			a.log.Error("turn failed", "type", typ, "actor", id, "method", name, "activation", t.claim, "err", err)
		}
		result = errorBody{Error: err.Error()}
		if status >= http.StatusInternalServerError && !t.sent {
			// Nothing was written: say so, so the client knows the
			// operation did not happen rather than that it may have.
			status, result = http.StatusOK, abortedAnswer{OK: false, Aborted: err.Error()}
		}
	}
	a.endTurn(t)
	if result == nil {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, result)
}

// serveDeactivate logs the deactivation as a turn and answers 200; the
// actors' state stays in the store.
func (a *App) serveDeactivate(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	if !hostedType(typ) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no actor type %q", typ))
		return
	}
	t, ok := a.beginTurn(w, r, history.MethodDeactivate)
	if !ok {
		return
	}
	a.endTurn(t)
	w.WriteHeader(http.StatusOK)
}

// beginTurn starts the turn of call r. When r carries no valid activation
// header it answers 400 and reports false.
func (a *App) beginTurn(w http.ResponseWriter, r *http.Request, method string) (*turn, bool) {
	start := a.now()
	typ, id := r.PathValue("type"), r.PathValue("id")
	claim := r.Header.Get(HeaderActivation)
	if _, err := history.ParseClaim(claim); err != nil {
		a.log.Warn("call without a valid activation header; not logged as a turn",
			"type", typ, "actor", id, "method", method, "err", err)
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s header: %v", HeaderActivation, err))
		return nil, false
	}
	// A confirmation time that does not parse is left out: the turn is then
	// judged by its start alone, which is the stricter reading.
	confirmed, _ := strconv.ParseInt(r.Header.Get(HeaderConfirmed), 10, 64)
	return &turn{
		app:       a,
		confirmed: max(confirmed, 0),
		ctx:       r.Context(),
		typ:       typ,
		id:        id,
		method:    method,
		claim:     claim,
		start:     start,
		startNS:   start.UnixNano(),
	}, true
}

// endTurn logs t as ended now.
func (a *App) endTurn(t *turn) {
	rec := history.Turn{
		Type:       t.typ,
		Actor:      t.id,
		Activation: t.claim,
		Method:     t.method,
		Start:      t.startNS,
		End:        t.stamp(),
		Confirmed:  t.confirmed,
	}
	if t.committed {
		rec.Committed, rec.CommitAt = true, t.commitAt
	}
	a.record(rec)
}

// record appends rec to the history. A record that cannot be written is
// reported, not answered: the turn's effect has happened all the same.
func (a *App) record(rec history.Record) {
	if err := a.history.Write(rec); err != nil {
		a.log.Error("history record lost", "record", fmt.Sprintf("%+v", rec), "err", err)
	}
}

// callError is an error answered with its own status; others answer 500.
type callError struct {
	status int
	msg    string
}

func (e *callError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &callError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func statusOf(err error) int {
	if ce, ok := errors.AsType[*callError](err); ok {
		return ce.status
	}
	return http.StatusInternalServerError
}

// errorBody is the answer to a call that failed.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = fmt.Appendf(nil, `{"error":%q}`, "encoding the answer: "+err.Error())
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// readBody reads a request body of at most maxBody bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
		return nil, &callError{http.StatusRequestEntityTooLarge, "body larger than 1 MiB"}
	}
	if err != nil {
		return nil, badRequest("reading body: %v", err)
	}
	return body, nil
}
