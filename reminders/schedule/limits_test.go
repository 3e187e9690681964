package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestParseRefusesPeriodsBelowTheMinimum covers every form a period can
// take: a period shorter than MinPeriod would fire (and, for a reminder,
// write the store) hundreds of times a second.
func TestParseRefusesPeriodsBelowTheMinimum(t *testing.T) {
	const reason = "must be at least 10ms"
	for _, period := range []string{
		"1ns", "9ms", "9.999999ms", "500us", "0.001s",
		"PT0.000000001S", "PT0.009S", "PT0,0099S", "PT0.00000016H",
		"R5/PT0.001S", "R/PT0.000000001S", "R1/PT0.0001S",
		"@every 1ns", "@every 9ms", "@every\t5ms",
		"TZ=UTC @every 1ms", "CRON_TZ=Europe/Paris @every 9999us",
	} {
		s, err := Parse(now, "", period, "")
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("period %q: Parse = %+v, %v; want a *FieldError", period, s, err)
			continue
		}
		if fe.Field != "period" || fe.Value != period || !strings.Contains(fe.Reason, reason) {
			t.Errorf("period %q: error %q; want period %q with a reason containing %q", period, err, period, reason)
		}
		// The grammar itself still accepts it: the limit belongs to
		// registrations, not to ParsePeriod.
		if _, _, err := ParsePeriod(period); err != nil {
			t.Errorf("ParsePeriod(%q): %v", period, err)
		}
	}
}

func TestParseAcceptsThePeriodMinimum(t *testing.T) {
	tests := []struct {
		period string
		gap    time.Duration // between the first two fires
	}{
		{"10ms", MinPeriod},
		{"PT0.01S", MinPeriod},
		{"R3/PT0.010S", MinPeriod},
		{"@every 10ms", MinPeriod},
		{"TZ=UTC @every 10ms", MinPeriod},
		{"11ms", 11 * time.Millisecond},
		// The cron seconds field fires at most once a second.
		{"* * * * * *", time.Second},
		{"CRON_TZ=Australia/Lord_Howe * * * * * *", time.Second},
		{"P1M", 31 * 24 * time.Hour}, // 31 January 2024 to 2 March
	}
	for _, tt := range tests {
		s, err := Parse(now, "", tt.period, "")
		if err != nil {
			t.Errorf("period %q: %v", tt.period, err)
			continue
		}
		next, _, ok := s.NextFire(1, s.First, s.First)
		if !ok || next.Sub(s.First) != tt.gap {
			t.Errorf("period %q: fires at %v then %v (ok %v), want %v apart", tt.period, s.First, next, ok, tt.gap)
		}
		if s.Raised {
			t.Errorf("period %q: Parse reports a raised period", tt.period)
		}
	}
}

// TestParseDueTimeGranularity: a due time given as a duration is either
// zero (fire now) or at least DueTimeGranularity.
func TestParseDueTimeGranularity(t *testing.T) {
	for _, due := range []string{"1ns", "999us", "999999ns", "0.5ms", "PT0.0001S", "PT0.000000001S", "+PT0.0009S", " 1ns "} {
		_, err := Parse(now, due, "", "")
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("dueTime %q: %v; want a *FieldError", due, err)
			continue
		}
		if fe.Field != "dueTime" || fe.Value != due ||
			!strings.Contains(fe.Reason, "below 1ms") || !strings.Contains(fe.Reason, "empty dueTime or 0s") {
			t.Errorf("dueTime %q: error %q", due, err)
		}
	}
	for _, due := range []string{"", "0", "0s", "PT0S", "0ms", "1ms", "PT0.001S", "1.5ms",
		// Absolute times are instants, not durations: any nanosecond is fine.
		"2024-01-31T10:20:30.500000001Z", "2030-01-02T15:04:05.000000001Z"} {
		if _, err := Parse(now, due, "1s", ""); err != nil {
			t.Errorf("dueTime %q: %v", due, err)
		}
	}
}

// TestParseStoredRaisesShortPeriods: a registration stored before the
// minimum was enforced still parses, firing every MinPeriod instead.
func TestParseStoredRaisesShortPeriods(t *testing.T) {
	for _, period := range []string{"1ns", "PT0.000000001S", "@every 1ns", "R5/PT0.001S", "9ms"} {
		s, err := ParseStored(now, "1ns", period, "")
		if err != nil {
			t.Errorf("period %q: %v", period, err)
			continue
		}
		if !s.Raised || s.Period != period || s.Every.String() != period {
			t.Errorf("period %q: Spec %+v; want it raised, keeping the text", period, s)
		}
		if !s.First.Equal(now.Add(time.Nanosecond)) {
			t.Errorf("period %q: First %v; the stored due time stands", period, s.First)
		}
		next, _, ok := s.NextFire(1, s.First, s.First)
		if !ok || next.Sub(s.First) != MinPeriod {
			t.Errorf("period %q: next fire %v after %v (ok %v), want %v later", period, next, s.First, ok, MinPeriod)
		}
		// A downtime of a second: the next fire is on the raised grid.
		next, skipped, _ := s.NextFire(2, s.First, s.First.Add(time.Second))
		if !next.Equal(s.First.Add(time.Second+MinPeriod)) || skipped != 100 {
			t.Errorf("period %q: after a second's gap next %v, skipped %d", period, next, skipped)
		}
	}
	for _, period := range []string{"10ms", "1h", "@hourly", ""} {
		s, err := ParseStored(now, "", period, "")
		if err != nil || s.Raised {
			t.Errorf("period %q: %+v, %v; want it as Parse gives it", period, s, err)
		}
	}
	// What does not parse at all is still refused.
	if _, err := ParseStored(now, "", "R0/PT1S", ""); err == nil {
		t.Error("ParseStored accepted R0/PT1S")
	}
}
