package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pgqrs/pgqrs-go"
)

// TestWorkflowSend sends a signal to a waiting run with workflow send, and
// reads the run's signals, wait and events with workflow show.
func TestWorkflowSend(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := b.store()
		wf := pgqrs.NewWorkflow("approvals", func(ctx context.Context, run *pgqrs.Run, _ struct{}) (bool, error) {
			if err := pgqrs.SetEvent(ctx, run, "stage", "waiting for approval"); err != nil {
				return false, err
			}
			v, ok, err := pgqrs.Recv[struct {
				OK bool `json:"ok"`
			}](ctx, run, "approval", "approve", time.Hour)
			if err != nil || !ok {
				return false, err
			}
			return v.OK, pgqrs.SetEvent(ctx, run, "stage", "decided")
		})
		id, err := wf.Trigger(t.Context(), s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		serve(t, s, wf)
		deadline := time.Now().Add(30 * time.Second)
		var shown map[string]any
		for {
			b.json(&shown, "workflow", "show", itoa(id))
			if shown["waiting"] != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %d does not wait for its signal: %v", id, shown)
			}
			time.Sleep(20 * time.Millisecond)
		}
		out := b.ok("workflow", "show", itoa(id))
		for _, want := range []string{"WAITING IN  FOR TOPIC  UNTIL", "approval    approve", "EVENT  UPDATED", `"waiting for approval"`} {
			if !strings.Contains(out, want) {
				t.Errorf("workflow show of a waiting run lacks %q:\n%s", want, out)
			}
		}

		var sent signalSentJSON
		b.json(&sent, "workflow", "send", itoa(id), "approve", `{"ok": true}`)
		if diff := cmp.Diff(signalSentJSON{RunID: id, Topic: "approve"}, sent); diff != "" {
			t.Errorf("workflow send --json (-want +got):\n%s", diff)
		}
		waitStatus(t, s, id, pgqrs.RunSucceeded)
		out = b.ok("workflow", "show", itoa(id))
		for _, want := range []string{"SIGNAL  TOPIC    SENT", "approve", "approval", `{"ok":true}`, `"decided"`} {
			if !strings.Contains(out, want) {
				t.Errorf("workflow show lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "WAITING IN") {
			t.Errorf("workflow show of a finished run shows a wait:\n%s", out)
		}
		out = b.ok("--json", "workflow", "show", itoa(id))
		wantKeys := []string{"created_at", "events", "finished_at", "id", "input", "output", "started_at", "status", "steps", "updated_at", "workflow", "signals"}
		slices.Sort(wantKeys)
		if diff := cmp.Diff(wantKeys, keys(t, out)); diff != "" {
			t.Errorf("workflow show keys (-want +got):\n%s", diff)
		}
		var got struct {
			Signals []struct {
				ID         int64          `json:"id"`
				Topic      string         `json:"topic"`
				Payload    map[string]any `json:"payload"`
				SentAt     time.Time      `json:"sent_at"`
				ReceivedBy string         `json:"received_by"`
				ReceivedAt *time.Time     `json:"received_at"`
			} `json:"signals"`
			Events []struct {
				Key       string    `json:"key"`
				Value     any       `json:"value"`
				UpdatedAt time.Time `json:"updated_at"`
			} `json:"events"`
		}
		b.json(&got, "workflow", "show", itoa(id))
		if len(got.Signals) != 1 || got.Signals[0].Topic != "approve" || got.Signals[0].Payload["ok"] != true ||
			got.Signals[0].ReceivedBy != "approval" || got.Signals[0].ReceivedAt == nil || got.Signals[0].SentAt.IsZero() {
			t.Errorf("signals = %+v", got.Signals)
		}
		if len(got.Events) != 1 || got.Events[0].Key != "stage" || got.Events[0].Value != "decided" || got.Events[0].UpdatedAt.IsZero() {
			t.Errorf("events = %+v", got.Events)
		}

		// Text output, to a run that has not reached its Recv yet.
		next, err := wf.Trigger(t.Context(), s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		if out := b.ok("workflow", "send", itoa(next), "approve", `{"ok": false}`); out != "sent {\"ok\":false} to run "+itoa(next)+" on topic \"approve\"\n" {
			t.Errorf("workflow send printed %q", out)
		}
		waitStatus(t, s, next, pgqrs.RunSucceeded)

		b.fails(2, `"x" is not a run ID`, "workflow", "send", "x", "approve", "1")
		b.fails(2, "not valid JSON", "workflow", "send", itoa(id), "approve", "{")
		b.fails(2, `topic "" must be 1 to 256 bytes`, "workflow", "send", itoa(id), "", "1")
		b.fails(1, "run not found", "workflow", "send", itoa(id+1000), "approve", "1")
		b.fails(1, "run already finished: it is SUCCESS", "workflow", "send", itoa(id), "approve", "1")
	})
}
