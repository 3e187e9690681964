package pubsub

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/blocks"
	"github.com/granaryhq/granary/statestore"
)

// State keys of a partition actor.
const (
	keyNext    = "next"
	keyHead    = "head"
	keyCursors = "cursors"
	msgPrefix  = "m/"

	recoverReminder = "recover"

	cacheLimit = 4096 // messages kept in memory per partition, beyond which they are read back
	loadBatch  = 64   // messages read from the store at once
	trimBatch  = 512  // messages deleted by one trimming write
)

func msgKey(seq uint64) string {
	s := strconv.FormatUint(seq, 10)
	return msgPrefix + "00000000000000000000"[:20-len(s)] + s
}

// cursor is where one subscriber is in a partition: the next sequence number
// to deliver, and how often its delivery failed so far.
type cursor struct {
	Seq     uint64 `json:"seq"`
	Attempt int    `json:"attempt,omitempty"`
}

type cursorsRecord struct {
	Apps map[string]cursor `json:"apps"`
}

// partition is one activation of a partition actor.
type partition struct {
	svc   *Service
	self  *actor.Self
	topic string
	badID error // set when the actor ID is not a partition's

	writeMu sync.Mutex // serialises writes of the cursors and head keys
	remMu   sync.Mutex // serialises registering and deleting the recover reminder

	mu          sync.Mutex
	loaded      bool
	stopped     bool
	next, head  uint64
	cache       map[uint64]*cached
	subs        map[string]*subscriber
	persisted   map[string]cursor // the cursors as last stored
	viewVersion uint64
	armed       bool // the recover reminder is registered
	ctx         context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	flushKick   chan struct{}
}

// cached is a message in memory; gone marks one that expired or was
// trimmed from the store.
type cached struct {
	m    message
	gone bool

	evOnce sync.Once
	ev     map[string]any

	wrapOnce sync.Once
	wrapped  []byte // a raw message as a CloudEvent
}

// subscriber is one app ID subscribed to the partition's topic.
type subscriber struct {
	app     string
	sub     *subscription // guarded by partition.mu
	cur     cursor        // guarded by partition.mu
	removed bool          // guarded by partition.mu
	kick    chan struct{}
}

func (s *Service) newPartition(self *actor.Self) actor.NativeActor {
	p := &partition{svc: s, self: self, flushKick: make(chan struct{}, 1)}
	_, topic, ok := parseActorID(self.ID().ID)
	if !ok {
		p.badID = fmt.Errorf("actor ID %q is not <partition>.<topic>", self.ID().ID)
	}
	p.topic = topic
	return p
}

// Invoke serves the partition's methods: "publish" stores messages.
func (p *partition) Invoke(ctx context.Context, method string, body []byte) ([]byte, error) {
	if err := p.ensureLoaded(ctx); err != nil {
		return nil, err
	}
	switch method {
	case "publish":
		var req publishRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "publish body: %v", err)
		}
		if err := p.publish(ctx, req.Messages); err != nil {
			return nil, err
		}
		return []byte(`{}`), nil
	}
	return nil, blocks.Errorf(http.StatusNotFound, "ERR_ACTOR_METHOD_NOT_FOUND", "pubsub partition has no method %q", method)
}

// Remind resumes delivery when the recover reminder fires (after a crash it
// is what activates the partition again).
func (p *partition) Remind(ctx context.Context, name string, _ []byte) (bool, error) {
	if name != recoverReminder {
		return true, nil
	}
	p.mu.Lock()
	p.armed = true // it is firing, so it is registered
	p.mu.Unlock()
	if err := p.ensureLoaded(ctx); err != nil {
		return false, err
	}
	p.mu.Lock()
	for _, s := range p.subs {
		poke(s.kick)
	}
	p.mu.Unlock()
	poke(p.flushKick)
	return false, nil
}

// Deactivate stops the delivery goroutines and persists the cursors.
func (p *partition) Deactivate(ctx context.Context) error {
	p.stop(ctx)
	return nil
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// ensureLoaded reads the partition's state on its first turn and starts its
// goroutines. Turns are serial, so loads never overlap.
func (p *partition) ensureLoaded(ctx context.Context) error {
	if p.badID != nil {
		return blocks.Errorf(http.StatusBadRequest, ErrMalformedRequest, "%v", p.badID)
	}
	p.mu.Lock()
	loaded, stopped := p.loaded, p.stopped
	p.mu.Unlock()
	if stopped {
		return blocks.Errorf(http.StatusInternalServerError, ErrPublishMessage, "pubsub %s: the partition is shutting down", p.svc.cfg.Name)
	}
	if loaded {
		return nil
	}
	v, err := p.svc.subs.current(ctx)
	if err != nil {
		return blocks.Errorf(http.StatusInternalServerError, ErrPublishMessage, "loading subscriptions: %v", err)
	}
	id := p.self.ID()
	keys := []string{
		statestore.ActorStateKey(id.Type, id.ID, keyNext),
		statestore.ActorStateKey(id.Type, id.ID, keyHead),
		statestore.ActorStateKey(id.Type, id.ID, keyCursors),
	}
	items, err := p.svc.store.BulkGet(ctx, keys)
	if err != nil {
		return blocks.Errorf(http.StatusInternalServerError, ErrPublishMessage, "loading partition %s: %v", id, err)
	}
	var next, head uint64
	if items[0].Exists() {
		if next, err = strconv.ParseUint(string(items[0].Value), 10, 64); err != nil {
			return fmt.Errorf("partition %s: bad next sequence %q", id, items[0].Value)
		}
	}
	if items[1].Exists() {
		if head, err = strconv.ParseUint(string(items[1].Value), 10, 64); err != nil {
			return fmt.Errorf("partition %s: bad head sequence %q", id, items[1].Value)
		}
	}
	stored := cursorsRecord{}
	if items[2].Exists() {
		if err := json.Unmarshal(items[2].Value, &stored); err != nil {
			return fmt.Errorf("partition %s: bad cursors: %w", id, err)
		}
	}
	if stored.Apps == nil {
		stored.Apps = map[string]cursor{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.svc.track(p) {
		p.stopped = true
		return blocks.Errorf(http.StatusInternalServerError, ErrPublishMessage, "pubsub %s is shutting down", p.svc.cfg.Name)
	}
	p.next, p.head = next, head
	p.cache = map[uint64]*cached{}
	p.subs = map[string]*subscriber{}
	p.persisted = stored.Apps
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.loaded = true
	for _, sub := range v.byTopic[p.topic] {
		s := &subscriber{app: sub.app, sub: sub, kick: make(chan struct{}, 1)}
		if c, ok := stored.Apps[sub.app]; ok {
			s.cur = c
			s.cur.Seq = min(max(c.Seq, head), next)
		} else {
			s.cur = cursor{Seq: next}
		}
		p.subs[sub.app] = s
		p.startWorkerLocked(s)
	}
	p.viewVersion = v.version
	p.wg.Add(1)
	go p.flushLoop()
	poke(p.flushKick)
	return nil
}

func (p *partition) startWorkerLocked(s *subscriber) {
	p.wg.Add(1)
	go p.deliverLoop(s)
}

// refreshLocked brings the subscribers up to date with v: new subscribers
// start at the next sequence number, gone ones are dropped. Requires mu.
func (p *partition) refreshLocked(v *view) {
	if !p.loaded || p.stopped || v.version == p.viewVersion {
		return
	}
	p.viewVersion = v.version
	want := map[string]*subscription{}
	for _, sub := range v.byTopic[p.topic] {
		want[sub.app] = sub
	}
	for app, s := range p.subs {
		if _, ok := want[app]; !ok {
			s.removed = true
			poke(s.kick)
			delete(p.subs, app)
		}
	}
	for app, sub := range want {
		if s, ok := p.subs[app]; ok {
			s.sub = sub
			continue
		}
		s := &subscriber{app: app, sub: sub, cur: cursor{Seq: p.next}, kick: make(chan struct{}, 1)}
		p.subs[app] = s
		p.startWorkerLocked(s)
	}
	poke(p.flushKick)
}

// cursorsLocked returns the subscribers' cursors. Requires mu.
func (p *partition) cursorsLocked() map[string]cursor {
	out := make(map[string]cursor, len(p.subs))
	for app, s := range p.subs {
		out[app] = s.cur
	}
	return out
}

// unpersistedLocked reports whether a subscriber's cursor was never stored.
func (p *partition) unpersistedLocked() bool {
	for app := range p.subs {
		if _, ok := p.persisted[app]; !ok {
			return true
		}
	}
	return false
}

// pendingLocked reports whether anything is left to deliver, trim or store.
func (p *partition) pendingLocked() bool {
	if p.head < p.next {
		return true
	}
	for _, s := range p.subs {
		if s.cur.Seq < p.next {
			return true
		}
	}
	return !maps.Equal(p.cursorsLocked(), p.persisted)
}

// publish stores msgs under the next sequence numbers, in one write with the
// cursors of subscribers never stored yet (so that a subscriber the
// partition just learned of is durably owed these messages).
func (p *partition) publish(ctx context.Context, msgs []message) error {
	if len(msgs) == 0 {
		return nil
	}
	v := p.svc.subs.cur.Load()
	p.mu.Lock()
	p.refreshLocked(v)
	withCursors := p.unpersistedLocked()
	p.mu.Unlock()
	if withCursors {
		p.writeMu.Lock()
		defer p.writeMu.Unlock()
	}
	now := p.svc.clock.Now()
	p.mu.Lock()
	first := p.next
	var cursors map[string]cursor
	if withCursors {
		cursors = p.cursorsLocked()
	}
	p.mu.Unlock()
	ops := make([]statestore.Op, 0, len(msgs)+2)
	for i := range msgs {
		val, err := json.Marshal(&msgs[i])
		if err != nil {
			return blocks.Errorf(http.StatusInternalServerError, ErrPublishMessage, "encoding message: %v", err)
		}
		op := statestore.Op{Kind: statestore.Put, Key: msgKey(first + uint64(i)), Value: val}
		if msgs[i].Expires != 0 {
			op.TTL = max(time.Unix(0, msgs[i].Expires).Sub(now), time.Millisecond)
		}
		ops = append(ops, op)
	}
	next := first + uint64(len(msgs))
	ops = append(ops, statestore.Op{Kind: statestore.Put, Key: keyNext, Value: strconv.AppendUint(nil, next, 10)})
	if withCursors {
		val, _ := json.Marshal(cursorsRecord{Apps: cursors})
		ops = append(ops, statestore.Op{Kind: statestore.Put, Key: keyCursors, Value: val})
	}
	if err := p.self.Transact(ctx, ops...); err != nil {
		return blocks.Errorf(http.StatusInternalServerError, ErrPublishMessage, "storing the message in topic %s of pubsub %s: %v", p.topic, p.svc.cfg.Name, err)
	}
	p.mu.Lock()
	p.next = next
	for i := range msgs {
		if len(p.cache) < cacheLimit {
			p.cache[first+uint64(i)] = &cached{m: msgs[i]}
		}
	}
	if withCursors {
		p.persisted = cursors
	}
	for _, s := range p.subs {
		poke(s.kick)
	}
	p.mu.Unlock()
	poke(p.flushKick)
	if err := p.syncReminder(ctx); err != nil {
		return blocks.Errorf(http.StatusInternalServerError, ErrPublishMessage, "registering the delivery reminder of topic %s: %v", p.topic, err)
	}
	return nil
}

// syncReminder registers the recover reminder while anything is pending and
// deletes it once nothing is. Calls are serialised, and each acts on the
// state it reads after the previous one finished, so the last call leaves
// the reminder matching the state.
func (p *partition) syncReminder(ctx context.Context) error {
	p.remMu.Lock()
	defer p.remMu.Unlock()
	p.mu.Lock()
	want, have := p.pendingLocked(), p.armed
	p.mu.Unlock()
	if want == have {
		return nil
	}
	var err error
	if want {
		period := p.svc.cfg.RecoveryPeriod.String()
		err = p.self.CreateReminder(ctx, actor.ReminderSpec{Name: recoverReminder, DueTime: period, Period: period})
	} else {
		err = p.self.DeleteReminder(ctx, recoverReminder)
	}
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.armed = want
	p.mu.Unlock()
	return nil
}

// flushLoop persists cursors and trims whenever kicked, and picks up
// subscription changes every RefreshInterval.
func (p *partition) flushLoop() {
	defer p.wg.Done()
	t := p.svc.clock.NewTimer(p.svc.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.flushKick:
		case <-t.C():
			t.Reset(p.svc.cfg.RefreshInterval)
			v := p.svc.subs.cur.Load()
			p.mu.Lock()
			p.refreshLocked(v)
			p.mu.Unlock()
		}
		p.flush(p.ctx)
	}
}

// flush writes the cursors if they changed and deletes the messages every
// subscriber is past, then brings the recover reminder up to date.
func (p *partition) flush(ctx context.Context) {
	p.writeMu.Lock()
	p.mu.Lock()
	if !p.loaded {
		p.mu.Unlock()
		p.writeMu.Unlock()
		return
	}
	cursors := p.cursorsLocked()
	changed := !maps.Equal(cursors, p.persisted)
	low := p.next
	for _, c := range cursors {
		low = min(low, c.Seq)
	}
	oldHead := p.head
	trimTo := min(low, oldHead+trimBatch)
	p.mu.Unlock()
	var ops []statestore.Op
	if changed {
		val, _ := json.Marshal(cursorsRecord{Apps: cursors})
		ops = append(ops, statestore.Op{Kind: statestore.Put, Key: keyCursors, Value: val})
	}
	for seq := oldHead; seq < trimTo; seq++ {
		ops = append(ops, statestore.Op{Kind: statestore.Delete, Key: msgKey(seq)})
	}
	if trimTo > oldHead {
		ops = append(ops, statestore.Op{Kind: statestore.Put, Key: keyHead, Value: strconv.AppendUint(nil, trimTo, 10)})
	}
	if len(ops) > 0 {
		if err := p.self.Transact(ctx, ops...); err != nil {
			p.writeMu.Unlock()
			if ctx.Err() == nil {
				p.svc.log.Warn("pubsub: persisting cursors failed; retrying on the next flush", "topic", p.topic, "actor", p.self.ID().String(), "err", err)
			}
			return
		}
	}
	p.mu.Lock()
	p.persisted = cursors
	p.head = trimTo
	for seq := oldHead; seq < trimTo; seq++ {
		delete(p.cache, seq)
	}
	more := trimTo < low
	p.mu.Unlock()
	p.writeMu.Unlock()
	if more {
		poke(p.flushKick)
	}
	if err := p.syncReminder(ctx); err != nil && ctx.Err() == nil {
		p.svc.log.Warn("pubsub: updating the recover reminder failed", "topic", p.topic, "actor", p.self.ID().String(), "err", err)
	}
}

// stop ends the goroutines and persists the cursors, once.
func (p *partition) stop(ctx context.Context) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	loaded, cancel := p.loaded, p.cancel
	p.mu.Unlock()
	if !loaded {
		return
	}
	cancel()
	p.wg.Wait()
	p.flush(ctx)
	p.svc.untrack(p)
}

// loadMessages reads the messages from seq on into the cache.
func (p *partition) loadMessages(ctx context.Context, from uint64) error {
	p.mu.Lock()
	to := min(from+loadBatch, p.next)
	p.mu.Unlock()
	if to <= from {
		return nil
	}
	id := p.self.ID()
	keys := make([]string, 0, to-from)
	for seq := from; seq < to; seq++ {
		keys = append(keys, statestore.ActorStateKey(id.Type, id.ID, msgKey(seq)))
	}
	items, err := p.svc.store.BulkGet(ctx, keys)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, it := range items {
		seq := from + uint64(i)
		if _, ok := p.cache[seq]; ok || seq < p.head {
			continue
		}
		c := &cached{}
		if !it.Exists() {
			c.gone = true // expired
		} else if err := json.Unmarshal(it.Value, &c.m); err != nil {
			p.svc.log.Error("pubsub: skipping a stored message that does not decode", "topic", p.topic, "seq", seq, "err", err)
			c.gone = true
		}
		p.cache[seq] = c
	}
	return nil
}
