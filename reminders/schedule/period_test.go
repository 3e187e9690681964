package schedule

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // CRON_TZ tests must not depend on the machine's zone database
)

// base is a Wednesday at the end of a month in a leap year.
var base = time.Date(2024, time.January, 31, 10, 0, 0, 0, time.UTC)

func date(y int, m time.Month, d, h, min, s int) time.Time {
	return time.Date(y, m, d, h, min, s, 0, time.UTC)
}

func TestParsePeriod(t *testing.T) {
	tests := []struct {
		in      string
		repeats int
		next    time.Time // Next(base); zero for the zero Period
	}{
		// Empty: fire once.
		{"", 1, time.Time{}},
		{"   ", 1, time.Time{}},
		// Go durations.
		{"10s", -1, base.Add(10 * time.Second)},
		{"1h30m", -1, base.Add(90 * time.Minute)},
		{"500ms", -1, base.Add(500 * time.Millisecond)},
		{"1.5h", -1, base.Add(90 * time.Minute)},
		{" 10s\t", -1, base.Add(10 * time.Second)},
		{"876600h", -1, base.Add(876600 * time.Hour)},
		// ISO 8601, each component.
		{"PT10S", -1, base.Add(10 * time.Second)},
		{"PT1M30S", -1, base.Add(90 * time.Second)},
		{"PT2M", -1, base.Add(2 * time.Minute)},
		{"PT1H", -1, base.Add(time.Hour)},
		{"P1D", -1, base.Add(24 * time.Hour)},
		{"P1W", -1, base.Add(7 * 24 * time.Hour)},
		{"P1W2D", -1, base.Add(9 * 24 * time.Hour)},
		{"P1M", -1, date(2024, time.March, 2, 10, 0, 0)}, // 31 February 2024 is 2 March
		{"P1Y", -1, date(2025, time.January, 31, 10, 0, 0)},
		{"P1Y2M3DT4H5M6S", -1, date(2025, time.April, 3, 14, 5, 6)}, // 31 March 2025 + 3 days
		{"P0Y1MT1H", -1, date(2024, time.March, 2, 11, 0, 0)},
		{"+PT1S", -1, base.Add(time.Second)},
		{"P36525D", -1, base.Add(36525 * 24 * time.Hour)},
		{"P100Y", -1, date(2124, time.January, 31, 10, 0, 0)},
		// Fractions on the last time component.
		{"PT0.5S", -1, base.Add(500 * time.Millisecond)},
		{"PT1,25S", -1, base.Add(1250 * time.Millisecond)},
		{"PT1.5M", -1, base.Add(90 * time.Second)},
		{"PT1.5H", -1, base.Add(90 * time.Minute)},
		{"PT0.000000001S", -1, base.Add(time.Nanosecond)},
		{"PT1.0000000009S", -1, base.Add(time.Second)}, // below a nanosecond is truncated
		{"PT0.33333333333333333333333H", -1, base.Add(20*time.Minute - time.Nanosecond)},
		{"P1DT0.5S", -1, base.Add(24*time.Hour + 500*time.Millisecond)},
		// Repetitions.
		{"R5/PT10S", 5, base.Add(10 * time.Second)},
		{"R1/P1D", 1, base.Add(24 * time.Hour)},
		{"R/PT1S", -1, base.Add(time.Second)},
		{"R2147483647/PT1S", math.MaxInt32, base.Add(time.Second)},
		{"R007/PT1S", 7, base.Add(time.Second)},
		{"R3/P1M", 3, date(2024, time.March, 2, 10, 0, 0)},
		// Cron: @every is a fixed duration.
		{"@every 10s", -1, base.Add(10 * time.Second)},
		{"@every 1h30m", -1, base.Add(90 * time.Minute)},
		{"@every 500ms", -1, base.Add(500 * time.Millisecond)},
		{"@every\t2s", -1, base.Add(2 * time.Second)},
		// Cron: five fields, six fields, descriptors, time zones.
		{"0 * * * *", -1, date(2024, time.January, 31, 11, 0, 0)},
		{"*/15 * * * *", -1, date(2024, time.January, 31, 10, 15, 0)},
		{"*/15 * * * * *", -1, date(2024, time.January, 31, 10, 0, 15)},
		{"30 0 12 * * *", -1, date(2024, time.January, 31, 12, 0, 30)},
		{"0 9 * * mon-fri", -1, date(2024, time.February, 1, 9, 0, 0)},
		{"0 0 1 jan *", -1, date(2025, time.January, 1, 0, 0, 0)},
		{"0 0 29 2 *", -1, date(2024, time.February, 29, 0, 0, 0)},
		{"@hourly", -1, date(2024, time.January, 31, 11, 0, 0)},
		{"@daily", -1, date(2024, time.February, 1, 0, 0, 0)},
		{"@midnight", -1, date(2024, time.February, 1, 0, 0, 0)},
		{"@weekly", -1, date(2024, time.February, 4, 0, 0, 0)}, // Sunday
		{"@monthly", -1, date(2024, time.February, 1, 0, 0, 0)},
		{"@yearly", -1, date(2025, time.January, 1, 0, 0, 0)},
		{"@annually", -1, date(2025, time.January, 1, 0, 0, 0)},
		{"CRON_TZ=America/New_York 0 9 * * *", -1, date(2024, time.January, 31, 14, 0, 0)},
		{"TZ=Asia/Kolkata 30 9 * * *", -1, date(2024, time.February, 1, 4, 0, 0)},
		{"CRON_TZ=Europe/Paris @daily", -1, date(2024, time.January, 31, 23, 0, 0)},
		{"TZ=UTC @every 5s", -1, base.Add(5 * time.Second)},
	}
	for _, tt := range tests {
		p, repeats, err := ParsePeriod(tt.in)
		if err != nil {
			t.Errorf("ParsePeriod(%q): %v", tt.in, err)
			continue
		}
		if got := p.String(); got != tt.in {
			t.Errorf("ParsePeriod(%q).String() = %q", tt.in, got)
		}
		if repeats != tt.repeats {
			t.Errorf("ParsePeriod(%q) repeats = %d, want %d", tt.in, repeats, tt.repeats)
		}
		if p.IsZero() != tt.next.IsZero() {
			t.Errorf("ParsePeriod(%q).IsZero() = %v", tt.in, p.IsZero())
		}
		got := p.Next(base)
		if !got.Equal(tt.next) {
			t.Errorf("ParsePeriod(%q).Next(%v) = %v, want %v", tt.in, base, got, tt.next)
		}
		if !got.IsZero() && got.Location() != time.UTC {
			t.Errorf("ParsePeriod(%q).Next returned location %v, want UTC", tt.in, got.Location())
		}
	}
}

func TestParsePeriodErrors(t *testing.T) {
	const (
		positive = "must be positive"
		notValid = "want a Go duration (90s), an ISO 8601 duration"
		isoForm  = "want an ISO 8601 duration"
		repForm  = "want repetitions as R<n>/"
		tooLong  = "longer than 100 years"
		badCron  = "invalid cron expression"
	)
	tests := []struct{ in, reason string }{
		// Repetitions.
		{"R0/PT1S", "repetitions must be at least 1"},
		{"R00/PT1S", "repetitions must be at least 1"},
		{"R2147483648/PT1S", "repetitions must be at most 2147483647"},
		{"R99999999999999999999999/PT1S", "repetitions must be at most 2147483647"},
		{"R-1/PT1S", repForm},
		{"R+1/PT1S", repForm},
		{"Rx/PT1S", repForm},
		{"R5", repForm},
		{"R5/", repForm},
		{"R5/10s", repForm},
		{"R5/R5/PT1S", repForm},
		{"R5/P", isoForm},
		{"R5/-PT1S", repForm},
		// Zero and negative.
		{"0", positive},
		{"0s", positive},
		{"PT0S", positive},
		{"P0D", positive},
		{"P0Y0M0W0DT0H0M0S", positive},
		{"PT0.0000000001S", positive},
		{"-1s", positive},
		{"-PT1S", positive},
		{"R5/PT0S", positive},
		// Not a duration.
		{"abc", notValid},
		{"10", notValid},
		{"1x", notValid},
		{"pt10s", notValid},
		{"-", notValid},
		{"1h-1m", notValid},
		// Malformed ISO 8601.
		{"P", isoForm},
		{"PT", isoForm},
		{"P1DT", isoForm},
		{"P1", isoForm},
		{"P1S", isoForm},
		{"PT1D", isoForm},
		{"PT1Y", isoForm},
		{"P1M1Y", isoForm},
		{"P1D1W", isoForm},
		{"P1D1D", isoForm},
		{"PT1S1M", isoForm},
		{"PT1HT1M", isoForm},
		{"P1DTT1H", isoForm},
		{"PT.5S", isoForm},
		{"PT1.S", isoForm},
		{"PT1..5S", isoForm},
		{"P-1D", isoForm},
		{"PT1h", isoForm},
		{"P1DX", isoForm},
		{"P1.5D", "fractions are only allowed on hours, minutes and seconds"},
		{"P1.5Y", "fractions are only allowed on hours, minutes and seconds"},
		{"PT1.5H30M", "only the last component may have a fraction"},
		{"PT1.5HT", isoForm},
		// Too long.
		{"876601h", tooLong},
		{"P101Y", tooLong},
		{"P1201M", tooLong},
		{"P5219W", tooLong},
		{"P36526D", tooLong},
		{"P100Y1D", tooLong},
		{"P99Y13M", tooLong},
		{"PT876601H", tooLong},
		{"PT52596001M", tooLong},
		{"PT3155760001S", tooLong},
		{"PT876599H60M1S", tooLong},
		{"PT99999999999999999999999S", tooLong},
		{"P36525DT1S", tooLong},
		{"@every 876601h", tooLong},
		// Cron.
		{"0 0 30 2 *", "never fires"},
		{"0 0 31 4,6,9,11 *", "never fires"},
		{", * * * * *", "a field matches nothing"},
		{"* , * * *", "a field matches nothing"},
		{"0 0 ,, * *", "a field matches nothing"},
		{"0 0 * * ,", "a field matches nothing"},
		{"61 * * * *", badCron},
		{"* * *", badCron},
		{"* * * * * * *", badCron},
		{"*/0 * * * *", badCron},
		{"5-1 * * * *", badCron},
		{"@often", badCron},
		{"@Hourly", badCron},
		{"@every", "want @every followed by a Go duration"},
		{"@every10s", "want @every followed by a Go duration"},
		{"@every abc", "want @every followed by a Go duration"},
		{"@every 0s", positive},
		{"@every -1s", positive},
		{"TZ=UTC", "a time zone prefix must be followed by a schedule"},
		{"CRON_TZ=", "a time zone prefix must be followed by a schedule"},
		{"TZ=TZ=TZ=", "a time zone prefix must be followed by a schedule"},
		{"TZ=0", "a time zone prefix must be followed by a schedule"},
		{"TZ= * * * * *", "must name an IANA time zone"},
		{"TZ=Local 0 * * * *", "must name an IANA time zone"},
		{"TZ=Mars/Olympus 0 * * * *", `unknown time zone "Mars/Olympus"`},
		{"TZ=../../etc/passwd 0 * * * *", "unknown time zone"},
		{"TZ=UTC TZ=UTC * * * * *", "more than one time zone prefix"},
		{"TZ=UTC CRON_TZ=UTC", "more than one time zone prefix"},
		{"CRON_TZ=UTC 0 0 30 2 *", "never fires"},
	}
	for _, tt := range tests {
		p, repeats, err := ParsePeriod(tt.in)
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("ParsePeriod(%q) = %v, %d, %v; want a *FieldError", tt.in, p, repeats, err)
			continue
		}
		if fe.Field != "period" || fe.Value != tt.in {
			t.Errorf("ParsePeriod(%q): error names %s %q", tt.in, fe.Field, fe.Value)
		}
		if !strings.Contains(fe.Reason, tt.reason) {
			t.Errorf("ParsePeriod(%q) reason %q, want it to contain %q", tt.in, fe.Reason, tt.reason)
		}
	}
}

func TestFieldErrorMessage(t *testing.T) {
	_, _, err := ParsePeriod("R0/PT1S")
	if got, want := err.Error(), `period "R0/PT1S": repetitions must be at least 1`; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}

func mustPeriod(t testing.TB, s string) Period {
	t.Helper()
	p, _, err := ParsePeriod(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNextCalendarMonthEnd(t *testing.T) {
	tests := []struct {
		period string
		from   time.Time
		want   []time.Time // successive Next results
	}{
		{"P1M", date(2023, time.January, 31, 8, 0, 0), []time.Time{
			date(2023, time.March, 3, 8, 0, 0), // 31 February 2023 is 3 March
			date(2023, time.April, 3, 8, 0, 0),
			date(2023, time.May, 3, 8, 0, 0),
		}},
		{"P1M", date(2024, time.March, 31, 0, 0, 0), []time.Time{
			date(2024, time.May, 1, 0, 0, 0), // 31 April is 1 May
			date(2024, time.June, 1, 0, 0, 0),
		}},
		{"P1M", date(2024, time.January, 15, 0, 0, 0), []time.Time{
			date(2024, time.February, 15, 0, 0, 0),
			date(2024, time.March, 15, 0, 0, 0),
		}},
		{"P1Y", date(2024, time.February, 29, 12, 0, 0), []time.Time{
			date(2025, time.March, 1, 12, 0, 0),
			date(2026, time.March, 1, 12, 0, 0),
		}},
		{"P2M", date(2023, time.August, 31, 0, 0, 0), []time.Time{
			date(2023, time.October, 31, 0, 0, 0),
			date(2023, time.December, 31, 0, 0, 0),
			date(2024, time.March, 2, 0, 0, 0), // 31 February 2024
		}},
		{"P1MT12H", date(2024, time.January, 31, 18, 0, 0), []time.Time{
			date(2024, time.March, 3, 6, 0, 0), // 2 March 18:00 + 12 h
			date(2024, time.April, 3, 18, 0, 0),
		}},
		{"P1M1D", date(2024, time.January, 30, 0, 0, 0), []time.Time{
			date(2024, time.March, 2, 0, 0, 0), // 30 Feb + 1 day = 31 Feb = 2 March
			date(2024, time.April, 3, 0, 0, 0),
		}},
	}
	for _, tt := range tests {
		p := mustPeriod(t, tt.period)
		prev := tt.from
		for i, want := range tt.want {
			got := p.Next(prev)
			if !got.Equal(want) {
				t.Errorf("%s: step %d Next(%v) = %v, want %v", tt.period, i+1, prev, got, want)
			}
			prev = got
		}
	}
}

// TestNextUsesUTC checks that days and months are counted in UTC whatever the
// location of the time passed in, so that silos in different zones agree.
func TestNextUsesUTC(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	// The evening before the spring-forward night: local days there are 23 hours.
	prev := time.Date(2024, time.March, 9, 22, 0, 0, 0, ny)
	if got, want := mustPeriod(t, "P1D").Next(prev), prev.Add(24*time.Hour).UTC(); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("P1D.Next(%v) = %v, want %v in UTC", prev, got, want)
	}
	// 31 March 20:30 in New York is already 1 April in UTC, so a month later is 1 May.
	prev = time.Date(2024, time.March, 31, 20, 30, 0, 0, ny)
	if got, want := mustPeriod(t, "P1M").Next(prev), date(2024, time.May, 1, 0, 30, 0); !got.Equal(want) {
		t.Errorf("P1M.Next(%v) = %v, want %v", prev, got, want)
	}
	// A fixed zone gives the same answers as UTC.
	plus2 := time.FixedZone("+02", 2*3600)
	prev = time.Date(2024, time.February, 1, 1, 0, 0, 0, plus2) // 31 January 23:00 UTC
	if got, want := mustPeriod(t, "P1M").Next(prev), date(2024, time.March, 2, 23, 0, 0); !got.Equal(want) {
		t.Errorf("P1M.Next(%v) = %v, want %v", prev, got, want)
	}
}

func TestNextCron(t *testing.T) {
	tests := []struct {
		period     string
		prev, want time.Time
	}{
		{"0 * * * *", date(2024, time.January, 31, 10, 0, 0), date(2024, time.January, 31, 11, 0, 0)},
		{"0 * * * *", date(2024, time.January, 31, 10, 59, 59), date(2024, time.January, 31, 11, 0, 0)},
		{"* * * * * *", base.Add(300 * time.Millisecond), base.Add(time.Second)},
		{"0 0 29 2 *", date(2024, time.March, 1, 0, 0, 0), date(2028, time.February, 29, 0, 0, 0)},
		// 2100 is not a leap year: the next 29 February is eight years on,
		// beyond the six years one call of the cron library searches.
		{"0 0 29 2 *", date(2097, time.March, 1, 0, 0, 0), date(2104, time.February, 29, 0, 0, 0)},
		// Day of month or day of week (both restricted): the 13th or any Friday.
		{"0 0 13 * 5", date(2024, time.September, 1, 0, 0, 0), date(2024, time.September, 6, 0, 0, 0)},
		// 09:00 New York across the spring-forward night: 14:00 UTC, then 13:00 UTC.
		{"CRON_TZ=America/New_York 0 9 * * *", date(2024, time.March, 9, 14, 0, 0), date(2024, time.March, 10, 13, 0, 0)},
		// UTC cron has no DST: 09:00 UTC every day.
		{"0 9 * * *", date(2024, time.March, 9, 9, 0, 0), date(2024, time.March, 10, 9, 0, 0)},
	}
	for _, tt := range tests {
		got := mustPeriod(t, tt.period).Next(tt.prev)
		if !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("%q.Next(%v) = %v, want %v in UTC", tt.period, tt.prev, got, tt.want)
		}
	}
}

func TestZeroPeriod(t *testing.T) {
	var p Period
	if !p.IsZero() || p.String() != "" {
		t.Errorf("zero Period: IsZero %v, String %q", p.IsZero(), p.String())
	}
	if got := p.Next(base); !got.IsZero() {
		t.Errorf("zero Period.Next = %v, want zero", got)
	}
	if got, n := p.NextAfter(base, base.Add(time.Hour)); !got.IsZero() || n != 0 {
		t.Errorf("zero Period.NextAfter (prev before now) = %v, %d; want zero, 0", got, n)
	}
	if got, n := p.NextAfter(base, base.Add(-time.Hour)); !got.Equal(base) || n != 0 {
		t.Errorf("zero Period.NextAfter (prev after now) = %v, %d; want %v, 0", got, n, base)
	}
}

func TestNextAfter(t *testing.T) {
	y2020 := date(2020, time.January, 1, 0, 0, 0)
	tests := []struct {
		name, period string
		prev, now    time.Time
		want         time.Time
		skipped      int64
	}{
		{"prev after now", "10s", base, base.Add(-time.Second), base, 0},
		{"on time", "10s", base, base, base.Add(10 * time.Second), 0},
		{"late within the period", "10s", base, base.Add(9 * time.Second), base.Add(10 * time.Second), 0},
		{"now on a fire time", "10s", base, base.Add(30 * time.Second), base.Add(40 * time.Second), 3},
		{"between fire times", "10s", base, base.Add(35 * time.Second), base.Add(40 * time.Second), 3},
		{"1s after a leap year of downtime", "1s", y2020, y2020.Add(366*24*time.Hour + 500*time.Millisecond),
			y2020.Add(366*24*time.Hour + time.Second), 366 * 24 * 3600},
		// 1900-01-01 to 2200-01-01 is 300×365 days plus 73 leap days, beyond
		// the 292 years a time.Duration can hold.
		{"hourly over 300 years", "1h", date(1900, time.January, 1, 0, 0, 0), date(2200, time.January, 1, 0, 0, 0),
			date(2200, time.January, 1, 1, 0, 0), (300*365 + 73) * 24},
		{"1ns over 8000 years", "PT0.000000001S", date(1, time.January, 1, 0, 0, 0), date(9999, time.January, 1, 0, 0, 0),
			date(9999, time.January, 1, 0, 0, 0).Add(time.Nanosecond), math.MaxInt64},
		{"P1D is 24 h", "P1D", y2020, y2020.Add(100*24*time.Hour + time.Minute), y2020.Add(101 * 24 * time.Hour), 100},
		{"calendar month end", "P1M", date(2023, time.January, 31, 0, 0, 0), date(2023, time.June, 15, 0, 0, 0),
			date(2023, time.July, 3, 0, 0, 0), 4}, // 3 March, 3 April, 3 May, 3 June skipped
		{"calendar 100 years", "P1M", date(2000, time.January, 15, 0, 0, 0), date(2100, time.January, 15, 0, 0, 0),
			date(2100, time.February, 15, 0, 0, 0), 1200},
		{"cron", "0 * * * *", date(2024, time.January, 31, 10, 0, 0), date(2024, time.January, 31, 15, 30, 0),
			date(2024, time.January, 31, 16, 0, 0), 5},
		{"cron on a fire time", "0 * * * *", date(2024, time.January, 31, 10, 0, 0), date(2024, time.January, 31, 15, 0, 0),
			date(2024, time.January, 31, 16, 0, 0), 5},
		{"cron every second after a year", "* * * * * *", y2020, y2020.Add(366*24*time.Hour + 300*time.Millisecond),
			y2020.Add(366*24*time.Hour + time.Second), MaxCronSkips},
	}
	for _, tt := range tests {
		got, skipped := mustPeriod(t, tt.period).NextAfter(tt.prev, tt.now)
		if !got.Equal(tt.want) || skipped != tt.skipped {
			t.Errorf("%s: %q.NextAfter(%v, %v) = %v, %d; want %v, %d",
				tt.name, tt.period, tt.prev, tt.now, got, skipped, tt.want, tt.skipped)
		}
	}
}

// TestNextAfterMatchesIteration compares NextAfter with stepping Next one
// period at a time, over random gaps.
func TestNextAfterMatchesIteration(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	periods := []string{"1s", "7s", "PT0.3S", "1h", "P1D", "P1W", "P1M", "P1MT1H", "P1Y", "P1M1D",
		"*/7 * * * * *", "0 */2 * * *", "@daily", "CRON_TZ=Europe/London 30 1 * * *"}
	for _, s := range periods {
		p := mustPeriod(t, s)
		for range 200 {
			prev := base.Add(time.Duration(rng.Int64N(int64(365 * 24 * time.Hour))))
			if p.kind == kindCron {
				prev = p.Next(prev) // cron sequences hold matching instants
			}
			// Gaps up to about 40 periods.
			span := p.Next(prev).Sub(prev) * 40
			now := prev.Add(time.Duration(rng.Int64N(int64(span))))
			wantNext, wantSkipped := prev, int64(0)
			for !wantNext.After(now) {
				wantNext = p.Next(wantNext)
				wantSkipped++
			}
			if wantSkipped > 0 {
				wantSkipped--
			}
			got, skipped := p.NextAfter(prev, now)
			if !got.Equal(wantNext) || skipped != wantSkipped {
				t.Fatalf("%q.NextAfter(%v, %v) = %v, %d; stepping gives %v, %d",
					s, prev, now, got, skipped, wantNext, wantSkipped)
			}
		}
	}
}

// TestParsePeriodConcurrent runs parsers side by side; under -race it checks
// the shared time-zone cache.
func TestParsePeriodConcurrent(t *testing.T) {
	zones := []string{"Europe/Paris", "Asia/Tokyo", "America/Chicago", "Africa/Cairo"}
	done := make(chan error)
	for _, z := range zones {
		go func() {
			var err error
			for range 50 {
				if _, _, err = ParsePeriod("CRON_TZ=" + z + " 0 9 * * *"); err != nil {
					break
				}
			}
			done <- err
		}()
	}
	for range zones {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
