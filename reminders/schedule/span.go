package schedule

import (
	"math/bits"
	"time"
)

// maxSpan bounds every duration the package accepts: about 100 years. It keeps
// all arithmetic far from time.Duration's 292-year limit.
const maxSpan = 36525 * 24 * time.Hour // 100 years of 365.25 days

// maxDistance bounds how far from now an absolute time (RFC 3339 dueTime or ttl) may lie.
const maxDistance = maxSpan

// Reasons shared by the parsers, phrased to follow `field "value": `.
const (
	reasonNegative = "must not be negative"
	reasonTooLong  = "is longer than 100 years"
	// reasonNotDuration is parseSpan's answer to text that is neither kind of
	// duration; callers that accept more forms replace it with their own.
	reasonNotDuration = "want a Go duration (1m30s) or an ISO 8601 duration (PT1M30S)"
)

// span is a parsed duration: a calendar part applied with time.AddDate in UTC,
// then a fixed part. Weeks are folded into days.
type span struct {
	years, months, days int
	fixed               time.Duration
}

func (s span) isZero() bool {
	return s.years == 0 && s.months == 0 && s.days == 0 && s.fixed == 0
}

// addTo returns t moved forward by s, in UTC.
func (s span) addTo(t time.Time) time.Time {
	t = t.UTC()
	if s.years != 0 || s.months != 0 || s.days != 0 {
		t = t.AddDate(s.years, s.months, s.days)
	}
	return t.Add(s.fixed)
}

// parseSpan parses a Go duration ("1m30s") or an ISO 8601 duration ("PT1M30S",
// optionally signed). A negative value yields reasonNegative; any other
// problem yields its own reason. It never accepts repetitions.
func parseSpan(s string) (span, string) {
	switch {
	case s == "":
		return span{}, "is empty"
	case s[0] == 'P':
		return parseISODuration(s)
	case s[0] == '-' && len(s) > 1 && s[1] == 'P':
		if _, reason := parseISODuration(s[1:]); reason != "" {
			return span{}, reason
		}
		return span{}, reasonNegative
	case s[0] == '+' && len(s) > 1 && s[1] == 'P':
		return parseISODuration(s[1:])
	case s[0] == 'R':
		return span{}, "repetitions (R<n>/) are only allowed in a period"
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return span{}, reasonNotDuration
	}
	if d < 0 {
		return span{}, reasonNegative
	}
	if d > maxSpan {
		return span{}, reasonTooLong
	}
	return span{fixed: d}, ""
}

// isoUnit describes one designator of an ISO 8601 duration.
type isoUnit struct {
	letter byte
	inTime bool
	// limit is the largest count the unit may have on its own (about 100 years).
	limit int64
	// nanos is the unit's length for time units; zero for calendar units.
	nanos int64
	// approxDays is the unit's average length in days for the overall limit.
	approxDays float64
}

// isoUnits lists the designators in the order ISO 8601 requires them.
var isoUnits = [...]isoUnit{
	{letter: 'Y', limit: 100, approxDays: 365.25},
	{letter: 'M', limit: 1200, approxDays: 365.25 / 12},
	{letter: 'W', limit: 5218, approxDays: 7},
	{letter: 'D', limit: 36525, approxDays: 1},
	{letter: 'H', inTime: true, limit: int64(maxSpan / time.Hour), nanos: int64(time.Hour)},
	{letter: 'M', inTime: true, limit: int64(maxSpan / time.Minute), nanos: int64(time.Minute)},
	{letter: 'S', inTime: true, limit: int64(maxSpan / time.Second), nanos: int64(time.Second)},
}

// parseISODuration parses "P[nY][nM][nW][nD][T[nH][nM][nS]]" (s starts with 'P').
// Only the last component may carry a fraction ("PT0.5S", "PT1,5H"), and only
// when it is hours, minutes or seconds.
func parseISODuration(s string) (span, string) {
	const (
		reasonForm = "want an ISO 8601 duration such as P1DT2H or PT1.5S"
	)
	var (
		sp        span
		next      int  // index into isoUnits of the earliest designator still allowed
		inTime    bool // after 'T'
		afterT    bool // 'T' seen and no component since
		any       bool // at least one component
		fraction  bool // the last component had a fraction
		approxDay float64
	)
	i := 1
	for i < len(s) {
		if s[i] == 'T' {
			if inTime {
				return span{}, reasonForm
			}
			inTime, afterT = true, true
			i++
			continue
		}
		if fraction {
			return span{}, "only the last component may have a fraction"
		}
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		intDigits := s[start:i]
		var fracDigits string
		if i < len(s) && (s[i] == '.' || s[i] == ',') {
			i++
			fs := i
			for i < len(s) && isDigit(s[i]) {
				i++
			}
			fracDigits = s[fs:i]
			if fracDigits == "" {
				return span{}, reasonForm
			}
			fraction = true
		}
		if intDigits == "" || i >= len(s) {
			return span{}, reasonForm
		}
		letter := s[i]
		i++
		u := -1
		for k := next; k < len(isoUnits); k++ {
			if isoUnits[k].letter == letter && isoUnits[k].inTime == inTime {
				u = k
				break
			}
		}
		if u < 0 {
			return span{}, reasonForm
		}
		next = u + 1
		unit := isoUnits[u]
		n, ok := parseCount(intDigits, unit.limit)
		if !ok {
			return span{}, reasonTooLong
		}
		any, afterT = true, false
		if !unit.inTime {
			if fraction {
				return span{}, "fractions are only allowed on hours, minutes and seconds"
			}
			switch unit.letter {
			case 'Y':
				sp.years = int(n)
			case 'M':
				sp.months = int(n)
			case 'W':
				sp.days += int(n) * 7
			case 'D':
				sp.days += int(n)
			}
			approxDay += float64(n) * unit.approxDays
			continue
		}
		// n <= limit, so n*nanos <= maxSpan and the fraction adds less than one unit.
		add := n*unit.nanos + fractionOf(fracDigits, unit.nanos)
		sp.fixed += time.Duration(add)
		if sp.fixed > maxSpan {
			return span{}, reasonTooLong
		}
	}
	if !any || afterT {
		return span{}, reasonForm
	}
	if approxDay*float64(24*time.Hour)+float64(sp.fixed) > float64(maxSpan) {
		return span{}, reasonTooLong
	}
	return sp, ""
}

// parseCount parses a run of decimal digits, reporting false when it exceeds limit.
func parseCount(digits string, limit int64) (int64, bool) {
	var n int64
	for i := 0; i < len(digits); i++ {
		n = n*10 + int64(digits[i]-'0')
		if n > limit {
			return 0, false
		}
	}
	return n, true
}

// fractionOf returns 0.digits × unit, truncated to whole nanoseconds.
// Digits beyond the eighteenth cannot change the result by a nanosecond for
// any unit used here and are ignored.
func fractionOf(digits string, unit int64) int64 {
	if len(digits) > 18 {
		digits = digits[:18]
	}
	var num, den uint64 = 0, 1
	for i := 0; i < len(digits); i++ {
		num = num*10 + uint64(digits[i]-'0')
		den *= 10
	}
	// num < den, so num*unit/den < unit and the quotient fits in 64 bits.
	hi, lo := bits.Mul64(num, uint64(unit))
	q, _ := bits.Div64(hi, lo, den)
	return int64(q)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
