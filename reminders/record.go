package reminders

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/granaryhq/granary/actor"
)

// record is a reminder as stored under statestore.ReminderKey. It holds the
// registration as given, the registration time (the schedule is rebuilt from
// these by schedule.Parse), the next due time and the count of delivered fires.
type record struct {
	ActorType  string          `json:"actorType"`
	ActorID    string          `json:"actorID"`
	Name       string          `json:"name"`
	Data       json.RawMessage `json:"data,omitempty"`
	DueTime    string          `json:"dueTime,omitempty"`
	Period     string          `json:"period,omitempty"`
	TTL        string          `json:"ttl,omitempty"`
	Registered int64           `json:"registered"` // Unix nanoseconds
	Next       int64           `json:"next"`       // Unix nanoseconds
	Fired      int             `json:"fired,omitempty"`
	Expires    int64           `json:"expires,omitempty"` // Unix nanoseconds; 0 means never
}

func decodeRecord(b []byte) (record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("reminder record: %w", err)
	}
	if r.ActorType == "" || r.ActorID == "" || r.Name == "" {
		return record{}, fmt.Errorf("reminder record: missing actor type, actor ID or name")
	}
	return r, nil
}

func (r *record) encode() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("reminder %q: encoding its record: %w", r.Name, err)
	}
	return b, nil
}

// Info is a reminder as registered: the body of GET .../reminders/{name}.
type Info struct {
	ActorID   string          `json:"actorID"`
	ActorType string          `json:"actorType"`
	Name      string          `json:"name"`
	Data      json.RawMessage `json:"data"`
	DueTime   string          `json:"dueTime"`
	Period    string          `json:"period"`
	TTL       string          `json:"ttl,omitempty"`
	// NextFire is when the reminder fires next, as last stored.
	NextFire time.Time `json:"nextFire"`
}

func (r *record) info() Info {
	data := r.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	return Info{
		ActorID: r.ActorID, ActorType: r.ActorType, Name: r.Name, Data: data,
		DueTime: r.DueTime, Period: r.Period, TTL: r.TTL,
		NextFire: time.Unix(0, r.Next).UTC(),
	}
}

func (r *record) id() actor.ID { return actor.ID{Type: r.ActorType, ID: r.ActorID} }
