package schedule

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// fuzzBases are instants from which fuzzed periods are evaluated: a month
// end, a leap day, a DST change in several zones, a year end.
var fuzzBases = []time.Time{
	time.Date(2024, time.January, 31, 10, 0, 0, 0, time.UTC),
	time.Date(2024, time.February, 29, 23, 59, 59, 999_999_999, time.UTC),
	time.Date(2024, time.March, 10, 6, 59, 59, 0, time.UTC),
	time.Date(2024, time.October, 27, 0, 30, 0, 0, time.UTC),
	time.Date(2024, time.November, 3, 5, 30, 0, 0, time.UTC),
	time.Date(2099, time.December, 31, 23, 59, 59, 0, time.UTC),
}

var periodSeeds = []string{
	"", " ", "10s", "1h30m", "500ms", "-1s", "0s", "1", "876601h",
	"PT10S", "PT1M30S", "P1Y2M3W4DT5H6M7.5S", "P1M", "P1W", "PT0,5S", "PT1.5H30M", "P", "PT", "-PT1S",
	"R5/PT10S", "R0/PT1S", "R/PT1S", "R2147483648/PT1S", "R5/10s",
	"0 * * * *", "*/15 * * * * *", "0 0 29 2 *", "0 0 30 2 *", "@hourly", "@daily", "@every 10s",
	"@every 0s", "@every", "CRON_TZ=America/New_York 0 9 * * *", "TZ=Europe/London 30 1 * * *",
	"TZ=Australia/Lord_Howe */5 * * * *", "TZ=America/Sao_Paulo 0 0 * * *", "TZ=UTC", "TZ=TZ=TZ=",
	"TZ= * * * * *", "CRON_TZ=UTC TZ=UTC * * * * *", "0 0 13 * 5",
	"1ns", "@every 1ns", "PT0.000000001S", "R5/PT0.009S", "9999999ns", "10ms", "@every 10ms", "* * * * * *",
}

// checkPeriod asserts the invariants of a successfully parsed period.
func checkPeriod(t *testing.T, s string, p Period, repeats int) {
	t.Helper()
	if p.String() != s {
		t.Fatalf("ParsePeriod(%q).String() = %q", s, p.String())
	}
	if p.IsZero() {
		if repeats != 1 {
			t.Fatalf("ParsePeriod(%q): zero period with repeats %d", s, repeats)
		}
		return
	}
	if repeats != -1 && (repeats < 1 || repeats > math.MaxInt32) {
		t.Fatalf("ParsePeriod(%q): repeats %d", s, repeats)
	}
	for _, b := range fuzzBases {
		n := p.Next(b)
		if !n.After(b) {
			t.Fatalf("ParsePeriod(%q).Next(%v) = %v, not after it", s, b, n)
		}
		if n.Sub(b) > maxSpan+24*time.Hour {
			t.Fatalf("ParsePeriod(%q).Next(%v) = %v, more than 100 years on", s, b, n)
		}
		// A downtime of 2.5 periods: NextAfter agrees with stepping.
		n2 := p.Next(n)
		n3 := p.Next(n2)
		now := n2.Add(n3.Sub(n2) / 2)
		got, skipped := p.NextAfter(b, now)
		if !got.Equal(n3) || skipped != 2 {
			t.Fatalf("ParsePeriod(%q).NextAfter(%v, %v) = %v, %d; want %v, 2", s, b, now, got, skipped, n3)
		}
	}
}

func FuzzParsePeriod(f *testing.F) {
	for _, s := range periodSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, repeats, err := ParsePeriod(s)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "period" || fe.Value != s || fe.Reason == "" {
				t.Fatalf("ParsePeriod(%q) error %#v", s, err)
			}
			return
		}
		checkPeriod(t, s, p, repeats)
		checkMinimum(t, s, p)
		// Parsing is deterministic.
		q, r, err := ParsePeriod(s)
		if err != nil || r != repeats || !q.Next(fuzzBases[0]).Equal(p.Next(fuzzBases[0])) {
			t.Fatalf("ParsePeriod(%q) differs on a second call", s)
		}
	})
}

// checkMinimum asserts that a registration with period s (which ParsePeriod
// accepted as p) either is refused for being too short or never fires twice
// within MinPeriod.
func checkMinimum(t *testing.T, s string, p Period) {
	t.Helper()
	short := false
	for _, b := range fuzzBases {
		// From a base, a cron period's next fire may come at once; the
		// gap between two fires is what counts.
		if n := p.Next(b); !p.IsZero() && p.Next(n).Sub(n) < MinPeriod {
			short = true
		}
	}
	spec, err := Parse(fuzzNow, "", s, "")
	if err != nil {
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "period" {
			t.Fatalf("Parse(period %q) error %#v", s, err)
		}
		return
	}
	if short {
		t.Fatalf("Parse(period %q) accepted a period that fires within %v", s, MinPeriod)
	}
	last := spec.First
	for fired := 1; fired <= 3; fired++ {
		next, _, ok := spec.NextFire(fired, last, last)
		if !ok {
			break
		}
		if next.Sub(last) < MinPeriod {
			t.Fatalf("Parse(period %q): fires at %v and %v, within %v", s, last, next, MinPeriod)
		}
		last = next
	}
}

var fuzzNow = time.Date(2024, time.January, 31, 10, 20, 30, 500_000_000, time.UTC)

func FuzzParseDueTime(f *testing.F) {
	for _, s := range []string{"", "0", "1m30s", "500ms", "-1s", "PT1M30S", "P1M", "P1.5D", "R5/PT1S",
		"2030-01-02T15:04:05Z", "2030-01-02T15:04:05.999+05:30", "2020-01-01T00:00:00Z", "2200-01-01T00:00:00Z",
		"2030-13-01T00:00:00Z", "2030-01-02", "abc", "1ns", "999us", "PT0.0001S", "1ms"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, due string) {
		s, err := Parse(fuzzNow, due, "", "")
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "dueTime" || fe.Value != due || fe.Reason == "" {
				t.Fatalf("Parse(dueTime %q) error %#v", due, err)
			}
			return
		}
		if s.DueTime != due || s.Repeats != 1 || !s.Every.IsZero() {
			t.Fatalf("Parse(dueTime %q) = %+v", due, s)
		}
		if s.First.Location() != time.UTC {
			t.Fatalf("Parse(dueTime %q): First %v not in UTC", due, s.First)
		}
		d := s.First.Sub(fuzzNow)
		if d > maxSpan+24*time.Hour || d < -maxSpan {
			t.Fatalf("Parse(dueTime %q): First %v is too far from now", due, s.First)
		}
		if !looksLikeTime(strings.TrimSpace(due)) && (d < 0 || d > 0 && d < DueTimeGranularity) {
			t.Fatalf("Parse(dueTime %q): a duration put First %v at %v from now", due, s.First, d)
		}
		if next, _, ok := s.NextFire(0, time.Time{}, fuzzNow); !ok || !next.Equal(s.First) {
			t.Fatalf("Parse(dueTime %q): NextFire(0) = %v, %v", due, next, ok)
		}
		if _, _, ok := s.NextFire(1, s.First, s.First); ok {
			t.Fatalf("Parse(dueTime %q): a one-shot schedule fires twice", due)
		}
	})
}

func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"", "1h", "0s", "-1s", "PT1H", "P1M", "P1Y", "2030-01-02T15:04:05Z",
		"2020-01-01T00:00:00Z", "2024-01-31T10:21:00Z", "876601h", "R2/PT1S", "abc"} {
		f.Add("1m", s)
		f.Add("", s)
	}
	f.Fuzz(func(t *testing.T, due, ttl string) {
		s, err := Parse(fuzzNow, due, "10s", ttl)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || (fe.Field != "ttl" && fe.Field != "dueTime") || fe.Reason == "" {
				t.Fatalf("Parse(%q, ttl %q) error %#v", due, ttl, err)
			}
			return
		}
		if strings.TrimSpace(ttl) == "" {
			if !s.Expires.IsZero() {
				t.Fatalf("Parse(ttl %q): Expires %v", ttl, s.Expires)
			}
			return
		}
		if !s.Expires.After(fuzzNow) || !s.Expires.After(s.First) || s.Expires.Location() != time.UTC {
			t.Fatalf("Parse(%q, ttl %q): Expires %v, First %v, now %v", due, ttl, s.Expires, s.First, fuzzNow)
		}
		if s.Expired(s.First) || !s.Expired(s.Expires) {
			t.Fatalf("Parse(%q, ttl %q): Expired wrong", due, ttl)
		}
		// Every fire NextFire schedules lies before Expires.
		if next, _, ok := s.NextFire(1, s.First, s.Expires.Add(-time.Nanosecond)); ok && !next.Before(s.Expires) {
			t.Fatalf("Parse(%q, ttl %q): fire at %v, at or after Expires %v", due, ttl, next, s.Expires)
		}
	})
}

// FuzzParse feeds all three fields and a registration time.
func FuzzParse(f *testing.F) {
	for i, p := range periodSeeds {
		f.Add(int64(i)*7_919_000_000_000, "", p, "")
		f.Add(int64(i)*-3_000_000_000_000, "1m", p, "P1D")
	}
	f.Add(int64(0), "2030-01-02T15:04:05Z", "R3/P1M", "2031-01-01T00:00:00Z")
	f.Fuzz(func(t *testing.T, offset int64, due, period, ttl string) {
		// Registration times within ±290 years of 2024.
		registered := fuzzNow.Add(time.Duration(offset))
		s, err := Parse(registered, due, period, ttl)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Reason == "" {
				t.Fatalf("Parse error %#v", err)
			}
			if want := map[string]string{"dueTime": due, "period": period, "ttl": ttl}[fe.Field]; fe.Value != want {
				t.Fatalf("Parse error names %s %q", fe.Field, fe.Value)
			}
			return
		}
		if s.DueTime != due || s.Period != period || s.TTL != ttl || s.Every.String() != period {
			t.Fatalf("Parse(%q, %q, %q) kept %+v", due, period, ttl, s)
		}
		if s.Every.IsZero() != (s.Repeats == 1 && strings.TrimSpace(period) == "") {
			t.Fatalf("Parse(period %q): repeats %d for zero=%v", period, s.Repeats, s.Every.IsZero())
		}
		if !s.Expires.IsZero() && (!s.Expires.After(s.First) || !s.Expires.After(registered)) {
			t.Fatalf("Parse(%q, %q, %q): Expires %v, First %v", due, period, ttl, s.Expires, s.First)
		}
		// Walk a few fires: each is after the last and before Expires.
		last := s.First
		for fired := 1; fired <= 3; fired++ {
			next, skipped, ok := s.NextFire(fired, last, last)
			if !ok {
				break
			}
			if next.Sub(last) < MinPeriod || skipped != 0 || s.Expired(next) {
				t.Fatalf("Parse(%q, %q, %q): fire %d at %v after %v (skipped %d)", due, period, ttl, fired+1, next, last, skipped)
			}
			last = next
		}
		again, err := Parse(registered, due, period, ttl)
		if err != nil || !again.First.Equal(s.First) || !again.Expires.Equal(s.Expires) || again.Repeats != s.Repeats {
			t.Fatalf("Parse(%q, %q, %q) differs on a second call", due, period, ttl)
		}
	})
}

// FuzzNextAfter checks NextAfter against stepping Next for arbitrary gaps.
func FuzzNextAfter(f *testing.F) {
	f.Add(uint8(0), int64(0), int64(0))
	f.Add(uint8(1), int64(-5), int64(1e12))
	f.Add(uint8(4), int64(1e15), int64(9e18))
	f.Add(uint8(7), int64(123456789), int64(3e15))
	periods := []Period{}
	for _, s := range []string{"1ns", "1s", "7s", "PT0.3S", "1h", "P1D", "P1M", "P1MT1H", "P1Y", "P1M1D",
		"*/7 * * * * *", "0 */2 * * *", "@daily", "CRON_TZ=Europe/London 30 1 * * *", "100ms"} {
		periods = append(periods, mustPeriod(f, s))
	}
	f.Fuzz(func(t *testing.T, which uint8, prevOffset, gap int64) {
		p := periods[int(which)%len(periods)]
		prev := fuzzNow.Add(time.Duration(prevOffset))
		now := prev.Add(time.Duration(gap))
		next, skipped := p.NextAfter(prev, now)
		if prev.After(now) {
			if !next.Equal(prev) || skipped != 0 {
				t.Fatalf("%q.NextAfter(%v, %v) = %v, %d; want prev, 0", p, prev, now, next, skipped)
			}
			return
		}
		if !next.After(now) || skipped < 0 {
			t.Fatalf("%q.NextAfter(%v, %v) = %v, %d", p, prev, now, next, skipped)
		}
		// The fire before next is not after now (unless the count saturated).
		if p.kind == kindFixed {
			if next.Add(-p.fixed).After(now) {
				t.Fatalf("%q.NextAfter(%v, %v) = %v: the fire time before it is after now too", p, prev, now, next)
			}
			if skipped < math.MaxInt64/int64(p.fixed) && !next.Equal(prev.Add(time.Duration(skipped+1)*p.fixed)) {
				t.Fatalf("%q.NextAfter(%v, %v) = %v, %d: not on the grid", p, prev, now, next, skipped)
			}
		}
		if skipped >= MaxCronSkips {
			return
		}
		want, count := prev, int64(-1)
		for !want.After(now) {
			want = p.Next(want)
			count++
		}
		if !next.Equal(want) || skipped != count {
			t.Fatalf("%q.NextAfter(%v, %v) = %v, %d; stepping gives %v, %d", p, prev, now, next, skipped, want, count)
		}
	})
}
