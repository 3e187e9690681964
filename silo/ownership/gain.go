package ownership

// Gaining shards: the unlock that claims what a table gives this silo, the
// claims themselves, and the recheck of held shards after a missed table.

import (
	"errors"
	"slices"
	"time"

	"github.com/granaryhq/granary/placement/table"
	"github.com/granaryhq/granary/statestore"
)

// unlock starts claiming the gaining shards of t.
func (o *Ownership) unlock(t *table.Table) {
	o.mu.Lock()
	if !sameTable(o.tbl, t) {
		o.mu.Unlock()
		return // an unlock for a table we did not adopt
	}
	gain := map[string][]int{}
	for typ, ts := range o.types {
		for i := range ts.shards {
			ts.shards[i].locked = false
			if ts.shards[i].phase == gaining {
				gain[typ] = append(gain[typ], i)
			}
		}
	}
	o.mu.Unlock()
	unlockedAt := o.cfg.Clock.Now()
	for typ, shards := range gain {
		o.handovers.Add(1)
		go o.claimGained(t, typ, shards, unlockedAt)
	}
}

// claimGained claims shards of typ gained in t, each once it is free: at
// once when its record is absent, released or held by a process that is no
// longer a member; otherwise on its release or after the drain timeout.
func (o *Ownership) claimGained(t *table.Table, typ string, shards []int, unlockedAt time.Time) {
	defer o.handovers.Done()
	claim := statestore.Claim{Cluster: t.ClusterID, Version: t.Version, Silo: o.cfg.Self.ID, Incarnation: o.cfg.Self.Incarnation}
	deadline := unlockedAt.Add(o.cfg.DrainTimeout(typ))
	pending := shards
	drop := map[int]bool{}
	for len(pending) > 0 && o.ctx.Err() == nil {
		pending = slices.DeleteFunc(o.stillGaining(t, typ, pending), func(s int) bool { return drop[s] })
		if len(pending) == 0 {
			return
		}
		keys := make([]string, len(pending))
		for i, s := range pending {
			keys[i] = statestore.ShardFenceKey(typ, s)
		}
		force := !o.cfg.Clock.Now().Before(deadline)
		var ready []int
		var readyKeys []string
		if force {
			ready, readyKeys = pending, keys
		} else {
			items, err := o.cfg.Store.BulkGet(o.ctx, keys)
			if err != nil {
				o.log.Warn("reading shard fences failed; retrying", "type", typ, "err", err)
			} else {
				for i, it := range items {
					if o.free(t, it) {
						ready = append(ready, pending[i])
						readyKeys = append(readyKeys, keys[i])
					}
				}
			}
		}
		if len(ready) > 0 {
			// Refused shards stay gaining but are not tried again: the
			// refusal names its holder, and only an operator can settle it.
			for _, s := range o.claim(t, typ, claim, ready, readyKeys) {
				drop[s] = true
			}
		}
		select {
		case <-o.ctx.Done():
			return
		case <-time.After(o.cfg.PollInterval):
		}
	}
}

// stillGaining filters shards that are still gaining under t.
func (o *Ownership) stillGaining(t *table.Table, typ string, shards []int) []int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if !sameTable(o.tbl, t) {
		return nil // a newer table took over; its unlock claims what it gives
	}
	ts := o.types[typ]
	var out []int
	for _, s := range shards {
		if ts != nil && ts.shards[s].phase == gaining {
			out = append(out, s)
		}
	}
	return out
}

// free reports whether a fence record lets this silo claim without waiting.
func (o *Ownership) free(t *table.Table, it statestore.Item) bool {
	if !it.Exists() {
		return true
	}
	rec, err := statestore.ParseFenceRecord(it.Value)
	if err != nil {
		return false // unreadable: wait for the drain timeout, then the claim says why
	}
	if rec.Released || rec.Claim.Cluster != t.ClusterID {
		return true // another cluster's record: the claim will refuse, naming it
	}
	if rec.Claim.Silo == o.cfg.Self.ID && rec.Claim.Incarnation == o.cfg.Self.Incarnation {
		return true // ours already (lost and regained before the release)
	}
	m, member := t.Member(rec.Claim.Silo)
	return !member || m.Incarnation != rec.Claim.Incarnation
}

// claim claims shards for c and returns those refused.
func (o *Ownership) claim(t *table.Table, typ string, c statestore.Claim, shards []int, keys []string) (refusedShards []int) {
	errs := statestore.ClaimShards(o.ctx, o.cfg.Store, keys, c, o.cfg.TakeOverOtherClusters)
	var won, stale []int
	o.mu.Lock()
	current := sameTable(o.tbl, t)
	ts := o.typeOf(typ)
	for i, s := range shards {
		err := errs[i]
		sh := &ts.shards[s]
		if err == nil {
			if current && sh.phase == gaining {
				sh.phase, sh.claim = held, c
				won = append(won, s)
			} else {
				// A newer table arrived while this claim was under way and
				// the shard is not ours under it: give the record up, or
				// its new owner would wait for the drain timeout.
				stale = append(stale, s)
			}
			continue
		}
		var refused *statestore.ClaimRefusedError
		switch {
		case errors.As(err, &refused) && !current:
			// A claim of an outdated table lost to the newer table's
			// owner, as it should: nothing to report.
			refusedShards = append(refusedShards, s)
		case errors.As(err, &refused):
			if refused.Newer && o.cfg.ReportNewer != nil {
				o.cfg.ReportNewer(refused.Holder.Version, keys[i])
			}
			if refused.OtherCluster && !o.cfg.TakeOverOtherClusters {
				o.log.Error("shard claim refused: another cluster's record holds it; if that cluster is gone for good, start the silos with --take-over",
					"type", typ, "shard", s, "err", err)
			} else {
				o.log.Error("shard claim refused", "type", typ, "shard", s, "err", err)
			}
			refusedShards = append(refusedShards, s)
		default:
			o.log.Warn("shard claim failed; retrying", "type", typ, "shard", s, "err", err)
		}
	}
	o.mu.Unlock()
	for _, s := range stale {
		err := statestore.ReleaseShard(o.ctx, o.cfg.Store, statestore.ShardFenceKey(typ, s), c)
		switch {
		case errors.Is(err, statestore.ErrFenced):
			// The new owner claimed it already: nothing to give up.
			o.log.Debug("a shard claimed under an outdated table is someone else's now", "type", typ, "shard", s)
		case err != nil:
			o.log.Warn("releasing a shard claimed under an outdated table failed", "type", typ, "shard", s, "err", err)
		}
	}
	if len(won) > 0 {
		o.cfg.Hooks.Gained(o.ctx, typ, won)
	}
	return refusedShards
}

// recheckHeld reads the fence records of the shards held under t and claims
// again, as gained in t, those whose record no longer holds this silo's
// claim: after tables this silo missed, another silo may have claimed them,
// and every write under the old claim would be refused.
func (o *Ownership) recheckHeld(t *table.Table) {
	defer o.handovers.Done()
	o.mu.RLock()
	byType := map[string][]int{}
	for typ, ts := range o.types {
		for i := range ts.shards {
			if ts.shards[i].phase == held {
				byType[typ] = append(byType[typ], i)
			}
		}
	}
	o.mu.RUnlock()
	for typ, shards := range byType {
		keys := make([]string, len(shards))
		for i, s := range shards {
			keys[i] = statestore.ShardFenceKey(typ, s)
		}
		items, err := o.cfg.Store.BulkGet(o.ctx, keys)
		if err != nil {
			o.log.Warn("reading the fence records of held shards after a missed table failed", "type", typ, "err", err)
			continue
		}
		var stale []int
		o.mu.Lock()
		if !sameTable(o.tbl, t) {
			o.mu.Unlock()
			return // a newer table: its own update decides
		}
		ts := o.typeOf(typ)
		for i, s := range shards {
			sh := &ts.shards[s]
			if sh.phase == held && string(items[i].Value) != string(sh.claim.HeldRecord()) {
				*sh = shard{phase: gaining}
				stale = append(stale, s)
			}
		}
		o.mu.Unlock()
		if len(stale) > 0 {
			o.log.Warn("shards claimed by another silo in tables this silo missed; claiming them again", "type", typ, "shards", len(stale), "version", t.Version)
			o.handovers.Add(1)
			go o.claimGained(t, typ, stale, o.cfg.Clock.Now())
		}
	}
}
