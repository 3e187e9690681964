package pubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/internal/grpcapp"
	"github.com/granaryhq/granary/statestore"
)

// Subscription is one entry of an app's GET /dapr/subscribe answer, or a
// declarative subscription (with Scopes).
type Subscription struct {
	PubsubName string `json:"pubsubname"`
	Topic      string `json:"topic"`
	// Route is the path messages go to (the v1 form); Routes, when it has
	// rules or a default, takes precedence.
	Route           string            `json:"route,omitempty"`
	Routes          *Routes           `json:"routes,omitempty"`
	DeadLetterTopic string            `json:"deadLetterTopic,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	// BulkSubscribe is accepted and ignored: messages are delivered one by one.
	BulkSubscribe json.RawMessage `json:"bulkSubscribe,omitempty"`
	// Scopes are the app IDs a declarative subscription applies to; empty
	// means every app. Ignored in programmatic subscriptions.
	Scopes []string `json:"scopes,omitempty"`
}

// Routes are the routing rules of a subscription.
type Routes struct {
	Rules   []Rule `json:"rules,omitempty"`
	Default string `json:"default,omitempty"`
}

// Rule routes the messages whose CloudEvent matches the CEL expression Match
// to Path.
type Rule struct {
	Match string `json:"match"`
	Path  string `json:"path"`
}

// SubscriptionInfo describes a subscription for the metadata API. The
// default route is the last rule, with an empty Match.
type SubscriptionInfo struct {
	PubsubName      string            `json:"pubsubname"`
	Topic           string            `json:"topic"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	Rules           []Rule            `json:"rules,omitempty"`
	DeadLetterTopic string            `json:"deadLetterTopic,omitempty"`
	Type            string            `json:"type"` // "programmatic" or "declarative"
}

// route is one compiled routing rule; match is nil for the default route.
type route struct {
	match *program
	expr  string
	path  string
}

// subscription is a subscription of one app to one topic, compiled.
type subscription struct {
	app        string
	topic      string
	routes     []route
	deadLetter string
	raw        bool
	info       SubscriptionInfo
}

// pathFor returns the route of event (decoded lazily by ev), or "" when no
// rule matches and there is no default.
func (sub *subscription) pathFor(ev func() map[string]any) string {
	for _, r := range sub.routes {
		if r.match == nil {
			return r.path
		}
		if r.match.matches(ev()) {
			return r.path
		}
	}
	return ""
}

// view is one immutable picture of the subscriptions known to this silo.
type view struct {
	version uint64
	byTopic map[string][]*subscription // sorted by app
	byApp   map[string][]*subscription
}

// registry keeps the stored subscriptions of the apps and the declarative
// ones, and the view built from them.
type registry struct {
	svc         *Service
	declarative []Subscription

	loadMu  sync.Mutex        // serialises reloads and updates
	records map[string][]byte // app ID → its stored record; guarded by loadMu
	loaded  atomic.Bool
	cur     atomic.Pointer[view]
}

// record is what is stored per app: its programmatic subscriptions of this
// pub/sub component. An app with a record but no subscriptions still gets
// the declarative ones that scope it.
type record struct {
	Subs []Subscription `json:"subs"`
}

func newRegistry(s *Service, decl []Subscription) (*registry, error) {
	r := &registry{svc: s, records: map[string][]byte{}}
	for _, d := range decl {
		if d.PubsubName != s.cfg.Name {
			continue
		}
		if err := validateSubscription(&d); err != nil {
			return nil, fmt.Errorf("pubsub: declarative subscription to topic %q: %w", d.Topic, err)
		}
		r.declarative = append(r.declarative, d)
	}
	r.cur.Store(r.build(0))
	return r, nil
}

func (r *registry) subKeyPrefix() string { return "pubsub{" + r.svc.cfg.Name + "}/subscriber/" }
func (r *registry) subKey(app string) string {
	return r.subKeyPrefix() + app
}
func (r *registry) index() string { return "pubsub{" + r.svc.cfg.Name + "}/subscribers" }

// current returns the view, loading the stored subscriptions first if this
// silo has not read them yet.
func (r *registry) current(ctx context.Context) (*view, error) {
	if !r.loaded.Load() {
		if err := r.reload(ctx); err != nil {
			return nil, err
		}
	}
	return r.cur.Load(), nil
}

// reload scans the stored subscriptions and rebuilds the view if they changed.
func (r *registry) reload(ctx context.Context) error {
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	found := map[string][]byte{}
	after := ""
	prefix := r.subKeyPrefix()
	for {
		items, err := r.svc.store.Scan(ctx, r.index(), after, 500)
		if err != nil {
			return fmt.Errorf("scanning subscriptions: %w", err)
		}
		for _, it := range items {
			if app, ok := strings.CutPrefix(it.Key, prefix); ok {
				found[app] = it.Value
			}
		}
		if len(items) < 500 {
			break
		}
		after = items[len(items)-1].Key
	}
	r.loaded.Store(true)
	if maps.EqualFunc(found, r.records, bytes.Equal) {
		return nil
	}
	r.records = found
	r.cur.Store(r.build(r.cur.Load().version + 1))
	return nil
}

// build compiles the view of r.records and the declarative subscriptions.
// Requires loadMu (or exclusive use of r).
func (r *registry) build(version uint64) *view {
	v := &view{version: version, byTopic: map[string][]*subscription{}, byApp: map[string][]*subscription{}}
	apps := slices.Sorted(maps.Keys(r.records))
	for _, app := range apps {
		var rec record
		if err := json.Unmarshal(r.records[app], &rec); err != nil {
			r.svc.log.Warn("pubsub: ignoring a stored subscription record that does not decode", "app", app, "err", err)
			continue
		}
		seen := map[string]bool{}
		add := func(d Subscription, kind string) {
			if seen[d.Topic] {
				return
			}
			sub, err := r.compile(app, d, kind)
			if err != nil {
				r.svc.log.Warn("pubsub: ignoring a subscription", "app", app, "topic", d.Topic, "err", err)
				return
			}
			seen[d.Topic] = true
			v.byTopic[d.Topic] = append(v.byTopic[d.Topic], sub)
			v.byApp[app] = append(v.byApp[app], sub)
		}
		// A programmatic subscription wins over a declarative one of the
		// same topic.
		for _, d := range rec.Subs {
			add(d, "programmatic")
		}
		for _, d := range r.declarative {
			if inScope(d.Scopes, app) {
				add(d, "declarative")
			}
		}
	}
	return v
}

func inScope(scopes []string, app string) bool {
	return len(scopes) == 0 || slices.Contains(scopes, app)
}

// compile turns a validated subscription into its routes; rules whose
// expression does not compile are logged and left out.
func (r *registry) compile(app string, d Subscription, kind string) (*subscription, error) {
	sub := &subscription{app: app, topic: d.Topic, deadLetter: d.DeadLetterTopic}
	if v, ok := d.Metadata["rawPayload"]; ok {
		sub.raw, _ = strconv.ParseBool(v)
	}
	info := SubscriptionInfo{PubsubName: r.svc.cfg.Name, Topic: d.Topic, Metadata: d.Metadata, DeadLetterTopic: d.DeadLetterTopic, Type: kind}
	if d.Routes != nil && (len(d.Routes.Rules) > 0 || d.Routes.Default != "") {
		for _, rule := range d.Routes.Rules {
			prog, err := compileMatch(rule.Match)
			if err != nil {
				r.svc.log.Warn("pubsub: ignoring a routing rule whose expression does not compile",
					"app", app, "topic", d.Topic, "match", rule.Match, "err", err)
				continue
			}
			sub.routes = append(sub.routes, route{match: prog, expr: rule.Match, path: cleanPath(rule.Path)})
			info.Rules = append(info.Rules, Rule{Match: rule.Match, Path: rule.Path})
		}
		if d.Routes.Default != "" {
			sub.routes = append(sub.routes, route{path: cleanPath(d.Routes.Default)})
			info.Rules = append(info.Rules, Rule{Path: d.Routes.Default})
		}
	} else if d.Route != "" {
		sub.routes = []route{{path: cleanPath(d.Route)}}
		info.Rules = []Rule{{Path: d.Route}}
	}
	if len(d.BulkSubscribe) > 0 && !bytes.Equal(bytes.TrimSpace(d.BulkSubscribe), []byte("null")) {
		r.svc.log.Info("pubsub: bulkSubscribe is not supported; messages are delivered one by one", "app", app, "topic", d.Topic)
	}
	sub.info = info
	return sub, nil
}

func cleanPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "/" + p
	}
	return p
}

// validateSubscription checks what a subscription must have.
func validateSubscription(d *Subscription) error {
	if d.Topic == "" {
		return errors.New("no topic")
	}
	if _, err := topicActorID(0, d.Topic); err != nil {
		return err
	}
	if d.DeadLetterTopic != "" {
		if _, err := topicActorID(0, d.DeadLetterTopic); err != nil {
			return fmt.Errorf("dead-letter topic: %w", err)
		}
		if d.DeadLetterTopic == d.Topic {
			return errors.New("the dead-letter topic is the topic itself")
		}
	}
	hasRoutes := d.Routes != nil && (len(d.Routes.Rules) > 0 || d.Routes.Default != "")
	if d.Route == "" && !hasRoutes {
		return errors.New("neither a route nor routes")
	}
	return nil
}

// SyncApp reads GET /dapr/subscribe of the app at baseURL (such as
// http://127.0.0.1:3000) and stores its subscriptions to this pub/sub
// component, where every silo's partitions find them. An app answering 404
// has no subscriptions. Invalid entries are logged and skipped. It writes
// to the store only when the subscriptions changed.
func (s *Service) SyncApp(ctx context.Context, appID, baseURL string) error {
	if err := actor.ValidateName(appID); err != nil {
		return fmt.Errorf("pubsub: app ID %q %v", appID, err)
	}
	subs, err := s.readSubscribe(ctx, appID, baseURL)
	if err != nil {
		return err
	}
	var rec record
	for _, d := range subs {
		if d.PubsubName != s.cfg.Name {
			continue
		}
		d.Scopes = nil
		if err := validateSubscription(&d); err != nil {
			s.log.Warn("pubsub: ignoring a subscription of an app", "app", appID, "topic", d.Topic, "err", err)
			continue
		}
		rec.Subs = append(rec.Subs, d)
	}
	return s.storeRecord(ctx, appID, rec, 0)
}

// storeRecord stores the subscriptions of appID, unless they are stored
// already; with a ttl they are written again whatever, and expire unless
// written again within it.
func (s *Service) storeRecord(ctx context.Context, appID string, rec record, ttl time.Duration) error {
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	r := s.subs
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	if old, ok := r.records[appID]; ok && bytes.Equal(old, val) && ttl == 0 {
		return nil
	}
	op := statestore.Op{Kind: statestore.Put, Key: r.subKey(appID), Value: val, Index: r.index(), TTL: ttl}
	if err := s.store.Transact(ctx, statestore.Txn{Ops: []statestore.Op{op}}); err != nil {
		return fmt.Errorf("pubsub: storing the subscriptions of app %s: %w", appID, err)
	}
	next := maps.Clone(r.records)
	next[appID] = val
	r.records = next
	r.cur.Store(r.build(r.cur.Load().version + 1))
	return nil
}

// streamTTL is how long the stored subscriptions of a streaming subscriber
// outlive its silo: they are written again every streamTTL/3 while a
// stream lasts, so those of a silo that died expire.
const streamTTL = 30 * time.Second

// OpenStream subscribes subscriberID, a streaming subscriber of this silo,
// to sub's topic, until close is called. Its messages go to subscriberID
// through Config.Apps (the gRPC API registers the stream there).
func (s *Service) OpenStream(ctx context.Context, subscriberID string, sub Subscription) (closeStream func(), err error) {
	if err := actor.ValidateName(subscriberID); err != nil {
		return nil, fmt.Errorf("pubsub: subscriber %q %v", subscriberID, err)
	}
	sub.Scopes = nil
	if sub.Routes == nil && sub.Route == "" {
		sub.Routes = &Routes{Default: "/"}
	}
	if err := validateSubscription(&sub); err != nil {
		return nil, err
	}
	s.streamMu.Lock()
	if s.streams == nil {
		s.streams = map[string][]*Subscription{}
	}
	p := &sub
	s.streams[subscriberID] = append(s.streams[subscriberID], p)
	first := len(s.streams[subscriberID]) == 1
	s.streamMu.Unlock()
	if err := s.storeStreams(ctx, subscriberID); err != nil {
		s.dropStream(subscriberID, p)
		return nil, err
	}
	if first {
		go s.refreshStreams(subscriberID)
	}
	var once sync.Once
	return func() { once.Do(func() { s.dropStream(subscriberID, p) }) }, nil
}

// storeStreams stores the subscriptions of subscriberID's open streams,
// or forgets them when none is left.
func (s *Service) storeStreams(ctx context.Context, subscriberID string) error {
	s.streamMu.Lock()
	var rec record
	for _, sub := range s.streams[subscriberID] {
		rec.Subs = append(rec.Subs, *sub)
	}
	s.streamMu.Unlock()
	if len(rec.Subs) == 0 {
		return s.ForgetApp(ctx, subscriberID)
	}
	return s.storeRecord(ctx, subscriberID, rec, streamTTL)
}

func (s *Service) dropStream(subscriberID string, p *Subscription) {
	s.streamMu.Lock()
	s.streams[subscriberID] = slices.DeleteFunc(s.streams[subscriberID], func(x *Subscription) bool { return x == p })
	if len(s.streams[subscriberID]) == 0 {
		delete(s.streams, subscriberID)
	}
	s.streamMu.Unlock()
	ctx, cancel := context.WithTimeout(s.stopped, 10*time.Second)
	defer cancel()
	if err := s.storeStreams(ctx, subscriberID); err != nil && s.stopped.Err() == nil {
		s.log.Warn("pubsub: updating the subscriptions of a closed stream failed; they expire within the stream TTL",
			"subscriber", subscriberID, "err", err, "ttl", streamTTL)
	}
}

// refreshStreams writes the subscriptions of subscriberID again every
// streamTTL/3 while it has open streams.
func (s *Service) refreshStreams(subscriberID string) {
	for {
		t := s.clock.NewTimer(streamTTL / 3)
		select {
		case <-s.stopped.Done():
			t.Stop()
			return
		case <-t.C():
		}
		s.streamMu.Lock()
		open := len(s.streams[subscriberID]) > 0
		s.streamMu.Unlock()
		if !open {
			return
		}
		ctx, cancel := context.WithTimeout(s.stopped, 10*time.Second)
		if err := s.storeStreams(ctx, subscriberID); err != nil && s.stopped.Err() == nil {
			s.log.Warn("pubsub: refreshing the subscriptions of a stream failed", "subscriber", subscriberID, "err", err)
		}
		cancel()
	}
}

func (s *Service) readSubscribe(ctx context.Context, appID, baseURL string) ([]Subscription, error) {
	if grpcapp.IsURL(baseURL) {
		list, err := grpcapp.Subscriptions(ctx, baseURL)
		if err != nil {
			return nil, fmt.Errorf("pubsub: reading the subscriptions of gRPC app %s: %w", appID, err)
		}
		subs := make([]Subscription, 0, len(list))
		for _, g := range list {
			sub := Subscription{PubsubName: g.PubsubName, Topic: g.Topic, DeadLetterTopic: g.DeadLetterTopic, Metadata: g.Metadata,
				Routes: &Routes{Default: g.Routes.Default}}
			if sub.Routes.Default == "" && len(g.Routes.Rules) == 0 {
				// A gRPC subscription needs no route: its events go to
				// OnTopicEvent with the root path.
				sub.Routes.Default = "/"
			}
			for _, r := range g.Routes.Rules {
				sub.Routes.Rules = append(sub.Routes.Rules, Rule{Match: r.Match, Path: r.Path})
			}
			subs = append(subs, sub)
		}
		return subs, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(baseURL, "/")+"/dapr/subscribe", nil)
	if err != nil {
		return nil, fmt.Errorf("pubsub: app %s: %w", appID, err)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("pubsub: reading the subscriptions of app %s: %w", appID, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("pubsub: reading the subscriptions of app %s: %w", appID, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, nil
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("pubsub: app %s answered GET /dapr/subscribe with %d", appID, resp.StatusCode)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	var subs []Subscription
	if err := json.Unmarshal(body, &subs); err != nil {
		return nil, fmt.Errorf("pubsub: app %s: GET /dapr/subscribe did not answer a JSON array of subscriptions: %w", appID, err)
	}
	return subs, nil
}

// ForgetApp removes the stored subscriptions of appID. Partitions drop its
// cursors as they see the change; what is published afterwards is not kept
// for it.
func (s *Service) ForgetApp(ctx context.Context, appID string) error {
	r := s.subs
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	op := statestore.Op{Kind: statestore.Delete, Key: r.subKey(appID), Index: r.index()}
	if err := s.store.Transact(ctx, statestore.Txn{Ops: []statestore.Op{op}}); err != nil {
		return fmt.Errorf("pubsub: removing the subscriptions of app %s: %w", appID, err)
	}
	if _, ok := r.records[appID]; !ok {
		return nil
	}
	next := maps.Clone(r.records)
	delete(next, appID)
	r.records = next
	r.cur.Store(r.build(r.cur.Load().version + 1))
	return nil
}

// Subscriptions lists the subscriptions of appID to this pub/sub component
// known to this silo: those it declared and the declarative ones that
// scope it.
func (s *Service) Subscriptions(appID string) []SubscriptionInfo {
	v := s.subs.cur.Load()
	var out []SubscriptionInfo
	if subs, ok := v.byApp[appID]; ok {
		for _, sub := range subs {
			out = append(out, sub.info)
		}
		return out
	}
	for _, d := range s.subs.declarative {
		if inScope(d.Scopes, appID) {
			if sub, err := s.subs.compile(appID, d, "declarative"); err == nil {
				out = append(out, sub.info)
			}
		}
	}
	return out
}
