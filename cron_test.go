package pgqrs

import (
	"strings"
	"testing"
	"time"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := loadZone(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestCronNext checks next-occurrence arithmetic: fields, lists, ranges,
// steps, names, the day-of-month/day-of-week rule, month ends, leap days,
// descriptors, @every, and daylight-saving jumps in both directions.
func TestCronNext(t *testing.T) {
	t.Parallel()
	cases := []struct {
		expr, zone string
		after      string // RFC 3339
		want       string // RFC 3339, compared as instants
	}{
		{"* * * * *", "", "2026-01-01T10:00:30Z", "2026-01-01T10:01:00Z"},
		{"* * * * *", "", "2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z"},
		{"*/15 * * * *", "", "2026-01-01T10:07:00Z", "2026-01-01T10:15:00Z"},
		{"5/20 * * * *", "", "2026-01-01T10:30:00Z", "2026-01-01T10:45:00Z"},
		{"0 9 * * MON-FRI", "", "2026-01-02T10:00:00Z", "2026-01-05T09:00:00Z"}, // Friday → Monday
		{"0 22 * * 1-5", "", "2026-01-01T23:00:00Z", "2026-01-02T22:00:00Z"},
		{"0 0 * * 7", "", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"}, // 7 is Sunday
		{"0 0 * * sun", "", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"},
		{"0 12 1 JAN,jul *", "", "2026-02-01T00:00:00Z", "2026-07-01T12:00:00Z"},
		{"0 0 31 * *", "", "2026-04-01T00:00:00Z", "2026-05-31T00:00:00Z"}, // April has 30 days
		{"0 0 29 2 *", "", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z"},
		{"0 0 29 2 *", "", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z"},   // 2100 is no leap year
		{"0 0 13 * FRI", "", "2026-02-01T00:00:00Z", "2026-02-06T00:00:00Z"}, // 13th OR Friday
		{"0 0 13 2 FRI", "", "2026-02-07T00:00:00Z", "2026-02-13T00:00:00Z"},
		{"0 0 13 2 FRI", "", "2026-02-28T00:00:00Z", "2027-02-05T00:00:00Z"},
		{"0 0 */1 * FRI", "", "2026-02-01T00:00:00Z", "2026-02-06T00:00:00Z"}, // "*…" day-of-month: AND
		{"0 0 1-7 * *", "", "2026-02-08T00:00:00Z", "2026-03-01T00:00:00Z"},
		{"0 0 1 * */7", "", "2026-01-02T00:00:00Z", "2026-02-01T00:00:00Z"}, // 1st AND Sunday: Feb 1 2026
		{"30 4 1,15 * *", "", "2026-01-15T04:30:00Z", "2026-02-01T04:30:00Z"},
		{"0 0 1 1 *", "", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z"},
		{"@yearly", "", "2026-06-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"@annually", "", "2026-06-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"@monthly", "", "2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z"},
		{"@weekly", "", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"},
		{"@daily", "", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},
		{"@midnight", "", "2026-01-01T12:00:00Z", "2026-01-02T00:00:00Z"},
		{"@HOURLY", "", "2026-01-01T12:59:59Z", "2026-01-01T13:00:00Z"},
		{"@every 10m", "", "2026-01-01T10:07:30Z", "2026-01-01T10:10:00Z"},
		{"@every 1s", "", "2026-01-01T10:00:00.5Z", "2026-01-01T10:00:01Z"},
		{"@every 1s", "", "2026-01-01T10:00:00Z", "2026-01-01T10:00:01Z"},
		{"@every 1h", "Europe/Berlin", "2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z"}, // elapsed time: no zone
		{"0 9 * * *", "America/New_York", "2026-01-01T00:00:00Z", "2026-01-01T14:00:00Z"},

		// Europe/Berlin: 2026-03-29 02:00 CET → 03:00 CEST; 2026-10-25 03:00 CEST → 02:00 CET.
		{"30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z"}, // skipped: at the jump (03:00 CEST)
		{"30 2 * * *", "Europe/Berlin", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"},
		{"0 * * * *", "Europe/Berlin", "2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z"}, // 02:00 skipped → 03:00 CEST
		{"0 * * * *", "Europe/Berlin", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"}, // then 04:00 CEST, once
		{"*/15 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z"},
		{"*/15 2 * * *", "Europe/Berlin", "2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"}, // the skipped hour fired once
		{"30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z"},   // twice: the first (CEST)
		{"30 2 * * *", "Europe/Berlin", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"},
		{"*/30 * * * *", "Europe/Berlin", "2026-10-25T00:15:00Z", "2026-10-25T00:30:00Z"}, // 02:30 CEST
		{"*/30 * * * *", "Europe/Berlin", "2026-10-25T00:30:00Z", "2026-10-25T02:00:00Z"}, // 03:00 CET: the repeat is skipped
		{"*/30 * * * *", "Europe/Berlin", "2026-10-25T01:10:00Z", "2026-10-25T02:00:00Z"}, // from inside the repeat

		// America/New_York: 2026-03-08 02:00 EST → 03:00 EDT; 2026-11-01 02:00 EDT → 01:00 EST.
		{"30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", "2026-03-08T07:00:00Z"}, // at the jump (03:00 EDT)
		{"30 2 * * *", "America/New_York", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"},
		{"30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", "2026-11-01T05:30:00Z"}, // 01:30 EDT, the first
		{"30 1 * * *", "America/New_York", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"},
		{"0 0 1 * *", "America/New_York", "2026-02-15T00:00:00Z", "2026-03-01T05:00:00Z"},

		// Australia/Lord_Howe moves by 30 minutes: 2026-10-04 02:00 → 02:30.
		{"15 2 * * *", "Australia/Lord_Howe", "2026-10-03T00:00:00Z", "2026-10-03T15:30:00Z"},
	}
	for _, c := range cases {
		if c.after == "" {
			continue
		}
		spec, err := parseCron(c.expr, mustZone(t, c.zone))
		if err != nil {
			t.Errorf("parse %q: %v", c.expr, err)
			continue
		}
		after, _ := time.Parse(time.RFC3339Nano, c.after)
		want, _ := time.Parse(time.RFC3339, c.want)
		got, ok := spec.next(after)
		if !ok || !got.Equal(want) {
			t.Errorf("%q in %q after %s = %v (%v), want %s", c.expr, c.zone, c.after, got.UTC().Format(time.RFC3339), ok, c.want)
		}
	}
}

// TestCronNextIsStrictlyLater walks a year of occurrences of a few
// expressions across daylight-saving changes: each is after the one before,
// and none comes twice.
func TestCronNextIsStrictlyLater(t *testing.T) {
	t.Parallel()
	for _, zone := range []string{"Europe/Berlin", "America/New_York", "Australia/Lord_Howe"} {
		for _, expr := range []string{"*/20 * * * *", "0 * * * *", "30 2 * * *", "0 1-3 * * *"} {
			spec, err := parseCron(expr, mustZone(t, zone))
			if err != nil {
				t.Fatal(err)
			}
			at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for at.Year() == 2026 {
				n, ok := spec.next(at)
				if !ok || !n.After(at) {
					t.Fatalf("%q in %s: next(%v) = %v, %v", expr, zone, at, n, ok)
				}
				at = n
			}
		}
	}
}

func TestCronCatchUp(t *testing.T) {
	t.Parallel()
	spec, _ := parseCron("*/10 * * * *", time.UTC)
	due := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	latest, missed, next, ok := spec.catchUp(due, due.Add(35*time.Minute))
	if !ok || !latest.Equal(due.Add(30*time.Minute)) || missed != 3 || !next.Equal(due.Add(40*time.Minute)) {
		t.Errorf("catchUp = %v, %d, %v, %v", latest, missed, next, ok)
	}
	latest, missed, next, _ = spec.catchUp(due, due)
	if !latest.Equal(due) || missed != 0 || !next.Equal(due.Add(10*time.Minute)) {
		t.Errorf("catchUp on time = %v, %d, %v", latest, missed, next)
	}
	every, _ := parseCron("@every 1s", time.UTC)
	latest, missed, next, _ = every.catchUp(due, due.Add(5500*time.Millisecond))
	if !latest.Equal(due.Add(5*time.Second)) || missed != 5 || !next.Equal(due.Add(6*time.Second)) {
		t.Errorf("@every catchUp = %v, %d, %v", latest, missed, next)
	}
}

// TestCronErrorsNameTheField checks that every bad expression is refused
// with a message naming what is wrong.
func TestCronErrorsNameTheField(t *testing.T) {
	t.Parallel()
	cases := []struct{ expr, want string }{
		{"", "has 0 fields, want 5"},
		{"* * * *", "has 4 fields, want 5"},
		{"* * * * * *", "has 6 fields"},
		{"60 * * * *", `minute field "60": 60 is out of range 0-59`},
		{"* 24 * * *", `hour field "24": 24 is out of range 0-23`},
		{"* * 0 * *", `day-of-month field "0": 0 is out of range 1-31`},
		{"* * * 13 *", `month field "13": 13 is out of range 1-12`},
		{"* * * * 8", `day-of-week field "8": 8 is out of range 0-7`},
		{"* * * FOO *", `month field "FOO": "FOO" is neither a number nor a name`},
		{"* * * * MONDAY", `day-of-week field "MONDAY"`},
		{"x * * * *", `minute field "x": "x" is not a number`},
		{"*/0 * * * *", `minute field "*/0": step "0" must be a positive whole number`},
		{"*/x * * * *", `step "x"`},
		{"5-1 * * * *", `minute field "5-1": range "5-1" runs backwards`},
		{"1,,2 * * * *", `minute field "1,,2": empty list item`},
		{"0 0 30 2 *", `day-of-month field "30": no such day in the months of "2"`},
		{"0 0 31 4,6,9,11 *", "would never fire"},
		{"@fortnightly", `unknown descriptor "@fortnightly"`},
		{"@every", "@every needs a duration"},
		{"@every 500ms", `@every "500ms": below the minimum of 1s`},
		{"@every 1.5s", "not a whole number of seconds"},
		{"@every soon", `@every "soon": not a duration`},
		{"@every -1m", "below the minimum"},
	}
	for _, c := range cases {
		_, err := parseCron(c.expr, time.UTC)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseCron(%q) = %v, want an error containing %q", c.expr, err, c.want)
		}
	}
	for _, ok := range []string{"0 0 31 1-12 *", "0 0 30 2 MON", "0 0 29 2 *", "@every 1s", "@EVERY 1h30m", "  @daily  ", "0 0 * * 0-7"} {
		if _, err := parseCron(ok, time.UTC); err != nil {
			t.Errorf("parseCron(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"Mars/Olympus", "Local"} {
		if _, err := loadZone(bad); err == nil {
			t.Errorf("loadZone(%q) succeeded", bad)
		}
	}
}
