package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/actor/callback"
	"github.com/granaryhq/granary/blocks"
	"github.com/granaryhq/granary/blocks/components"
	"github.com/granaryhq/granary/blocks/invoke"
	"github.com/granaryhq/granary/blocks/pubsub"
	"github.com/granaryhq/granary/blocks/state"
	"github.com/granaryhq/granary/gateway"
	"github.com/granaryhq/granary/internal/uuid"
	"github.com/granaryhq/granary/silo"
	"github.com/granaryhq/granary/statestore"
)

// resourcesFlag collects repeated --resources-path values.
type resourcesFlag []string

func (r *resourcesFlag) String() string { return fmt.Sprint([]string(*r)) }

func (r *resourcesFlag) Set(v string) error {
	*r = append(*r, v)
	return nil
}

// subscriptionSync is how often the silo reads its apps' /dapr/subscribe.
const subscriptionSync = 5 * time.Second

// blockSet is the building blocks of one silo.
type blockSet struct {
	res     components.Resources
	states  map[string]*state.Service
	pubsubs map[string]*pubsub.Service
	invoke  *invoke.Service
	peers   invoke.Peers // nil on a single silo
	// streamID names this process's streaming subscribers: they form one
	// consumer group of their own.
	streamID string
	apps     *callback.Registry
	log      *slog.Logger

	stop   chan struct{}
	ctx    context.Context // ends at Close, so that a read of an app or the store in flight does not hold it up
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// startBlocks hosts the state stores and pub/subs the resources declare
// (and the defaults), serves them and service invocation on gw, and keeps
// the subscriptions of the apps up to date. peers is nil on a single silo.
func startBlocks(rt *actor.Runtime, store statestore.Store, gw *gateway.Server, apps *callback.Registry,
	peers invoke.Peers, res components.Resources, appID, apiToken string, maxBody int, log *slog.Logger) (*blockSet, error) {
	b := &blockSet{res: res, states: map[string]*state.Service{}, pubsubs: map[string]*pubsub.Service{}, apps: apps, peers: peers, log: log,
		stop: make(chan struct{})}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.streamID = cmp.Or(appID, "app") + "~stream-" + uuid.New()[:8]
	b.invoke = invoke.New(invoke.Config{Local: apps, Peers: peers, MaxResponseSize: maxBody, APIToken: apiToken, Logger: log})
	served := gateway.Blocks{State: map[string]gateway.StateStore{}, PubSub: map[string]gateway.PubSub{}, Invoke: b.invoke}
	for _, name := range res.Names("state") {
		s, err := state.New(state.Config{Name: name, Runtime: rt, Store: store, Actors: gw, Logger: log})
		if err != nil {
			return nil, err
		}
		b.states[name], served.State[name] = s, s
	}
	var decl []pubsub.Subscription
	for _, s := range res.Subscriptions {
		sub := pubsub.Subscription{PubsubName: s.PubSub, Topic: s.Topic, DeadLetterTopic: s.DeadLetterTopic,
			Metadata: s.Metadata, Scopes: s.Scopes, Routes: &pubsub.Routes{Default: s.Default}}
		for _, r := range s.Rules {
			sub.Routes.Rules = append(sub.Routes.Rules, pubsub.Rule{Match: r.Match, Path: r.Path})
		}
		decl = append(decl, sub)
	}
	for _, name := range res.Names("pubsub") {
		ps, err := pubsub.New(pubsub.Config{Name: name, Runtime: rt, Store: store, Actors: gw, Apps: b.invoke,
			Subscriptions: decl, AppID: appID, TypeConfig: blocks.SystemTypeConfig(), Logger: log})
		if err != nil {
			b.Close()
			return nil, err
		}
		b.pubsubs[name], served.PubSub[name] = ps, ps
	}
	gw.SetBlocks(served)
	b.done.Add(1)
	go b.syncLoop()
	return b, nil
}

// syncLoop reads the subscriptions of the apps registered here, at once and
// then every subscriptionSync, and forgets those of apps gone from the
// cluster.
func (b *blockSet) syncLoop() {
	defer b.done.Done()
	known := map[string]bool{}
	t := time.NewTicker(subscriptionSync)
	defer t.Stop()
	for {
		b.syncOnce(known)
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
	}
}

// SyncNow reads the subscriptions of the apps now, so that an app
// registered at startup has its subscriptions before the first publish.
func (b *blockSet) SyncNow() { b.syncOnce(nil) }

// SyncApp reads the subscriptions of one app just registered, so that they
// are in place when its registration is answered.
func (b *blockSet) SyncApp(ctx context.Context, appID, url string) {
	ctx, cancel := context.WithTimeout(ctx, subscriptionSync)
	defer cancel()
	b.syncApp(ctx, appID, url)
}

// syncApp reads an app's subscriptions for every pub/sub; a failure is
// logged, and the next sync tries again.
func (b *blockSet) syncApp(ctx context.Context, appID, url string) {
	for name, ps := range b.pubsubs {
		if err := ps.SyncApp(ctx, appID, url); err != nil {
			b.log.Warn("reading the app's subscriptions failed; trying again later", "app", appID, "pubsub", name, "err", err)
		}
	}
}

func (b *blockSet) syncOnce(known map[string]bool) {
	ctx, cancel := context.WithTimeout(b.ctx, subscriptionSync)
	defer cancel()
	current := map[string]bool{}
	var urls []string
	for _, a := range b.apps.Apps() {
		current[a.ID] = true
		urls = append(urls, a.URL)
		if !a.Healthy && known != nil {
			continue
		}
		b.syncApp(ctx, a.ID, a.URL)
	}
	if known == nil {
		return
	}
	for id := range known {
		// An app's subscriptions are its app ID's, shared by its instances
		// on every silo: they go only with the last instance.
		if !current[id] && (b.peers == nil || len(b.peers.AppSilos(id)) == 0) {
			for _, ps := range b.pubsubs {
				if err := ps.ForgetApp(ctx, id); err != nil {
					b.log.Warn("forgetting the subscriptions of an unregistered app failed", "app", id, "err", err)
				}
			}
			delete(known, id)
		}
	}
	for id := range current {
		known[id] = true
	}
	b.invoke.Forget(urls)
}

// OpenStream implements grpcapi.Streams: a streaming subscription is a
// subscriber of its own, named after the silo's app and this process, that
// takes the messages of its topic through deliver.
func (b *blockSet) OpenStream(ctx context.Context, pubsubName, topic, deadLetter string, md map[string]string,
	deliver func(ctx context.Context, path string, event []byte) (string, error)) (func(), error) {
	ps, ok := b.pubsubs[pubsubName]
	if !ok {
		return nil, blocks.Errorf(http.StatusNotFound, "ERR_PUBSUB_NOT_FOUND", "pubsub %s is not found", pubsubName)
	}
	removeInstance := b.invoke.AddStream(b.streamID, deliver)
	closeSub, err := ps.OpenStream(ctx, b.streamID, pubsub.Subscription{PubsubName: pubsubName, Topic: topic, DeadLetterTopic: deadLetter, Metadata: md})
	if err != nil {
		removeInstance()
		return nil, blocks.Errorf(http.StatusBadRequest, "ERR_PUBSUB_SUBSCRIBE", "subscribing to topic %s of pubsub %s: %v", topic, pubsubName, err)
	}
	b.log.Info("streaming subscription opened", "pubsub", pubsubName, "topic", topic, "subscriber", b.streamID)
	return func() {
		closeSub()
		removeInstance()
		b.log.Info("streaming subscription closed", "pubsub", pubsubName, "topic", topic, "subscriber", b.streamID)
	}, nil
}

// AppIDs are the IDs other silos can reach here: the apps' and the
// streaming subscribers'.
func (b *blockSet) AppIDs() []string {
	var ids []string
	for _, a := range b.apps.Apps() {
		ids = append(ids, a.ID)
	}
	ids = append(ids, b.invoke.StreamIDs()...)
	slices.Sort(ids)
	return slices.Compact(ids)
}

// Metadata describes the components and the subscriptions of this silo's apps.
func (b *blockSet) Metadata() ([]silo.Component, []silo.Subscription) {
	comps := []silo.Component{}
	for _, name := range b.res.Names("state") {
		comps = append(comps, silo.Component{Name: name, Type: b.typeOf("state", name), Version: "v1",
			Capabilities: []string{"ETAG", "TRANSACTIONAL", "TTL", "ACTOR"}})
	}
	for _, name := range b.res.Names("pubsub") {
		comps = append(comps, silo.Component{Name: name, Type: b.typeOf("pubsub", name), Version: "v1", Capabilities: []string{"TTL"}})
	}
	subs := []silo.Subscription{}
	for _, a := range b.apps.Apps() {
		names := make([]string, 0, len(b.pubsubs))
		for n := range b.pubsubs {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			for _, si := range b.pubsubs[n].Subscriptions(a.ID) {
				sub := silo.Subscription{AppID: a.ID, PubSubName: si.PubsubName, Topic: si.Topic, DeadLetterTopic: si.DeadLetterTopic,
					Metadata: si.Metadata, Type: si.Type, Rules: silo.SubscriptionRules{Rules: []silo.SubscriptionRule{}}}
				for _, r := range si.Rules {
					sub.Rules.Rules = append(sub.Rules.Rules, silo.SubscriptionRule{Match: r.Match, Path: r.Path})
				}
				subs = append(subs, sub)
			}
		}
	}
	return comps, subs
}

// typeOf is the type a component was declared with; the defaults are
// Granary's own.
func (b *blockSet) typeOf(kind, name string) string {
	for _, c := range b.res.Components {
		if c.Kind() == kind && c.Name == name {
			return c.Type
		}
	}
	return kind + ".granary"
}

// Close stops the subscription reads and the pub/subs' deliveries.
func (b *blockSet) Close() {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	b.cancel()
	b.done.Wait()
	for _, ps := range b.pubsubs {
		ps.Close()
	}
}
