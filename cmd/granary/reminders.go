package main

import (
	"log/slog"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/statestore"
)

// startReminders starts the reminder service of the dev silo and offers it
// to native actors.
func startReminders(rt *actor.Runtime, store statestore.Store, log *slog.Logger) (*reminders.Service, error) {
	svc, err := reminders.New(reminders.Config{Store: store, Actors: rt, Logger: log})
	if err != nil {
		return nil, err
	}
	rt.SetReminders(svc)
	return svc, nil
}
