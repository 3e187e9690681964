package schedule

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// reasonRepetitionForm rejects a malformed "R<n>/" prefix.
const reasonRepetitionForm = "want repetitions as R<n>/<ISO 8601 duration>, such as R5/PT10S"

// periodKind says how a Period advances.
type periodKind uint8

const (
	kindNone     periodKind = iota // fires once
	kindFixed                      // a fixed number of nanoseconds
	kindCalendar                   // years and months via AddDate in UTC, then a fixed part
	kindCron                       // a cron schedule
)

// maxCalendarSteps bounds the iteration of NextAfter for calendar periods. A
// calendar period is at least 28 days long, so the bound is only reached for
// gaps of more than about ten thousand years.
const maxCalendarSteps = 1 << 17

// MaxCronSkips is the most skipped fires NextAfter counts for a cron period.
// The returned next fire time is exact regardless.
const MaxCronSkips = 1000

// Period says how a schedule repeats: a fixed duration, a calendar duration
// (ISO 8601 years or months), or a cron schedule. The zero Period means the
// schedule fires once. All fire times are computed and returned in UTC, so
// every silo computes the same schedule whatever its local time zone.
type Period struct {
	text string
	kind periodKind
	// fixed is the whole period for kindFixed, and the part added after the
	// calendar part for kindCalendar.
	fixed               time.Duration
	years, months, days int                // kindCalendar; weeks are in days
	cron                *cron.SpecSchedule // kindCron
}

// ParsePeriod parses a period as docs/api.md describes it:
//   - a Go duration: "90s", "1h30m";
//   - an ISO 8601 duration, optionally with repetitions: "PT1M30S", "P1M",
//     "R5/PT10S" (repeats 5), "R/PT10S" (unbounded). Years and months are
//     calendar arithmetic (time.AddDate in UTC); weeks, days, hours, minutes
//     and seconds are fixed lengths (a day is 24 hours in UTC);
//   - a cron expression: five fields, six with a leading seconds field, or a
//     descriptor (@hourly, @daily, @weekly, @monthly, @yearly, @every 10s),
//     evaluated in UTC unless prefixed with CRON_TZ=<zone> or TZ=<zone>.
//     "@every d" is the same period as "d".
//
// An empty (or all-space) period is the zero Period: the schedule fires once,
// and repeats is 1. Otherwise repeats is the number of fires the repetitions
// allow, or -1 when they are unbounded. Errors are *FieldError for "period".
func ParsePeriod(s string) (p Period, repeats int, err error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Period{text: s}, 1, nil
	}
	p, repeats, reason := parsePeriod(t)
	if reason != "" {
		return Period{}, 0, &FieldError{Field: "period", Value: s, Reason: reason}
	}
	p.text = s
	return p, repeats, nil
}

func parsePeriod(s string) (p Period, repeats int, reason string) {
	if looksLikeCron(s) {
		sched, every, reason := parseCron(s)
		if reason != "" {
			return Period{}, 0, reason
		}
		if sched == nil {
			return Period{kind: kindFixed, fixed: every}, -1, ""
		}
		return Period{kind: kindCron, cron: sched}, -1, ""
	}
	repeats = -1
	if rest, ok := strings.CutPrefix(s, "R"); ok {
		count, duration, found := strings.Cut(rest, "/")
		if !found {
			return Period{}, 0, reasonRepetitionForm
		}
		if count != "" {
			n, err := strconv.ParseUint(count, 10, 32)
			switch {
			case err != nil && strings.Trim(count, "0123456789") == "":
				return Period{}, 0, "repetitions must be at most " + strconv.Itoa(math.MaxInt32)
			case err != nil:
				return Period{}, 0, reasonRepetitionForm
			case n == 0:
				return Period{}, 0, "repetitions must be at least 1"
			case n > math.MaxInt32:
				return Period{}, 0, "repetitions must be at most " + strconv.Itoa(math.MaxInt32)
			}
			repeats = int(n)
		}
		if !strings.HasPrefix(duration, "P") {
			return Period{}, 0, reasonRepetitionForm
		}
		s = duration
	}
	sp, reason := parseSpan(s)
	switch {
	case reason == reasonNegative:
		return Period{}, 0, "must be positive"
	case reason == reasonNotDuration:
		return Period{}, 0, "want a Go duration (90s), an ISO 8601 duration (PT90S, R5/PT10S) or a cron expression (0 * * * *, @hourly)"
	case reason != "":
		return Period{}, 0, reason
	case sp.isZero():
		return Period{}, 0, "must be positive"
	}
	if sp.years == 0 && sp.months == 0 {
		// In UTC a day is always 24 hours, so this is a fixed length. The
		// limits of parseSpan keep the sum within maxSpan.
		return Period{kind: kindFixed, fixed: time.Duration(sp.days)*24*time.Hour + sp.fixed}, repeats, ""
	}
	return Period{kind: kindCalendar, years: sp.years, months: sp.months, days: sp.days, fixed: sp.fixed}, repeats, ""
}

// IsZero reports whether p is the zero Period (fire once).
func (p Period) IsZero() bool { return p.kind == kindNone }

// String returns the text p was parsed from, exactly as given.
func (p Period) String() string { return p.text }

// Next returns the fire time that follows a fire scheduled at prev, in UTC.
// It is always after prev. It returns the zero time for the zero Period, and
// for a cron schedule that matches no instant in the 24 years after prev.
func (p Period) Next(prev time.Time) time.Time {
	switch p.kind {
	case kindFixed:
		return prev.UTC().Add(p.fixed)
	case kindCalendar:
		return prev.UTC().AddDate(p.years, p.months, p.days).Add(p.fixed)
	case kindCron:
		return cronNext(p.cron, prev)
	}
	return time.Time{}
}

// NextAfter returns the first fire time strictly after now in the sequence
// prev, Next(prev), Next(Next(prev)), ..., and how many fire times of that
// sequence it passed over: those after prev and not after now. When prev is
// already after now it returns prev and 0. It returns the zero time when the
// sequence has no time after now (the zero Period, or a cron schedule that
// stops matching).
//
// Fixed periods take constant time whatever the gap. Calendar periods step one
// period at a time (at most maxCalendarSteps steps; past that, the sequence
// continues from now). Cron periods are exact for next, but count at most
// MaxCronSkips skipped fires.
func (p Period) NextAfter(prev, now time.Time) (next time.Time, skipped int64) {
	if prev.After(now) {
		return prev.UTC(), 0
	}
	switch p.kind {
	case kindFixed:
		return fixedNextAfter(prev, now, p.fixed)
	case kindCalendar:
		t := prev
		for i := int64(0); i < maxCalendarSteps; i++ {
			t = p.Next(t)
			if t.After(now) {
				return t, i
			}
		}
		return p.Next(now), maxCalendarSteps
	case kindCron:
		t := prev
		for i := int64(0); i < MaxCronSkips; i++ {
			t = cronNext(p.cron, t)
			if t.IsZero() || t.After(now) {
				return t, i
			}
		}
		return cronNext(p.cron, now), MaxCronSkips
	}
	return time.Time{}, 0
}

// fixedNextAfter is NextAfter for a fixed period d > 0 with prev <= now.
func fixedNextAfter(prev, now time.Time, d time.Duration) (time.Time, int64) {
	gap := now.Sub(prev)
	if gap < math.MaxInt64 {
		// Sub is exact below its saturation point.
		n := int64(gap / d)
		return prev.UTC().Add(time.Duration(n) * d).Add(d), n
	}
	// A gap of 292 years or more: do the arithmetic on big integers.
	const nanosPerSecond = int64(time.Second)
	total := new(big.Int).Sub(unixNanos(now), unixNanos(prev))
	period := big.NewInt(int64(d))
	n := new(big.Int).Quo(total, period)
	skipped := int64(math.MaxInt64)
	if n.IsInt64() {
		skipped = n.Int64()
	}
	at := n.Add(n, big.NewInt(1))
	at.Mul(at, period)
	at.Add(at, unixNanos(prev))
	sec, nsec := new(big.Int).DivMod(at, big.NewInt(nanosPerSecond), new(big.Int))
	if !sec.IsInt64() {
		return time.Time{}, skipped
	}
	return time.Unix(sec.Int64(), nsec.Int64()).UTC(), skipped
}

// unixNanos returns t as nanoseconds since the Unix epoch, without overflow.
func unixNanos(t time.Time) *big.Int {
	n := big.NewInt(t.Unix())
	n.Mul(n, big.NewInt(int64(time.Second)))
	return n.Add(n, big.NewInt(int64(t.Nanosecond())))
}
