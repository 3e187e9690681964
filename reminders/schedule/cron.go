package schedule

import (
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/robfig/cron/v3"
)

// cronParser accepts five fields, an optional leading seconds field, and
// descriptors (@hourly, @daily, ...). Time-zone prefixes and @every are
// handled before it is called.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// cronWindows is how many times cronNext extends the search beyond the six
// calendar years one call of the cron library covers. Four windows (24 years)
// cover every schedule that fires at all, including 29 February across a
// skipped century leap year.
const cronWindows = 4

// cronReference is where the parser looks for a first fire to tell a schedule
// that never fires (such as 30 February) from one that does.
var cronReference = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// looksLikeCron reports whether s (trimmed, non-empty) is meant as a cron
// expression rather than a duration: it has a time-zone prefix, starts with
// '@', or has spaces between fields.
func looksLikeCron(s string) bool {
	return s[0] == '@' || strings.IndexFunc(s, unicode.IsSpace) >= 0 ||
		strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=")
}

// parseCron parses a cron expression. "@every <duration>" yields a fixed
// period in every; anything else yields a schedule evaluated in UTC or in the
// zone named by a CRON_TZ=/TZ= prefix.
func parseCron(s string) (sched *cron.SpecSchedule, every time.Duration, reason string) {
	loc := time.UTC
	if name, rest, ok := cutTimeZone(s); ok {
		if rest == "" {
			return nil, 0, "a time zone prefix must be followed by a schedule"
		}
		if name == "" || name == "Local" {
			return nil, 0, "the time zone prefix must name an IANA time zone such as Europe/Paris"
		}
		if _, _, again := cutTimeZone(rest); again {
			return nil, 0, "has more than one time zone prefix"
		}
		var err error
		if loc, err = loadLocation(name); err != nil {
			return nil, 0, fmt.Sprintf("unknown time zone %q", name)
		}
		s = rest
	}
	if arg, ok := strings.CutPrefix(s, "@every"); ok {
		every, reason = parseEvery(arg)
		return nil, every, reason
	}
	sched, reason = parseCronFields(s)
	if reason != "" {
		return nil, 0, reason
	}
	sched.Location = loc
	if cronNext(sched, cronReference).IsZero() {
		return nil, 0, "never fires"
	}
	return sched, 0, ""
}

// parseEvery parses the argument of "@every": whitespace, then a positive Go duration.
func parseEvery(arg string) (time.Duration, string) {
	const form = "want @every followed by a Go duration, such as @every 10s"
	trimmed := strings.TrimLeftFunc(arg, unicode.IsSpace)
	if trimmed == arg || trimmed == "" {
		return 0, form
	}
	d, err := time.ParseDuration(strings.TrimSpace(trimmed))
	switch {
	case err != nil:
		return 0, form
	case d <= 0:
		return 0, "must be positive"
	case d > maxSpan:
		return 0, reasonTooLong
	}
	return d, ""
}

// parseCronFields runs the cron library's parser. The library is known to
// panic on some malformed input, so a panic is turned into a rejection.
func parseCronFields(s string) (sched *cron.SpecSchedule, reason string) {
	defer func() {
		if r := recover(); r != nil {
			sched, reason = nil, "invalid cron expression"
		}
	}()
	parsed, err := cronParser.Parse(s)
	if err != nil {
		return nil, "invalid cron expression: " + err.Error()
	}
	spec, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		return nil, "invalid cron expression"
	}
	// A field such as "," parses to an empty set. Such a schedule never
	// fires, and the library would step through six years second by second
	// to find that out.
	for _, field := range [...]uint64{spec.Second, spec.Minute, spec.Hour, spec.Dom, spec.Month, spec.Dow} {
		if field&^cronStarBit == 0 {
			return nil, "invalid cron expression: a field matches nothing"
		}
	}
	return spec, ""
}

// cronStarBit is the flag the cron library sets in a field written as * or ?.
const cronStarBit = 1 << 63

// cutTimeZone splits "CRON_TZ=<zone> <rest>" or "TZ=<zone> <rest>".
func cutTimeZone(s string) (zone, rest string, ok bool) {
	after, found := strings.CutPrefix(s, "CRON_TZ=")
	if !found {
		if after, found = strings.CutPrefix(s, "TZ="); !found {
			return "", "", false
		}
	}
	end := strings.IndexFunc(after, unicode.IsSpace)
	if end < 0 {
		return after, "", true
	}
	return after[:end], strings.TrimSpace(after[end:]), true
}

// locations caches loaded time zones: loading reads the zone database, and
// cron periods may be parsed again each time a reminder is loaded.
var locations sync.Map // zone name → *time.Location

func loadLocation(name string) (*time.Location, error) {
	if loc, ok := locations.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	locations.Store(name, loc)
	return loc, nil
}

// cronNext returns the first instant after t that the schedule matches, in
// UTC, or the zero time if there is none within cronWindows × 6 years.
func cronNext(s *cron.SpecSchedule, t time.Time) time.Time {
	from := t
	for range cronWindows {
		n := s.Next(from)
		if n.IsZero() {
			// The library searched the calendar years from's year to five
			// years later; carry on from the end of that span.
			y := from.In(s.Location).Year()
			from = time.Date(y+6, time.January, 1, 0, 0, 0, 0, s.Location).Add(-time.Second)
			continue
		}
		if !n.After(t) {
			// The library promises an instant after its argument; should a
			// time-zone transition ever break that, step past t and retry.
			from = t.Add(time.Second)
			continue
		}
		return n.UTC()
	}
	return time.Time{}
}
