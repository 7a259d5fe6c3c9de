package pgqrs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Schedule expressions: the standard five cron fields, the @ descriptors
// and @every. parseCron reads one; next finds the first occurrence after a
// time. Cron fields are wall-clock times in the schedule's time zone, and
// next maps them onto instants as docs/schedules.md states: a wall time that
// a daylight-saving jump skips fires at the first instant after the jump,
// once; a wall time that happens twice (clocks turned back) fires at the
// first of the two. @every counts elapsed time and ignores the zone.

// MinScheduleInterval is the shortest @every interval a schedule may have.
// @every intervals are whole seconds.
const MinScheduleInterval = time.Second

// cronSpec is a parsed schedule expression.
type cronSpec struct {
	// every is the interval of "@every"; 0 for a cron expression.
	every time.Duration
	// Bit i of a field is set when the field allows value i (day of week:
	// 0 is Sunday; 7 is folded into 0).
	minute, hour, dom, month, dow uint64
	// domStar, dowStar: the field began with "*". When both day fields are
	// restricted, a day matches if either matches (the cron rule);
	// otherwise both must.
	domStar, dowStar bool
	loc              *time.Location
}

// cronField is one of the five fields: its name in errors, its range and
// the names it accepts besides numbers.
type cronField struct {
	name     string
	min, max int
	names    []string // names[i] stands for min+i
}

var cronFields = [5]cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day-of-month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}},
	{name: "day-of-week", min: 0, max: 7, names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}},
}

var cronDescriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// parseCron reads expr for the time zone loc. Its errors name the part of
// the expression that is wrong.
func parseCron(expr string, loc *time.Location) (*cronSpec, error) {
	expr = strings.TrimSpace(expr)
	c := &cronSpec{loc: loc}
	if len(expr) >= 6 && strings.EqualFold(expr[:6], "@every") && (len(expr) == 6 || expr[6] == ' ' || expr[6] == '\t') {
		text := strings.TrimSpace(expr[6:])
		d, err := time.ParseDuration(text)
		switch {
		case text == "":
			return nil, errors.New("@every needs a duration, such as @every 10m")
		case err != nil:
			return nil, fmt.Errorf("@every %q: not a duration (write it as 90s, 10m or 1h30m)", text)
		case d < MinScheduleInterval:
			return nil, fmt.Errorf("@every %q: below the minimum of %v", text, MinScheduleInterval)
		case d%time.Second != 0:
			return nil, fmt.Errorf("@every %q: not a whole number of seconds", text)
		}
		c.every = d
		return c, nil
	}
	if strings.HasPrefix(expr, "@") {
		fields, ok := cronDescriptors[strings.ToLower(expr)]
		if !ok {
			return nil, fmt.Errorf("unknown descriptor %q (want @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)", expr)
		}
		expr = fields
	}
	parts := strings.Fields(expr)
	if len(parts) != 5 {
		return nil, fmt.Errorf("%q has %d fields, want 5: minute hour day-of-month month day-of-week", expr, len(parts))
	}
	bits := make([]uint64, 5)
	for i, f := range cronFields {
		b, err := f.parse(parts[i])
		if err != nil {
			return nil, fmt.Errorf("%s field %q: %w", f.name, parts[i], err)
		}
		bits[i] = b
	}
	c.minute, c.hour, c.dom, c.month, c.dow = bits[0], bits[1], bits[2], bits[3], bits[4]
	if c.dow&(1<<7) != 0 {
		c.dow = c.dow&^(1<<7) | 1
	}
	c.domStar, c.dowStar = strings.HasPrefix(parts[2], "*"), strings.HasPrefix(parts[4], "*")
	if !c.domStar && c.dowStar && !c.domFitsMonths() {
		return nil, fmt.Errorf("day-of-month field %q: no such day in the months of %q, so it would never fire", parts[2], parts[3])
	}
	return c, nil
}

// parse reads one field: a comma-separated list of *, a value, or a range
// a-b, each optionally followed by /step (a value with a step, a/n, means
// a-max/n).
func (f cronField) parse(text string) (uint64, error) {
	var bits uint64
	for item := range strings.SplitSeq(text, ",") {
		if item == "" {
			return 0, errors.New("empty list item")
		}
		span, stepText, stepped := strings.Cut(item, "/")
		step := 1
		if stepped {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("step %q must be a positive whole number", stepText)
			}
			step = n
		}
		var lo, hi int
		switch a, b, isRange := strings.Cut(span, "-"); {
		case span == "*":
			lo, hi = f.min, f.max
		case isRange:
			var err error
			if lo, err = f.value(a); err != nil {
				return 0, err
			}
			if hi, err = f.value(b); err != nil {
				return 0, err
			}
			if lo > hi {
				return 0, fmt.Errorf("range %q runs backwards", span)
			}
		default:
			var err error
			if lo, err = f.value(span); err != nil {
				return 0, err
			}
			hi = lo
			if stepped {
				hi = f.max
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << v
		}
	}
	return bits, nil
}

// value reads a number or, where the field has them, a three-letter name
// (any case).
func (f cronField) value(s string) (int, error) {
	for i, name := range f.names {
		if strings.EqualFold(s, name) {
			return f.min + i, nil
		}
	}
	n, err := strconv.Atoi(s)
	switch {
	case err != nil && f.names != nil:
		return 0, fmt.Errorf("%q is neither a number nor a name (%s…)", s, strings.Join(f.names[:3], ", "))
	case err != nil:
		return 0, fmt.Errorf("%q is not a number", s)
	case n < f.min || n > f.max:
		return 0, fmt.Errorf("%d is out of range %d-%d", n, f.min, f.max)
	}
	return n, nil
}

// domFitsMonths reports whether some allowed day of the month exists in
// some allowed month (February has a 29th in leap years).
func (c *cronSpec) domFitsMonths() bool {
	for m := 1; m <= 12; m++ {
		if c.month&(1<<m) == 0 {
			continue
		}
		for d := 1; d <= daysIn(time.Month(m), 2024); d++ {
			if c.dom&(1<<d) != 0 {
				return true
			}
		}
	}
	return false
}

func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// next returns the first occurrence strictly after t, and false if there
// is none within the next ten years (a parsed expression always has one).
func (c *cronSpec) next(t time.Time) (time.Time, bool) {
	if c.every > 0 {
		// Whole multiples of the interval since the Unix epoch, so every
		// process computes the same instants.
		secs := int64(c.every / time.Second)
		n := t.Unix()/secs + 1
		if t.Unix() < 0 && t.Unix()%secs != 0 {
			n-- // Unix() / secs truncates towards zero
		}
		return time.Unix(n*secs, 0).UTC(), true
	}
	lt := t.In(c.loc)
	w := wall{day: time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, time.UTC), min: lt.Hour()*60 + lt.Minute()}
	// Wall times after t's own minute map to instants after t, except in
	// the hour a fall-back repeats (their first instance may be earlier
	// than t): those are skipped, as they already fired.
	for range 24 * 60 {
		var ok bool
		if w, ok = c.nextWall(w); !ok {
			return time.Time{}, false
		}
		if at := w.resolve(c.loc); at.After(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

// wall is a wall-clock minute: a civil date (midnight UTC stands for it)
// and the minute of that day.
type wall struct {
	day time.Time
	min int
}

// nextWall returns the first matching wall minute after w.
func (c *cronSpec) nextWall(w wall) (wall, bool) {
	day, from := w.day, w.min+1
	for range 366 * 10 {
		if c.month&(1<<int(day.Month())) == 0 {
			day, from = time.Date(day.Year(), day.Month()+1, 1, 0, 0, 0, 0, time.UTC), 0
			continue
		}
		if c.dayMatches(day) {
			for m := from; m < 24*60; m++ {
				if c.hour&(1<<(m/60)) == 0 {
					m = m/60*60 + 59 // the rest of this hour
					continue
				}
				if c.minute&(1<<(m%60)) != 0 {
					return wall{day: day, min: m}, true
				}
			}
		}
		day, from = day.AddDate(0, 0, 1), 0
	}
	return wall{}, false
}

func (c *cronSpec) dayMatches(day time.Time) bool {
	dom := c.dom&(1<<day.Day()) != 0
	dow := c.dow&(1<<int(day.Weekday())) != 0
	if !c.domStar && !c.dowStar {
		return dom || dow
	}
	return dom && dow
}

// resolve maps the wall minute onto an instant in loc. A wall time a
// daylight-saving jump skips maps to the instant of the jump; one that
// happens twice maps to the first of the two.
func (w wall) resolve(loc *time.Location) time.Time {
	t := time.Date(w.day.Year(), w.day.Month(), w.day.Day(), w.min/60, w.min%60, 0, 0, loc)
	got := t.Hour()*60 + t.Minute()
	if t.Year() != w.day.Year() || t.YearDay() != w.day.YearDay() || got != w.min {
		// Skipped: time.Date normalised it to one side of the jump.
		start, end := t.ZoneBounds()
		if wallAfter(t, w) {
			return start
		}
		return end
	}
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return t
	}
	_, offset := t.Zone()
	_, before := start.Add(-time.Second).Zone()
	if before > offset {
		// The clocks went back at start: the same wall time may have
		// happened in the zone before it too.
		if earlier := t.Add(-time.Duration(before-offset) * time.Second); earlier.Before(start) {
			if e := earlier.In(loc); e.Hour()*60+e.Minute() == w.min && e.Day() == w.day.Day() {
				return earlier
			}
		}
	}
	return t
}

// wallAfter reports whether t's wall clock in its zone is later than w.
func wallAfter(t time.Time, w wall) bool {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !d.Equal(w.day) {
		return d.After(w.day)
	}
	return t.Hour()*60+t.Minute() > w.min
}

// catchUp starts from due, an occurrence at or before now that has not
// fired: it returns the latest occurrence at or before now (the one that
// fires, standing for all of them), how many earlier ones it stands for,
// and the first occurrence after now.
func (c *cronSpec) catchUp(due, now time.Time) (latest time.Time, missed int64, next time.Time, ok bool) {
	latest = due
	if c.every > 0 && now.After(due) {
		missed = int64(now.Sub(due) / c.every)
		latest = due.Add(time.Duration(missed) * c.every)
		return latest, missed, latest.Add(c.every), true
	}
	for {
		n, ok := c.next(latest)
		if !ok {
			return latest, missed, time.Time{}, false
		}
		if n.After(now) {
			return latest, missed, n, true
		}
		latest, missed = n, missed+1
	}
}

// zones caches time.LoadLocation, which reads the zone file on every call.
var zones sync.Map // name → *time.Location

// loadZone returns the IANA time zone name; "" is UTC. "Local" is refused:
// it means a different zone on each machine that runs a scheduler.
func loadZone(name string) (*time.Location, error) {
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	if name == "Local" {
		return nil, errors.New(`"Local" differs between machines: name the zone, such as Europe/Berlin`)
	}
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q (want an IANA name such as Europe/Berlin or America/New_York)", name)
	}
	zones.Store(name, loc)
	return loc, nil
}
