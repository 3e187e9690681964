// Package schedule parses and evaluates reminder and timer schedules: the
// dueTime, period and ttl fields of a registration, and the fire times they
// imply.
package schedule

import (
	"fmt"
	"strings"
	"time"
)

// FieldError reports an invalid schedule field. Field is "dueTime", "period"
// or "ttl"; Value is the text as given; Reason says what is wrong with it.
type FieldError struct {
	Field, Value, Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Reason)
}

// Spec is a parsed schedule: when it first fires, how it repeats, when it ends.
type Spec struct {
	// DueTime, Period and TTL are the fields exactly as the client gave them.
	DueTime, Period, TTL string
	// First is the first fire time, in UTC. It is before the registration
	// time when dueTime is an RFC 3339 time in the past.
	First time.Time
	// Every is how the schedule repeats; the zero Period fires once.
	Every Period
	// Repeats is the number of fires allowed: 1 for a one-shot schedule, n
	// for "R<n>/...", -1 when unbounded.
	Repeats int
	// Expires ends the schedule: nothing fires at or after it. Zero means no TTL.
	Expires time.Time
	// Raised is set by ParseStored when the period is shorter than
	// MinPeriod: the schedule repeats every MinPeriod instead. Parse never
	// sets it.
	Raised bool
}

// MinPeriod is the shortest period Parse accepts. A shorter one would fire a
// reminder (and write its next due time) hundreds of times a second. A cron
// schedule cannot go below it: its finest field is seconds.
const MinPeriod = 10 * time.Millisecond

// DueTimeGranularity is the shortest positive due time Parse accepts when
// the due time is a duration; zero (or an empty dueTime) means now. A due
// time given as an RFC 3339 time is an instant and may name any nanosecond.
const DueTimeGranularity = time.Millisecond

// Parse parses a registration's dueTime, period and ttl, registered at now.
//
//   - dueTime: a Go duration ("1m30s"), an ISO 8601 duration ("PT1M30S",
//     "P1D"), or an RFC 3339 time; empty means now. Durations count from now.
//   - period: see ParsePeriod. A cron schedule fires only at the instants it
//     matches, so First is its first match at or after the due time.
//   - ttl: an RFC 3339 time, or a Go or ISO 8601 duration counted from First.
//     It must be after now and after First.
//
// A period must be at least MinPeriod, and a due time given as a duration
// zero or at least DueTimeGranularity. Absolute times must lie within 100
// years of now. Parse depends only on its arguments: storing the registration
// time with the three strings is enough to rebuild the same Spec later (with
// ParseStored, which also takes registrations stored before these limits).
// Errors are *FieldError; the fields are checked in the order dueTime,
// period, ttl and the first bad one is reported.
func Parse(now time.Time, dueTime, period, ttl string) (Spec, error) {
	return parse(now, dueTime, period, ttl, true)
}

// ParseStored rebuilds the Spec of a stored registration. It is Parse,
// except that it takes what Parse accepted before MinPeriod and
// DueTimeGranularity were enforced, so that such a registration keeps firing
// rather than being dropped: a due time below the granularity stands, and a
// fixed period shorter than MinPeriod becomes MinPeriod (Spec.Raised says so;
// Period and Every.String() keep the text as stored).
func ParseStored(registered time.Time, dueTime, period, ttl string) (Spec, error) {
	return parse(registered, dueTime, period, ttl, false)
}

func parse(now time.Time, dueTime, period, ttl string, strict bool) (Spec, error) {
	now = now.UTC()
	s := Spec{DueTime: dueTime, Period: period, TTL: ttl}
	due, reason := parseDueTime(now, strings.TrimSpace(dueTime), strict)
	if reason != "" {
		return Spec{}, &FieldError{Field: "dueTime", Value: dueTime, Reason: reason}
	}
	var err error
	if s.Every, s.Repeats, err = ParsePeriod(period); err != nil {
		return Spec{}, err
	}
	if s.Every.kind == kindFixed && s.Every.fixed < MinPeriod {
		// Calendar periods are at least 28 days and cron ones at least a
		// second; only a fixed length can be too short.
		if strict {
			return Spec{}, &FieldError{Field: "period", Value: period,
				Reason: "must be at least " + MinPeriod.String() + ", the shortest period"}
		}
		s.Every.fixed = MinPeriod
		s.Raised = true
	}
	s.First = due
	if s.Every.kind == kindCron {
		// Next is strictly after its argument; step back so that a match at
		// exactly the due time counts.
		s.First = cronNext(s.Every.cron, due.Add(-time.Nanosecond))
		if s.First.IsZero() {
			return Spec{}, &FieldError{Field: "period", Value: period,
				Reason: "never fires after the due time " + due.Format(time.RFC3339)}
		}
	}
	if s.Expires, reason = parseTTL(now, s.First, strings.TrimSpace(ttl)); reason != "" {
		return Spec{}, &FieldError{Field: "ttl", Value: ttl, Reason: reason}
	}
	return s, nil
}

// NextFire returns when the schedule fires next, given that fired fires have
// been delivered, the last of them scheduled at last, and the clock reads now.
// With fired == 0 it returns First (last and now are not used). Otherwise it
// returns the first fire time after now: times between last and now were
// missed, and the fire just delivered stands for them; skipped counts them
// (see Period.NextAfter). Only delivered fires count against Repeats. ok is
// false when the schedule is over: it fires once, its repetitions are used up,
// the next time is at or after Expires, or a cron schedule stops matching.
func (s Spec) NextFire(fired int, last, now time.Time) (next time.Time, skipped int64, ok bool) {
	if fired <= 0 {
		return s.First, 0, !s.Expired(s.First)
	}
	if s.Every.IsZero() || (s.Repeats >= 0 && fired >= s.Repeats) {
		return time.Time{}, 0, false
	}
	next, skipped = s.Every.NextAfter(last, now)
	if next.IsZero() || s.Expired(next) {
		return time.Time{}, skipped, false
	}
	return next, skipped, true
}

// Expired reports whether a fire at t is barred by the TTL (t is at or after Expires).
func (s Spec) Expired(t time.Time) bool {
	return !s.Expires.IsZero() && !t.Before(s.Expires)
}

// reasonTimeForm is the rejection of text that is neither a duration nor a time.
const reasonTimeForm = "want a Go duration (1m30s), an ISO 8601 duration (PT1M30S) or an RFC 3339 time (2030-01-02T15:04:05Z)"

// parseDueTime returns the due time s denotes at now (both in UTC). When
// strict, a duration must be zero or at least DueTimeGranularity.
func parseDueTime(now time.Time, s string, strict bool) (time.Time, string) {
	if s == "" {
		return now, ""
	}
	if looksLikeTime(s) {
		return parseAbsolute(now, s)
	}
	sp, reason := parseSpan(s)
	if reason == reasonNotDuration {
		reason = reasonTimeForm
	}
	if reason != "" {
		return time.Time{}, reason
	}
	if strict && sp.years == 0 && sp.months == 0 && sp.days == 0 && sp.fixed > 0 && sp.fixed < DueTimeGranularity {
		return time.Time{}, "is below " + DueTimeGranularity.String() + "; use an empty dueTime or 0s to fire now"
	}
	return sp.addTo(now), ""
}

// parseTTL returns the expiry s denotes for a schedule registered at now that
// first fires at first; the zero time when s is empty.
func parseTTL(now, first time.Time, s string) (time.Time, string) {
	if s == "" {
		return time.Time{}, ""
	}
	var expires time.Time
	if looksLikeTime(s) {
		var reason string
		if expires, reason = parseAbsolute(now, s); reason != "" {
			return time.Time{}, reason
		}
	} else {
		sp, reason := parseSpan(s)
		switch {
		case reason == reasonNotDuration:
			return time.Time{}, reasonTimeForm
		case reason == reasonNegative || (reason == "" && sp.isZero()):
			return time.Time{}, "must be positive"
		case reason != "":
			return time.Time{}, reason
		}
		expires = sp.addTo(first)
	}
	if !expires.After(now) {
		return time.Time{}, "is in the past (expires " + expires.Format(time.RFC3339Nano) + ")"
	}
	if !expires.After(first) {
		return time.Time{}, "is not after the first fire at " + first.Format(time.RFC3339Nano)
	}
	return expires, ""
}

// looksLikeTime reports whether s starts like an RFC 3339 date ("2030-").
// No duration form starts with four digits and a hyphen.
func looksLikeTime(s string) bool {
	return len(s) >= 5 && isDigit(s[0]) && isDigit(s[1]) && isDigit(s[2]) && isDigit(s[3]) && s[4] == '-'
}

// parseAbsolute parses an RFC 3339 time lying within maxDistance of now.
func parseAbsolute(now time.Time, s string) (time.Time, string) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, "want an RFC 3339 time such as 2030-01-02T15:04:05Z"
	}
	t = t.UTC()
	if d := t.Sub(now); d > maxDistance || d < -maxDistance {
		return time.Time{}, "is more than 100 years from now"
	}
	return t, ""
}
