package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// limitsOut is "queue limit"'s JSON.
type limitsOut struct {
	Limits struct {
		MaxInFlight int    `json:"max_in_flight"`
		PerGroup    int    `json:"per_group"`
		Rate        int    `json:"rate"`
		RatePeriod  string `json:"rate_period"`
	} `json:"limits"`
	InFlight int64 `json:"in_flight"`
}

// TestQueueLimit sets, changes and clears a queue's flow control from the
// command line, sees it in queue list and metrics, and runs a key group in
// order with send --group.
func TestQueueLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		b.ok("queue", "create", "jobs")
		var l limitsOut
		b.json(&l, "queue", "limit", "jobs")
		if l.Limits.MaxInFlight != 0 || l.Limits.Rate != 0 {
			t.Errorf("a new queue's limits: %+v", l)
		}
		b.json(&l, "queue", "limit", "jobs", "--max-in-flight", "2", "--rate", "100/1s")
		if l.Limits.MaxInFlight != 2 || l.Limits.Rate != 100 || l.Limits.RatePeriod != "1s" {
			t.Errorf("after setting: %+v", l)
		}
		// Flags not given keep their settings.
		out := b.ok("queue", "limit", "jobs", "--per-group", "3")
		if want := `queue "jobs": max-in-flight=2 per-group=3 rate=100/1s; in flight: 0/2`; strings.TrimSpace(out) != want {
			t.Errorf("queue limit printed %q, want %q", out, want)
		}
		if out := b.ok("queue", "list"); !strings.Contains(out, "LIMITS") || !strings.Contains(out, "max-in-flight=2 per-group=3 rate=100/1s") {
			t.Errorf("queue list does not show the limits:\n%s", out)
		}
		b.sendIDs("", "jobs", `{"n":1}`, "--count", "3")
		var claimed []message
		b.json(&claimed, "recv", "jobs", "--batch", "10")
		if len(claimed) != 2 {
			t.Errorf("a claim of 10 under max-in-flight 2 took %d messages", len(claimed))
		}
		b.json(&l, "queue", "limit", "jobs", "--none")
		if l.Limits.MaxInFlight != 0 || l.Limits.PerGroup != 0 || l.Limits.Rate != 0 {
			t.Errorf("after --none: %+v", l)
		}
		b.fails(2, "--none clears every limit", "queue", "limit", "jobs", "--none", "--rate", "1/1s")
		b.fails(2, "--rate wants N/PERIOD", "queue", "limit", "jobs", "--rate", "10")
		b.fails(2, "must not be negative", "queue", "limit", "jobs", "--max-in-flight", "-1")
		b.fails(1, `queue "nope": queue not found`, "queue", "limit", "nope", "--max-in-flight", "1")

		b.ok("queue", "create", "grouped")
		var ids []int64
		for range 3 {
			ids = append(ids, b.sendIDs("", "grouped", `{}`, "--group", "cust-42")...)
		}
		var got []message
		b.json(&got, "recv", "grouped", "--batch", "10", "--archive")
		if len(got) != 1 || got[0].ID != ids[0] {
			t.Fatalf("first claim of the group: %+v, want only %d", got, ids[0])
		}
		b.json(&got, "recv", "grouped", "--batch", "10", "--archive")
		if diff := cmp.Diff([]int64{ids[1]}, []int64{got[0].ID}); diff != "" || len(got) != 1 {
			t.Fatalf("second claim of the group (-want +got):\n%s", diff)
		}
	})
}
