package reminders

import (
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/reminders/schedule"
	"github.com/granaryhq/granary/statestore"
)

// record is a reminder as stored under statestore.ReminderKey, which names
// its actor and itself. It holds the registration's schedule as given and
// the registration time (schedule.Parse rebuilds the schedule from these),
// the next due time and the count of delivered fires. Kept short: a silo may
// store millions, and loads them all. Data of up to inlineData bytes is
// kept in the record; larger data is stored under statestore.ReminderDataKey
// and DataKey is set. Records written before data was kept apart may hold
// larger data inline; the next write of such a record moves it.
type record struct {
	Data       json.RawMessage `json:"data,omitempty"`
	DataKey    bool            `json:"dk,omitempty"`
	DueTime    string          `json:"dueTime,omitempty"`
	Period     string          `json:"period,omitempty"`
	TTL        string          `json:"ttl,omitempty"`
	Registered int64           `json:"reg"`             // Unix nanoseconds
	Next       int64           `json:"next"`            // Unix nanoseconds
	Fired      int32           `json:"fired,omitempty"` // delivered fires
	Expires    int64           `json:"exp,omitempty"`   // Unix nanoseconds; 0 means never
}

// entry is a reminder this silo schedules. Its fields are guarded by
// Service.mu. The actor and the reminder name are read from the key, and the
// schedule text is shared between reminders registered alike.
type entry struct {
	key     string // statestore.ReminderKey
	typeEnd uint16 // key[len("actor{"):typeEnd] is the actor type
	idEnd   uint16 // key[typeEnd+len(shardTag):idEnd] is the actor ID
	text    *scheduleText
	data    json.RawMessage // nil when dataKey

	registered int64 // Unix nanoseconds, as stored
	due        int64 // the next due time, as stored
	expires    int64
	fired      int32

	next  int64 // when it fires next: due, or a retry time
	idx   int32 // position in the heap, or -1 when not in it
	tries uint8 // failed deliveries of the current fire
	// dataKey: the data is stored under statestore.ReminderDataKey and read
	// when the reminder fires.
	dataKey bool
	// gone is set when the entry was replaced, deleted or dropped: an
	// in-flight fire or pending write of it must do nothing more.
	gone bool
}

// inlineData is the most data, in bytes, a record (and so memory) holds;
// larger data is kept apart, so that the memory of a silo follows the number
// of its reminders rather than their payloads.
const inlineData = 1 << 10

// scheduleText is a registration's schedule as given.
type scheduleText struct{ DueTime, Period, TTL string }

// newEntry makes an entry for a record stored under key.
func newEntry(key string, rec *record) (*entry, error) {
	typ, id, _, ok := statestore.ParseReminderKey(key)
	if !ok {
		return nil, fmt.Errorf("%q is not a reminder key", key)
	}
	if len(key) > math.MaxUint16 {
		return nil, fmt.Errorf("reminder key of %d bytes is too long", len(key))
	}
	typeEnd := len("actor{") + len(typ)
	e := &entry{
		key:     key,
		typeEnd: uint16(typeEnd),
		idEnd:   uint16(typeEnd + len(shardTag) + len(id)),
		text:    internText(scheduleText{rec.DueTime, rec.Period, rec.TTL}),
		data:    rec.Data,
		dataKey: rec.DataKey,

		registered: rec.Registered,
		due:        rec.Next,
		expires:    rec.Expires,
		fired:      rec.Fired,
		next:       rec.Next,
		idx:        -1,
	}
	return e, nil
}

// shardTag is what a reminder key holds between the type and the ID:
// "/sss}/" (see statestore.ReminderKey).
const shardTag = "/sss}/"

func (e *entry) id() actor.ID {
	return actor.ID{Type: e.key[len("actor{"):e.typeEnd], ID: e.key[int(e.typeEnd)+len(shardTag) : e.idEnd]}
}

// dataKeyName is the key of the data e keeps apart (see dataKey).
func (e *entry) dataKeyName() string {
	id := e.id()
	return statestore.ReminderDataKey(id.Type, id.ID, e.name())
}

func (e *entry) actorType() string { return e.key[len("actor{"):e.typeEnd] }

func (e *entry) name() string { return e.key[int(e.idEnd)+len("/reminder/"):] }

func (e *entry) record() record {
	return record{
		Data: e.data, DataKey: e.dataKey, DueTime: e.text.DueTime, Period: e.text.Period, TTL: e.text.TTL,
		Registered: e.registered, Next: e.due, Fired: e.fired, Expires: e.expires,
	}
}

// Schedule texts are interned: most reminders share a few ("0s", "1m",
// "@hourly"), and one copy serves them all. The table stops growing at
// maxInterned distinct texts; later ones get their own copy.
const maxInterned = 1 << 16

var interned = struct {
	sync.Mutex
	m map[scheduleText]*scheduleText
}{m: map[scheduleText]*scheduleText{}}

func internText(t scheduleText) *scheduleText {
	interned.Lock()
	defer interned.Unlock()
	if p := interned.m[t]; p != nil {
		return p
	}
	p := &t
	if len(interned.m) < maxInterned {
		interned.m[t] = p
	}
	return p
}

// belowMinimum reports whether a stored period is shorter than
// schedule.MinPeriod: registered before the minimum was enforced, it fires
// at the minimum instead. A load asks for every record but a silo has few
// distinct periods, so the answers are kept per period text (up to
// maxCheckedPeriods of them).
func belowMinimum(registered int64, period string) bool {
	checkedPeriods.Lock()
	below, ok := checkedPeriods.m[period]
	checkedPeriods.Unlock()
	if ok {
		return below
	}
	// The period alone decides; a due time and TTL would only add reasons
	// to fail.
	sp, err := schedule.ParseStored(time.Unix(0, registered), "", period, "")
	below = err == nil && sp.Raised
	checkedPeriods.Lock()
	if len(checkedPeriods.m) < maxCheckedPeriods {
		checkedPeriods.m[period] = below
	}
	checkedPeriods.Unlock()
	return below
}

const maxCheckedPeriods = 1 << 12

var checkedPeriods = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}

func decodeRecord(b []byte) (record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("reminder record: %w", err)
	}
	return r, nil
}

func (r *record) encode() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding a reminder record: %w", err)
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

func (r *record) info(id actor.ID, name string) Info {
	data := r.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	return Info{
		ActorID: id.ID, ActorType: id.Type, Name: name, Data: data,
		DueTime: r.DueTime, Period: r.Period, TTL: r.TTL,
		NextFire: time.Unix(0, r.Next).UTC(),
	}
}
