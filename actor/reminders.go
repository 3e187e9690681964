package actor

import (
	"context"
	"errors"
)

// ReminderSpec is a reminder registration made from Go code.
type ReminderSpec struct {
	Name    string
	Data    []byte // raw JSON, or nil
	DueTime string // a duration, ISO 8601 duration or RFC 3339 time; empty means now
	Period  string // a duration, ISO 8601 (optionally R<n>/), or cron; empty fires once
	TTL     string // a time or a duration; empty means no end
}

// Reminders is the durable reminder service as the runtime offers it to
// native actors.
type Reminders interface {
	CreateReminder(ctx context.Context, id ID, spec ReminderSpec) error
	DeleteReminder(ctx context.Context, id ID, name string) error
}

// SetReminders gives native actors access to durable reminders through Self.
func (rt *Runtime) SetReminders(r Reminders) { rt.reminders.Store(&r) }

func (rt *Runtime) reminderService() (Reminders, error) {
	p := rt.reminders.Load()
	if p == nil || *p == nil {
		return nil, errNoReminders
	}
	return *p, nil
}

var errNoReminders = errors.New("durable reminders are not enabled on this runtime")

// CreateReminder registers (or replaces) a durable reminder of this actor.
// It returns once the reminder is stored.
func (s *Self) CreateReminder(ctx context.Context, spec ReminderSpec) error {
	r, err := s.rt.reminderService()
	if err != nil {
		return err
	}
	return r.CreateReminder(ctx, s.id, spec)
}

// DeleteReminder removes a durable reminder of this actor; deleting an absent
// reminder succeeds.
func (s *Self) DeleteReminder(ctx context.Context, name string) error {
	r, err := s.rt.reminderService()
	if err != nil {
		return err
	}
	return r.DeleteReminder(ctx, s.id, name)
}
