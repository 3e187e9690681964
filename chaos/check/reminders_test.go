package check

import (
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/chaos/history"
)

const (
	ms  = int64(time.Millisecond)
	sec = int64(time.Second)
)

// ticksAt returns ticks of actor a's reminder r at the given times, with
// due times when dues is not nil.
func ticksAt(at []int64, dues []int64) []history.Tick {
	var ts []history.Tick
	for i, t := range at {
		k := history.Tick{Actor: "a", Reminder: "r", Silo: "s1", At: t}
		if dues != nil {
			k.Due = dues[i]
		}
		ts = append(ts, k)
	}
	return ts
}

// every returns first, first+step, ... below end, each plus late.
func every(first, step, end, late int64) []int64 {
	var out []int64
	for t := first; t < end; t += step {
		out = append(out, t+late)
	}
	return out
}

func TestReminders(t *testing.T) {
	key := ReminderKey{"a", "r"}
	schedule := map[ReminderKey]Spec{key: {First: 1 * sec, Period: sec}}
	const end = 10 * sec // grace 2 s: due times up to 8 s must fire
	tests := []struct {
		name   string
		ticks  []history.Tick
		opts   []Option
		want   []string // violations' What
		counts map[string]int
	}{
		{
			name:   "on time",
			ticks:  ticksAt(every(sec, sec, end, 5*ms), nil),
			counts: map[string]int{"dues": 8, "fired": 8, "missed": 0, "duplicates": 0, "lateness_p50_us": 5000, "lateness_max_us": 5000},
		},
		{
			name:   "on time, due times recorded",
			ticks:  ticksAt(every(sec, sec, end, 5*ms), every(sec, sec, end, 0)),
			counts: map[string]int{"dues": 8, "fired": 8, "missed": 0, "lateness_p99_us": 5000},
		},
		{
			name:   "ticks stop: missed",
			ticks:  ticksAt(every(sec, sec, 6*sec, 5*ms), nil),
			want:   []string{"missed tick"},
			counts: map[string]int{"dues": 8, "fired": 5, "missed": 3},
		},
		{
			name:   "ticks due in the grace period need not fire",
			ticks:  ticksAt(every(sec, sec, 9*sec, 5*ms), nil),
			counts: map[string]int{"dues": 8, "fired": 8, "missed": 0},
		},
		{
			name: "outage: one late fire covers the due times it was late for",
			ticks: ticksAt(
				[]int64{1*sec + 5*ms, 2*sec + 5*ms, 5*sec + 200*ms, 6*sec + 5*ms, 7*sec + 5*ms, 8*sec + 5*ms},
				nil),
			counts: map[string]int{"fired": 6, "coalesced": 2, "missed": 0, "lateness_max_us": 2200000},
		},
		{
			name: "outage with due times: the catch-up fire coalesces",
			ticks: ticksAt(
				[]int64{1*sec + 5*ms, 2*sec + 5*ms, 5*sec + 200*ms, 6*sec + 5*ms, 7*sec + 5*ms, 8*sec + 5*ms},
				[]int64{1 * sec, 2 * sec, 3 * sec, 6 * sec, 7 * sec, 8 * sec}),
			counts: map[string]int{"fired": 6, "coalesced": 2, "missed": 0},
		},
		{
			name: "a due time skipped silently, due times recorded",
			ticks: ticksAt(
				[]int64{1*sec + 5*ms, 2*sec + 5*ms, 4*sec + 5*ms, 5*sec + 5*ms, 6*sec + 5*ms, 7*sec + 5*ms, 8*sec + 5*ms},
				[]int64{1 * sec, 2 * sec, 4 * sec, 5 * sec, 6 * sec, 7 * sec, 8 * sec}),
			want:   []string{"missed tick"},
			counts: map[string]int{"fired": 7, "missed": 1},
		},
		{
			name: "a due time skipped silently, without due times, shows as lateness",
			ticks: ticksAt(
				[]int64{1*sec + 5*ms, 2*sec + 5*ms, 4*sec + 5*ms, 5*sec + 5*ms, 6*sec + 5*ms, 7*sec + 5*ms, 8*sec + 5*ms},
				nil),
			opts:   []Option{MaxLateness(500 * time.Millisecond)},
			want:   []string{"late tick"},
			counts: map[string]int{"fired": 7, "coalesced": 1, "missed": 0, "late": 1, "lateness_max_us": 1005000},
		},
		{
			name:   "duplicates are counted, not violations",
			ticks:  ticksAt(append(every(sec, sec, end, 5*ms), 3*sec+7*ms, 5*sec+9*ms), nil),
			counts: map[string]int{"fired": 8, "duplicates": 2, "missed": 0},
		},
		{
			name:   "duplicates with due times",
			ticks:  ticksAt(append(every(sec, sec, end, 5*ms), 3*sec+700*ms), append(every(sec, sec, end, 0), 3*sec)),
			counts: map[string]int{"fired": 8, "duplicates": 1},
		},
		{
			name:   "a fire before the first due time",
			ticks:  ticksAt(append(every(sec, sec, end, 5*ms), 500*ms), nil),
			want:   []string{"fired early"},
			counts: map[string]int{"early": 1},
		},
		{
			name:   "a fire before its recorded due time",
			ticks:  ticksAt(every(sec, sec, end, -50*ms), every(sec, sec, end, 0)),
			want:   []string{"fired early", "fired early", "fired early", "fired early", "fired early", "fired early", "fired early", "fired early", "fired early"},
			counts: map[string]int{"early": 9, "fired": 8},
		},
		{
			name:   "within tolerance is not early",
			ticks:  ticksAt(every(sec, sec, end, -5*ms), nil),
			counts: map[string]int{"early": 0, "fired": 8},
		},
		{
			name:   "a due time off the schedule",
			ticks:  ticksAt(append(every(sec, sec, 9*sec, 5*ms), 9*sec+405*ms), append(every(sec, sec, 9*sec, 0), 9*sec+400*ms)),
			counts: map[string]int{"off_schedule": 1, "fired": 8},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Reminders(tt.ticks, schedule, end, append([]Option{Grace(2 * time.Second)}, tt.opts...)...)
			var got []string
			for _, v := range res.Violations {
				got = append(got, v.What)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("violations %q, want %q\n%s", got, tt.want, res)
			}
			if res.Valid != (len(tt.want) == 0) {
				t.Fatalf("Valid = %v with violations %q", res.Valid, got)
			}
			for k, v := range tt.counts {
				if res.Counts[k] != v {
					t.Errorf("Counts[%q] = %d, want %d\n%s", k, res.Counts[k], v, res)
				}
			}
		})
	}
}

func TestRemindersMissedRunIsOneViolation(t *testing.T) {
	schedule := map[ReminderKey]Spec{{"a", "r"}: {First: sec, Period: sec}}
	res := Reminders(ticksAt([]int64{sec, 2 * sec, 6 * sec}, nil), schedule, 10*sec, Grace(0))
	if res.Counts["missed"] != 3 || len(res.Violations) != 1 {
		t.Fatalf("want one violation for the 3 due times after 6 s:\n%s", res)
	}
	v := res.Violations[0]
	if v.At != 7*sec || !strings.Contains(v.Detail, "3 due times") {
		t.Fatalf("violation %+v", v)
	}
}

func TestRemindersScheduleEdges(t *testing.T) {
	tests := []struct {
		name   string
		spec   Spec
		ticks  []int64
		want   []string
		counts map[string]int
	}{
		{name: "one-shot fired", spec: Spec{First: sec}, ticks: []int64{sec + ms}, counts: map[string]int{"dues": 1, "fired": 1}},
		{name: "one-shot never fired", spec: Spec{First: sec}, want: []string{"missed tick"}, counts: map[string]int{"dues": 1, "missed": 1}},
		{name: "one-shot fired twice", spec: Spec{First: sec}, ticks: []int64{sec + ms, sec + 3*ms}, counts: map[string]int{"fired": 1, "duplicates": 1}},
		{
			name:   "fires stop at Until",
			spec:   Spec{First: sec, Period: sec, Until: 4 * sec},
			ticks:  []int64{sec, 2 * sec, 3 * sec, 5 * sec},
			counts: map[string]int{"dues": 3, "fired": 3, "after_until": 1},
		},
		{name: "negative period", spec: Spec{First: sec, Period: -1}, want: []string{"bad schedule"}},
		{name: "far too many due times", spec: Spec{First: 0, Period: 1}, want: []string{"bad schedule"}},
		{name: "first due after the end", spec: Spec{First: 20 * sec, Period: sec}, counts: map[string]int{"dues": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Reminders(ticksAt(tt.ticks, nil), map[ReminderKey]Spec{{"a", "r"}: tt.spec}, 10*sec, Grace(0))
			var got []string
			for _, v := range res.Violations {
				got = append(got, v.What)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("violations %q, want %q\n%s", got, tt.want, res)
			}
			for k, v := range tt.counts {
				if res.Counts[k] != v {
					t.Errorf("Counts[%q] = %d, want %d\n%s", k, res.Counts[k], v, res)
				}
			}
		})
	}
}

func TestRemindersUnscheduledTicksAreNoted(t *testing.T) {
	ticks := []history.Tick{{Actor: "b", Reminder: "x", At: sec}}
	res := Reminders(ticks, map[ReminderKey]Spec{}, 10*sec)
	if !res.Valid || res.Counts["unscheduled"] != 1 || len(res.Notes) != 1 {
		t.Fatalf("want a note on the unscheduled reminder:\n%s", res)
	}
}
