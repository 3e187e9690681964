package silo

import (
	"errors"
	"testing"
	"time"

	"github.com/granaryhq/granary/reminders/schedule"
)

func TestTimerSpec(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	type fire struct {
		completed time.Time
		want      time.Time // zero: the timer ends
	}
	tests := []struct {
		name   string
		req    TimerRequest
		first  time.Time
		fires  []fire
		errFld string
	}{
		{
			name:  "one-shot",
			req:   TimerRequest{Name: "t", DueTime: "2s"},
			first: now.Add(2 * time.Second),
			fires: []fire{{now.Add(2 * time.Second), time.Time{}}},
		},
		{
			name:  "periodic counts from the schedule, not from completion",
			req:   TimerRequest{Name: "t", DueTime: "1s", Period: "1s"},
			first: now.Add(time.Second),
			fires: []fire{
				{now.Add(1100 * time.Millisecond), now.Add(2 * time.Second)},
				{now.Add(2050 * time.Millisecond), now.Add(3 * time.Second)},
			},
		},
		{
			name:  "an overrun skips to the next slot instead of bursting",
			req:   TimerRequest{Name: "t", Period: "PT1S"},
			first: now,
			fires: []fire{{now.Add(3500 * time.Millisecond), now.Add(4 * time.Second)}},
		},
		{
			name:  "repetitions end the timer",
			req:   TimerRequest{Name: "t", Period: "R2/PT1S"},
			first: now,
			fires: []fire{{now, now.Add(time.Second)}, {now.Add(time.Second), time.Time{}}},
		},
		{
			name:  "ttl ends the timer",
			req:   TimerRequest{Name: "t", Period: "1s", TTL: "1500ms"},
			first: now,
			fires: []fire{{now, now.Add(time.Second)}, {now.Add(time.Second), time.Time{}}},
		},
		{name: "bad period", req: TimerRequest{Name: "t", Period: "R0/PT1S"}, errFld: "period"},
		{name: "bad due time", req: TimerRequest{Name: "t", DueTime: "soon"}, errFld: "dueTime"},
		// A timer is not stored, but one firing every nanosecond would
		// still spin a core: timers get the reminders' minimum period.
		{name: "nanosecond period", req: TimerRequest{Name: "t", Period: "1ns"}, errFld: "period"},
		{name: "nanosecond @every", req: TimerRequest{Name: "t", Period: "@every 1ns"}, errFld: "period"},
		{name: "nanosecond ISO 8601 period", req: TimerRequest{Name: "t", Period: "PT0.000000001S"}, errFld: "period"},
		{name: "repetitions below the minimum", req: TimerRequest{Name: "t", Period: "R3/PT0.005S"}, errFld: "period"},
		{name: "due time below the granularity", req: TimerRequest{Name: "t", DueTime: "1ns", Period: "1s"}, errFld: "dueTime"},
		{
			name:  "the minimum period",
			req:   TimerRequest{Name: "t", Period: "10ms"},
			first: now,
			fires: []fire{{now, now.Add(schedule.MinPeriod)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := timerSpec(tt.req, now)
			if tt.errFld != "" {
				var fe *schedule.FieldError
				if !errors.As(err, &fe) || fe.Field != tt.errFld {
					t.Fatalf("error %v, want a FieldError on %s", err, tt.errFld)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !spec.First.Equal(tt.first) {
				t.Fatalf("first fire %v, want %v", spec.First, tt.first)
			}
			for i, f := range tt.fires {
				next, ok := spec.Next(f.completed, i+1)
				if f.want.IsZero() {
					if ok {
						t.Fatalf("after fire %d: next %v, want the timer to end", i+1, next)
					}
					continue
				}
				if !ok || !next.Equal(f.want) {
					t.Fatalf("after fire %d: next %v (ok %v), want %v", i+1, next, ok, f.want)
				}
			}
		})
	}
}
