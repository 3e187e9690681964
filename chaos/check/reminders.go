package check

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/granaryhq/granary/chaos/history"
)

// ReminderKey names one reminder of one actor, as the ticks name it.
type ReminderKey struct {
	Actor    string
	Reminder string
}

func (k ReminderKey) String() string { return k.Actor + "/" + k.Reminder }

// Spec is a reminder's schedule: due at First, then every Period (0: once),
// while before Until (0: no end). First must be no later than the runtime's
// first due time (the registration's invocation plus its due time), and,
// when ticks record their due time, equal to it within Tolerance.
type Spec struct {
	First  int64
	Period int64
	Until  int64
}

// maxDues bounds the due times one reminder may have within a run.
const maxDues = 1 << 22

// Reminders checks that every tick of schedule due before end - Grace fired
// at least once, and measures how late.
//
// A due time is fired when a tick is for it: when ticks record their due
// time, a tick whose Due is within Tolerance of it; otherwise the first tick
// at or after it (less Tolerance), so that one late fire covers every due
// time it was late for. When ticks record their due time, a due time no
// tick is for is coalesced when the next fire after it was for an earlier
// due time (the runtime delivers missed fires as one); a silently skipped
// due time is missed. Without recorded due times a skipped one shows only
// as lateness: set MaxLateness to flag it.
//
// Violations: missed due times, fires more than Tolerance before their due
// time (or before First), and with MaxLateness, late ones. Duplicates (two
// fires for one due time) are allowed by at-least-once and only counted.
//
// Counts: reminders, ticks, dues (due times that had to fire), fired,
// coalesced, missed, late, duplicates, early, after_until (fires at or after
// Until, not matched), off_schedule (a recorded Due on no due time),
// unscheduled (ticks of reminders not in schedule), and lateness over fired
// and coalesced due times in microseconds: lateness_p50_us, lateness_p99_us,
// lateness_max_us (negative for fires that came early, within Tolerance).
func Reminders(ticks []history.Tick, schedule map[ReminderKey]Spec, end int64, opts ...Option) Result {
	cfg := newConfig(opts)
	res := newResult("reminders")
	byKey := map[ReminderKey][]history.Tick{}
	for _, t := range ticks {
		k := ReminderKey{t.Actor, t.Reminder}
		byKey[k] = append(byKey[k], t)
	}
	res.Counts["ticks"] = len(ticks)
	res.Counts["reminders"] = len(schedule)
	for _, k := range slices.SortedFunc(maps.Keys(byKey), compareReminderKeys) {
		if _, ok := schedule[k]; !ok {
			res.Counts["unscheduled"] += len(byKey[k])
			res.note("unscheduled reminder", k.String(), byKey[k][0].At, "%d ticks of a reminder the schedule does not list", len(byKey[k]))
		}
	}
	var lateness []int64
	for _, k := range slices.SortedFunc(maps.Keys(schedule), compareReminderKeys) {
		lateness = append(lateness, checkReminder(&res, cfg, k, schedule[k], byKey[k], end)...)
	}
	slices.Sort(lateness)
	if len(lateness) > 0 {
		res.Counts["lateness_p50_us"] = int(percentile(lateness, 50) / 1e3)
		res.Counts["lateness_p99_us"] = int(percentile(lateness, 99) / 1e3)
		res.Counts["lateness_max_us"] = int(lateness[len(lateness)-1] / 1e3)
	}
	return res
}

func compareReminderKeys(a, b ReminderKey) int {
	return cmp.Or(cmp.Compare(a.Actor, b.Actor), cmp.Compare(a.Reminder, b.Reminder))
}

// dueLimit is the time all due times of sp within a run ending at end
// come before.
func dueLimit(sp Spec, end int64) int64 {
	if sp.Until != 0 {
		return min(end, sp.Until)
	}
	return end
}

// dueTimes lists the due times of sp before dueLimit.
func dueTimes(sp Spec, end int64) ([]int64, error) {
	limit := dueLimit(sp, end)
	switch {
	case sp.Period < 0:
		return nil, fmt.Errorf("negative period %d", sp.Period)
	case sp.First >= limit:
		return nil, nil
	case sp.Period == 0:
		return []int64{sp.First}, nil
	case (limit-sp.First)/sp.Period >= maxDues:
		return nil, fmt.Errorf("more than %d due times before the end", maxDues)
	}
	var dues []int64
	for d := sp.First; d < limit; d += sp.Period {
		dues = append(dues, d)
	}
	return dues, nil
}

// checkReminder checks one reminder and returns the lateness of its due
// times that had to fire and did.
func checkReminder(res *Result, cfg config, k ReminderKey, sp Spec, ticks []history.Tick, end int64) []int64 {
	key := k.String()
	tol := int64(cfg.tolerance)
	dues, err := dueTimes(sp, end)
	if err != nil {
		res.violate("bad schedule", key, sp.First, "%v", err)
		return nil
	}
	required := 0
	for _, d := range dues {
		if d <= end-int64(cfg.grace) {
			required++
		}
	}
	res.Counts["dues"] += required

	slices.SortFunc(ticks, func(a, b history.Tick) int { return cmp.Compare(a.At, b.At) })
	var kept []history.Tick
	withDue := true
	for _, t := range ticks {
		if sp.Until != 0 && t.At >= sp.Until+tol {
			res.Counts["after_until"]++
			continue
		}
		kept = append(kept, t)
		withDue = withDue && t.Due != 0
	}

	served := make([]service, len(dues))
	if withDue {
		matchByDue(res, key, sp, tol, dueLimit(sp, end), dues, kept, served)
	} else {
		matchByTime(res, key, sp, tol, dues, kept, served)
	}

	var lateness []int64
	var missed, late []int
	for i, d := range dues[:required] {
		switch served[i].how {
		case unserved:
			missed = append(missed, i)
			continue
		case fired:
			res.Counts["fired"]++
		case coalesced:
			res.Counts["coalesced"]++
		}
		l := served[i].at - d
		lateness = append(lateness, l)
		if cfg.maxLateness > 0 && l > int64(cfg.maxLateness) {
			late = append(late, i)
		}
	}
	res.Counts["missed"] += len(missed)
	res.Counts["late"] += len(late)
	for _, run := range consecutiveRuns(missed) {
		first, last := dues[run[0]], dues[run[1]]
		res.violate("missed tick", key, first, "%d due times from %d to %d never fired", run[1]-run[0]+1, first, last)
	}
	for _, run := range consecutiveRuns(late) {
		first, last := dues[run[0]], dues[run[1]]
		res.violate("late tick", key, first, "%d due times from %d to %d fired more than %v late", run[1]-run[0]+1, first, last, cfg.maxLateness)
	}
	return lateness
}

// service is how a due time was served: by a fire for it, or by a late
// fire for an earlier one; at is when.
type service struct {
	how serviceKind
	at  int64
}

type serviceKind int

const (
	unserved serviceKind = iota
	fired
	coalesced
)

// matchByDue serves each due time with the ticks that recorded it, and an
// unserved one with the next fire after it when that fire was for an
// earlier due time.
func matchByDue(res *Result, key string, sp Spec, tol, limit int64, dues []int64, ticks []history.Tick, served []service) {
	firedFor := make([]int, len(dues))
	for _, t := range ticks { // in time order, so the first fire for a due time is its earliest
		if t.At < t.Due-tol {
			res.Counts["early"]++
			res.violate("fired early", key, t.At, "fire for due time %d came %v early", t.Due, time.Duration(t.Due-t.At))
		}
		i, ok := dueIndex(sp, tol, dues, t.Due)
		if !ok {
			// Fires for due times past the end of the run are not judged.
			if t.Due < limit {
				res.Counts["off_schedule"]++
			}
			continue
		}
		if firedFor[i] == 0 {
			served[i] = service{fired, t.At}
		}
		firedFor[i]++
	}
	for i, d := range dues {
		if firedFor[i] > 0 {
			res.Counts["duplicates"] += firedFor[i] - 1
			continue
		}
		j, _ := slices.BinarySearchFunc(ticks, d-tol, func(t history.Tick, at int64) int { return cmp.Compare(t.At, at) })
		if j < len(ticks) && ticks[j].Due < d-tol {
			served[i] = service{coalesced, ticks[j].At}
		}
	}
}

// dueIndex finds the due time within tol of due.
func dueIndex(sp Spec, tol int64, dues []int64, due int64) (int, bool) {
	if len(dues) == 0 {
		return 0, false
	}
	i := 0
	if sp.Period > 0 {
		i = int((due - sp.First + sp.Period/2) / sp.Period)
		if due < sp.First {
			i = 0
		}
	}
	for _, j := range []int{i - 1, i, i + 1} {
		if j >= 0 && j < len(dues) && due >= dues[j]-tol && due <= dues[j]+tol {
			return j, true
		}
	}
	return 0, false
}

// matchByTime serves each due time with the first tick at or after it; a
// tick that serves no due time and came before the next due time after the
// last one is a duplicate, and one before the first due time is early.
func matchByTime(res *Result, key string, sp Spec, tol int64, dues []int64, ticks []history.Tick, served []service) {
	for len(ticks) > 0 && ticks[0].At < sp.First-tol {
		t := ticks[0]
		res.Counts["early"]++
		res.violate("fired early", key, t.At, "fired at %d, %v before the first due time %d", t.At, time.Duration(sp.First-t.At), sp.First)
		ticks = ticks[1:]
	}
	used := make([]bool, len(ticks))
	prev := -1
	for i, d := range dues {
		j, _ := slices.BinarySearchFunc(ticks, d-tol, func(t history.Tick, at int64) int { return cmp.Compare(t.At, at) })
		if j == len(ticks) {
			continue
		}
		how := fired
		if j == prev {
			how = coalesced
		}
		served[i] = service{how, ticks[j].At}
		used[j], prev = true, j
	}
	horizon := int64(1<<63 - 1)
	if sp.Period > 0 && len(dues) > 0 {
		horizon = dues[len(dues)-1] + sp.Period - tol
	}
	for j, t := range ticks {
		if !used[j] && t.At < horizon {
			res.Counts["duplicates"]++
		}
	}
}

// consecutiveRuns groups sorted indexes into [first, last] runs of
// consecutive values.
func consecutiveRuns(idx []int) [][2]int {
	var runs [][2]int
	for _, i := range idx {
		if n := len(runs); n > 0 && runs[n-1][1] == i-1 {
			runs[n-1][1] = i
			continue
		}
		runs = append(runs, [2]int{i, i})
	}
	return runs
}
