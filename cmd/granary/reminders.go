package main

import (
	"context"
	"log/slog"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/silo"
	"github.com/granaryhq/granary/statestore"
)

// reminderService is the reminder service as granary dev runs it.
type reminderService interface {
	silo.Reminders
	Stop()
}

func startReminders(ctx context.Context, rt *actor.Runtime, store statestore.Store, log *slog.Logger) (reminderService, error) {
	return nil, nil
}
