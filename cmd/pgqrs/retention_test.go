package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestQueueRetentionAndArchiveExpire(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		b.ok("queue", "create", "jobs")
		b.ok("queue", "create", "other")
		var got map[string]any
		b.json(&got, "queue", "retention", "jobs")
		if diff := cmp.Diff(map[string]any{"queue": "jobs"}, got); diff != "" {
			t.Errorf("retention of a new queue (-want +got):\n%s", diff)
		}
		b.json(&got, "queue", "retention", "jobs", "--archived", "168h", "--dead-letters", "720h")
		if diff := cmp.Diff(map[string]any{"queue": "jobs", "archived": "168h0m0s", "dead_letters": "720h0m0s"}, got); diff != "" {
			t.Errorf("retention set (-want +got):\n%s", diff)
		}
		if out := b.ok("queue", "retention", "jobs"); !strings.Contains(out, "archived messages 168h0m0s and dead letters 720h0m0s") {
			t.Errorf("retention as text: %q", out)
		}
		b.json(&got, "queue", "retention", "jobs", "--none")
		if diff := cmp.Diff(map[string]any{"queue": "jobs"}, got); diff != "" {
			t.Errorf("retention --none (-want +got):\n%s", diff)
		}
		b.fails(2, "--archived must not be negative", "queue", "retention", "jobs", "--archived", "-1h")
		b.fails(2, "--none removes the policy", "queue", "retention", "jobs", "--none", "--archived", "1h")
		b.fails(1, `queue "nope": queue not found`, "queue", "retention", "nope", "--archived", "1h")

		// Two archived messages in jobs, one in other; all of them older
		// than 200 ms after a pause.
		b.sendIDs("", "jobs", `{"n": 1}`)
		b.sendIDs("", "jobs", `{"n": 2}`)
		b.sendIDs("", "other", `{"n": 3}`)
		b.ok("recv", "jobs", "--batch", "2", "--archive")
		b.ok("recv", "other", "--archive")
		time.Sleep(300 * time.Millisecond)
		b.fails(2, "give --archived, --dead-letters or both", "archive", "expire")
		b.fails(1, `queue "nope": queue not found`, "archive", "expire", "nope", "--archived", "1h")
		b.json(&got, "archive", "expire", "jobs", "--archived", "1h")
		if diff := cmp.Diff(map[string]any{"queue": "jobs", "archived": 0.0, "dead_letters": 0.0}, got); diff != "" {
			t.Errorf("expire older than an hour (-want +got):\n%s", diff)
		}
		b.json(&got, "archive", "expire", "jobs", "--archived", "200ms")
		if diff := cmp.Diff(map[string]any{"queue": "jobs", "archived": 2.0, "dead_letters": 0.0}, got); diff != "" {
			t.Errorf("expire jobs (-want +got):\n%s", diff)
		}
		if out := b.ok("archive", "expire", "--archived", "200ms"); !strings.Contains(out, "deleted 1 archived messages and 0 dead letters of every queue") {
			t.Errorf("expire every queue, as text: %q", out)
		}
	})
}
