package main

import (
	"log/slog"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/statestore"
)

// startReminders starts a silo's reminder service and offers it to native
// actors. byShard, for a cluster silo, loads reminders as shards are claimed
// rather than a type's all at once.
func startReminders(rt *actor.Runtime, store statestore.Store, byShard bool, obs *observability, log *slog.Logger) (*reminders.Service, error) {
	cfg := reminders.Config{Store: store, Actors: rt, Logger: log, ByShard: byShard}
	obs.reminders(&cfg)
	svc, err := reminders.New(cfg)
	if err != nil {
		return nil, err
	}
	rt.SetReminders(svc)
	return svc, nil
}
