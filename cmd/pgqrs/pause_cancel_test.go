package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestQueuePauseResume(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		b.ok("queue", "create", "jobs")
		b.ok("queue", "create", "other")
		var got map[string]any
		b.json(&got, "queue", "pause", "jobs")
		if diff := cmp.Diff(map[string]any{"queue": "jobs", "paused": true}, got); diff != "" {
			t.Errorf("queue pause (-want +got):\n%s", diff)
		}
		if out := b.ok("queue", "pause", "jobs"); !strings.Contains(out, `paused queue "jobs"`) {
			t.Errorf("queue pause again, as text: %q", out)
		}
		b.fails(1, `queue "nope": queue not found`, "queue", "pause", "nope")
		b.fails(1, `queue "nope": queue not found`, "queue", "resume", "nope")

		var qs []struct {
			Name     string     `json:"name"`
			Paused   bool       `json:"paused"`
			PausedAt *time.Time `json:"paused_at"`
		}
		b.json(&qs, "queue", "list")
		if len(qs) != 2 || qs[0].Name != "jobs" || !qs[0].Paused || qs[0].PausedAt == nil || qs[1].Paused || qs[1].PausedAt != nil {
			t.Errorf("queue list while jobs is paused: %+v", qs)
		}
		if out := b.ok("queue", "list"); !strings.Contains(out, "PAUSED") {
			t.Errorf("queue list table has no PAUSED column:\n%s", out)
		}
		var m struct {
			Paused   bool       `json:"paused"`
			PausedAt *time.Time `json:"paused_at"`
			Visible  int64      `json:"visible"`
		}
		// Enqueue works; recv claims nothing.
		b.sendIDs("", "jobs", `{"n": 1}`)
		if out := b.ok("--json", "recv", "jobs"); strings.TrimSpace(out) != "[]" {
			t.Errorf("recv from a paused queue: %s", out)
		}
		b.json(&m, "metrics", "jobs")
		if !m.Paused || m.PausedAt == nil || m.Visible != 1 {
			t.Errorf("metrics of the paused queue: %+v", m)
		}
		if out := b.ok("metrics"); !strings.Contains(out, "PAUSED") || !strings.Contains(out, "yes") {
			t.Errorf("metrics table does not show the pause:\n%s", out)
		}

		b.json(&got, "queue", "resume", "jobs")
		if diff := cmp.Diff(map[string]any{"queue": "jobs", "paused": false}, got); diff != "" {
			t.Errorf("queue resume (-want +got):\n%s", diff)
		}
		b.json(&m, "metrics", "jobs")
		if m.Paused || m.PausedAt != nil {
			t.Errorf("metrics after resume: %+v", m)
		}
		var msgs []message
		b.json(&msgs, "recv", "jobs", "--archive")
		if len(msgs) != 1 {
			t.Errorf("recv after resume: %+v", msgs)
		}
		b.noLiveWorkers()
	})
}

func TestCancelCommand(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		b.ok("queue", "create", "jobs")
		ids := b.sendIDs("", "jobs", `{"n": 1}`, "--count", "3")
		var got map[string]any
		b.json(&got, "cancel", "jobs", itoa(ids[0]), itoa(ids[1]))
		if diff := cmp.Diff(map[string]any{"queue": "jobs", "cancelled": []any{float64(ids[0]), float64(ids[1])}}, got); diff != "" {
			t.Errorf("cancel (-want +got):\n%s", diff)
		}
		if out := b.ok("cancel", "jobs", itoa(ids[2])); !strings.Contains(out, "cancelled messages") {
			t.Errorf("cancel, as text: %q", out)
		}
		b.fails(1, "message not found", "cancel", "jobs", itoa(ids[0]))
		b.fails(1, `queue "nope": queue not found`, "cancel", "nope", "1")
		b.fails(2, "not a message ID", "cancel", "jobs", "x")
		b.fails(2, "", "cancel", "jobs")

		var arch []struct {
			ID        int64 `json:"id"`
			Cancelled bool  `json:"cancelled"`
			Dead      bool  `json:"dead"`
		}
		b.json(&arch, "archive", "list", "jobs")
		if len(arch) != 3 || !arch[0].Cancelled || arch[0].Dead {
			t.Errorf("archive list after cancels: %+v", arch)
		}
		if out := b.ok("archive", "list", "jobs"); !strings.Contains(out, "(cancelled)") {
			t.Errorf("archive list table does not show the cancel:\n%s", out)
		}
		if diff := cmp.Diff(metrics{Queue: "jobs", Archived: 3}, b.metrics("jobs"), counts); diff != "" {
			t.Errorf("metrics after cancels (-want +got):\n%s", diff)
		}
	})
}
