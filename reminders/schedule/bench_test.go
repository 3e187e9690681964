package schedule

import (
	"testing"
	"time"
)

var benchPeriods = []struct{ name, period string }{
	{"go", "1m30s"},
	{"iso", "PT1M30S"},
	{"iso-calendar", "P1Y2M3DT4H5M6.5S"},
	{"repetitions", "R5/PT10S"},
	{"every", "@every 10s"},
	{"cron5", "*/5 * * * *"},
	{"cron6", "0 */5 * * * *"},
	{"cron-tz", "CRON_TZ=America/New_York 0 9 * * mon-fri"},
	{"descriptor", "@hourly"},
}

func BenchmarkParsePeriod(b *testing.B) {
	for _, bp := range benchPeriods {
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := ParsePeriod(bp.period); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(now, "PT1M", "R5/PT10S", "2030-01-02T15:04:05Z"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNext(b *testing.B) {
	for _, s := range []string{"10s", "P1M", "*/5 * * * *", "CRON_TZ=America/New_York 0 9 * * mon-fri"} {
		p := mustPeriod(b, s)
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			t := base
			for b.Loop() {
				t = p.Next(t)
				if t.Year() > 2025 {
					t = base
				}
			}
		})
	}
}

func BenchmarkNextAfter(b *testing.B) {
	year := 365 * 24 * time.Hour
	cases := []struct {
		name, period string
		gap          time.Duration
	}{
		{"fixed-on-time", "10s", 5 * time.Second},
		{"fixed-1s-after-a-year", "1s", year},
		{"fixed-after-300-years", "1s", 0}, // gap set below: beyond time.Duration
		{"calendar-on-time", "P1M", 24 * time.Hour},
		{"calendar-after-10-years", "P1M", 10 * year},
		{"cron-on-time", "0 * * * *", time.Minute},
		{"cron-after-a-day", "*/5 * * * *", 24 * time.Hour},
		{"cron-every-second-after-a-year", "* * * * * *", year},
	}
	for _, c := range cases {
		p := mustPeriod(b, c.period)
		now := base.Add(c.gap)
		if c.gap == 0 {
			now = base.AddDate(300, 0, 0)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if next, _ := p.NextAfter(base, now); !next.After(now) {
					b.Fatal(next)
				}
			}
		})
	}
}
