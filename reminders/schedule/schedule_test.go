package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// now is the registration time in these tests: 10:20:30.5 UTC on a Wednesday.
var now = time.Date(2024, time.January, 31, 10, 20, 30, 500_000_000, time.UTC)

func TestParseDueTime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
	}{
		{"", now},
		{"  ", now},
		{"0s", now},
		{"0", now},
		{"1m30s", now.Add(90 * time.Second)},
		{"500ms", now.Add(500 * time.Millisecond)},
		{" 10s ", now.Add(10 * time.Second)},
		{"PT0S", now},
		{"PT1M30S", now.Add(90 * time.Second)},
		{"PT0.5S", now.Add(500 * time.Millisecond)},
		{"P1D", now.Add(24 * time.Hour)},
		{"P1W", now.Add(7 * 24 * time.Hour)},
		{"P1M", time.Date(2024, time.March, 2, 10, 20, 30, 500_000_000, time.UTC)},
		{"P1YT1H", time.Date(2025, time.January, 31, 11, 20, 30, 500_000_000, time.UTC)},
		{"2030-01-02T15:04:05Z", time.Date(2030, time.January, 2, 15, 4, 5, 0, time.UTC)},
		{"2030-01-02T15:04:05+02:00", time.Date(2030, time.January, 2, 13, 4, 5, 0, time.UTC)},
		{"2030-01-02T15:04:05.123456789-07:30", time.Date(2030, time.January, 2, 22, 34, 5, 123456789, time.UTC)},
		{"2024-01-31T10:20:30.5Z", now},
		// In the past: fires at once, First keeps the given time.
		{"2020-01-01T00:00:00Z", time.Date(2020, time.January, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		s, err := Parse(now, tt.in, "", "")
		if err != nil {
			t.Errorf("dueTime %q: %v", tt.in, err)
			continue
		}
		if !s.First.Equal(tt.want) || s.First.Location() != time.UTC {
			t.Errorf("dueTime %q: First = %v, want %v in UTC", tt.in, s.First, tt.want)
		}
		if s.DueTime != tt.in || s.Repeats != 1 || !s.Every.IsZero() || !s.Expires.IsZero() {
			t.Errorf("dueTime %q: Spec = %+v", tt.in, s)
		}
	}
}

func TestParseFirstForCron(t *testing.T) {
	tests := []struct {
		due, period string
		want        time.Time
	}{
		{"", "0 * * * *", time.Date(2024, time.January, 31, 11, 0, 0, 0, time.UTC)},
		{"1h", "0 * * * *", time.Date(2024, time.January, 31, 12, 0, 0, 0, time.UTC)},
		// A match exactly at the due time is the first fire.
		{"2024-01-31T12:00:00Z", "0 * * * *", time.Date(2024, time.January, 31, 12, 0, 0, 0, time.UTC)},
		{"2024-01-31T12:00:00.000000001Z", "0 * * * *", time.Date(2024, time.January, 31, 13, 0, 0, 0, time.UTC)},
		{"", "@daily", time.Date(2024, time.February, 1, 0, 0, 0, 0, time.UTC)},
		{"", "CRON_TZ=America/New_York 0 9 * * *", time.Date(2024, time.January, 31, 14, 0, 0, 0, time.UTC)},
		// @every is a fixed period: the first fire is the due time itself.
		{"", "@every 10s", now},
		{"5s", "@every 10s", now.Add(5 * time.Second)},
	}
	for _, tt := range tests {
		s, err := Parse(now, tt.due, tt.period, "")
		if err != nil {
			t.Errorf("dueTime %q, period %q: %v", tt.due, tt.period, err)
			continue
		}
		if !s.First.Equal(tt.want) {
			t.Errorf("dueTime %q, period %q: First = %v, want %v", tt.due, tt.period, s.First, tt.want)
		}
	}
}

func TestParseTTL(t *testing.T) {
	first := now.Add(time.Minute) // dueTime "1m"
	tests := []struct {
		due, ttl string
		want     time.Time
	}{
		{"1m", "", time.Time{}},
		{"1m", "1h", first.Add(time.Hour)},
		{"1m", "1ns", first.Add(time.Nanosecond)},
		{"1m", "PT1H", first.Add(time.Hour)},
		{"1m", "P1D", first.Add(24 * time.Hour)},
		{"1m", "P1M", time.Date(2024, time.March, 2, 10, 21, 30, 500_000_000, time.UTC)},
		{"1m", "2030-01-02T15:04:05+01:00", time.Date(2030, time.January, 2, 14, 4, 5, 0, time.UTC)},
		// A due time in the past with a TTL still in the future.
		{"2024-01-31T10:00:00Z", "1h", time.Date(2024, time.January, 31, 11, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		s, err := Parse(now, tt.due, "10s", tt.ttl)
		if err != nil {
			t.Errorf("dueTime %q, ttl %q: %v", tt.due, tt.ttl, err)
			continue
		}
		if !s.Expires.Equal(tt.want) || s.TTL != tt.ttl {
			t.Errorf("dueTime %q, ttl %q: Expires = %v, want %v", tt.due, tt.ttl, s.Expires, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	const timeForm = "want a Go duration (1m30s), an ISO 8601 duration (PT1M30S) or an RFC 3339 time"
	tests := []struct {
		due, period, ttl string
		field, reason    string
	}{
		// dueTime.
		{"-1s", "", "", "dueTime", "must not be negative"},
		{"-PT1S", "", "", "dueTime", "must not be negative"},
		{"abc", "", "", "dueTime", timeForm},
		{"10", "", "", "dueTime", timeForm},
		{"R5/PT1S", "", "", "dueTime", "repetitions (R<n>/) are only allowed in a period"},
		{"P", "", "", "dueTime", "want an ISO 8601 duration"},
		{"P1.5D", "", "", "dueTime", "fractions are only allowed on hours, minutes and seconds"},
		{"2030-13-01T00:00:00Z", "", "", "dueTime", "want an RFC 3339 time"},
		{"2030-01-02", "", "", "dueTime", "want an RFC 3339 time"},
		{"2030-01-02 15:04:05Z", "", "", "dueTime", "want an RFC 3339 time"},
		{"2030-01-02T15:04:05", "", "", "dueTime", "want an RFC 3339 time"},
		{"2125-01-01T00:00:00Z", "", "", "dueTime", "more than 100 years from now"},
		{"1900-01-01T00:00:00Z", "", "", "dueTime", "more than 100 years from now"},
		{"876601h", "", "", "dueTime", "longer than 100 years"},
		{"P101Y", "", "", "dueTime", "longer than 100 years"},
		// period (the full set is in TestParsePeriodErrors).
		{"", "R0/PT1S", "", "period", "repetitions must be at least 1"},
		{"", "0 0 30 2 *", "", "period", "never fires"},
		// ttl.
		{"", "10s", "0s", "ttl", "must be positive"},
		{"", "10s", "PT0S", "ttl", "must be positive"},
		{"", "10s", "-1s", "ttl", "must be positive"},
		{"", "10s", "-P1D", "ttl", "must be positive"},
		{"", "10s", "abc", "ttl", timeForm},
		{"", "10s", "R2/PT1S", "ttl", "repetitions (R<n>/) are only allowed in a period"},
		{"", "10s", "2020-01-01T00:00:00Z", "ttl", "is in the past"},
		{"", "10s", "2024-01-31T10:20:30.5Z", "ttl", "is in the past"},
		{"2h", "10s", "2024-01-31T11:20:30Z", "ttl", "is not after the first fire at 2024-01-31T12:20:30.5Z"},
		{"2h", "10s", "2024-01-31T12:20:30.5Z", "ttl", "is not after the first fire"},
		{"", "0 * * * *", "2024-01-31T11:00:00Z", "ttl", "is not after the first fire at 2024-01-31T11:00:00Z"},
		{"2020-01-01T00:00:00Z", "10s", "1h", "ttl", "is in the past"},
		{"", "10s", "2125-01-01T00:00:00Z", "ttl", "more than 100 years from now"},
		{"", "10s", "876601h", "ttl", "longer than 100 years"},
		{"", "10s", "2030-02-30T00:00:00Z", "ttl", "want an RFC 3339 time"},
	}
	for _, tt := range tests {
		s, err := Parse(now, tt.due, tt.period, tt.ttl)
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("Parse(%q, %q, %q) = %+v, %v; want a *FieldError", tt.due, tt.period, tt.ttl, s, err)
			continue
		}
		value := map[string]string{"dueTime": tt.due, "period": tt.period, "ttl": tt.ttl}[tt.field]
		if fe.Field != tt.field || fe.Value != value || !strings.Contains(fe.Reason, tt.reason) {
			t.Errorf("Parse(%q, %q, %q) error %q; want field %s, reason containing %q",
				tt.due, tt.period, tt.ttl, err, tt.field, tt.reason)
		}
		if !strings.HasPrefix(err.Error(), tt.field+" ") {
			t.Errorf("error %q does not start with the field name", err)
		}
	}
}

// TestParseIsDeterministic checks that a Spec rebuilt from the stored
// registration time and strings equals the original.
func TestParseIsDeterministic(t *testing.T) {
	a, err := Parse(now, "1m", "R5/P1M", "P1Y")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(now.In(time.FixedZone("x", -7*3600)), "1m", "R5/P1M", "P1Y")
	if err != nil {
		t.Fatal(err)
	}
	if !a.First.Equal(b.First) || !a.Expires.Equal(b.Expires) || a.Repeats != b.Repeats || a.Every.String() != b.Every.String() {
		t.Errorf("Parse differs across calls: %+v and %+v", a, b)
	}
}

func TestNextFire(t *testing.T) {
	t.Run("one-shot", func(t *testing.T) {
		s := mustSpec(t, "1m", "", "")
		next, _, ok := s.NextFire(0, time.Time{}, now)
		if !ok || !next.Equal(now.Add(time.Minute)) {
			t.Errorf("first fire = %v, %v; want %v, true", next, ok, now.Add(time.Minute))
		}
		if next, _, ok := s.NextFire(1, next, next); ok {
			t.Errorf("after the only fire: %v, true; want done", next)
		}
	})
	t.Run("repetitions", func(t *testing.T) {
		s := mustSpec(t, "", "R3/PT10S", "")
		last := s.First
		for fired := 1; fired < 3; fired++ {
			next, skipped, ok := s.NextFire(fired, last, last)
			if !ok || !next.Equal(last.Add(10*time.Second)) || skipped != 0 {
				t.Fatalf("after fire %d: %v, %d, %v; want %v, 0, true", fired, next, skipped, ok, last.Add(10*time.Second))
			}
			last = next
		}
		if next, _, ok := s.NextFire(3, last, last); ok {
			t.Errorf("after 3 of R3: %v, true; want done", next)
		}
	})
	t.Run("missed fires do not use up repetitions", func(t *testing.T) {
		s := mustSpec(t, "", "R3/PT10S", "")
		// The first fire was delivered 95 s late; fires at +10 … +90 s were missed.
		next, skipped, ok := s.NextFire(1, s.First, s.First.Add(95*time.Second))
		if !ok || !next.Equal(s.First.Add(100*time.Second)) || skipped != 9 {
			t.Errorf("got %v, %d, %v; want %v, 9, true", next, skipped, ok, s.First.Add(100*time.Second))
		}
	})
	t.Run("ttl", func(t *testing.T) {
		s := mustSpec(t, "", "10s", "30s") // fires at +0, +10, +20; +30 is at Expires
		last := s.First
		for fired := 1; fired < 3; fired++ {
			next, _, ok := s.NextFire(fired, last, last)
			if !ok {
				t.Fatalf("after fire %d: done too early", fired)
			}
			last = next
		}
		if next, _, ok := s.NextFire(3, last, last); ok {
			t.Errorf("fire at %v scheduled at or after Expires %v", next, s.Expires)
		}
		if !s.Expired(s.Expires) || s.Expired(s.Expires.Add(-time.Nanosecond)) {
			t.Errorf("Expired is wrong around %v", s.Expires)
		}
		if (Spec{}).Expired(now) {
			t.Error("a Spec without TTL expired")
		}
	})
	t.Run("unbounded", func(t *testing.T) {
		s := mustSpec(t, "", "1s", "")
		next, skipped, ok := s.NextFire(1_000_000, s.First, s.First.Add(24*time.Hour))
		if !ok || !next.Equal(s.First.Add(24*time.Hour+time.Second)) || skipped != 24*3600 {
			t.Errorf("got %v, %d, %v", next, skipped, ok)
		}
	})
	t.Run("cron", func(t *testing.T) {
		s := mustSpec(t, "", "@hourly", "")
		next, _, ok := s.NextFire(1, s.First, s.First)
		if !ok || !next.Equal(s.First.Add(time.Hour)) {
			t.Errorf("got %v, %v; want %v", next, ok, s.First.Add(time.Hour))
		}
	})
}

func mustSpec(t *testing.T, due, period, ttl string) Spec {
	t.Helper()
	s, err := Parse(now, due, period, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
