package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pgqrs/pgqrs-go"
)

// schedule is the JSON of a schedule.
type schedule struct {
	Name      string            `json:"name"`
	Cron      string            `json:"cron"`
	TimeZone  string            `json:"timezone"`
	Queue     string            `json:"queue"`
	Workflow  string            `json:"workflow"`
	Payload   any               `json:"payload"`
	Priority  int               `json:"priority"`
	Headers   map[string]string `json:"headers"`
	Paused    bool              `json:"paused"`
	NextRunAt time.Time         `json:"next_run_at"`
	LastRunAt *time.Time        `json:"last_run_at"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

func TestScheduleCommands(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		b.ok("queue", "create", "reports")
		var added schedule
		b.json(&added, "schedule", "add", "nightly", "--cron", "0 3 * * *", "--tz", "Europe/Berlin", "--queue", "reports",
			"--payload", `{"kind":"daily"}`, "--priority", "2", "--header", "team=ops")
		berlin, _ := time.LoadLocation("Europe/Berlin")
		if next := added.NextRunAt.In(berlin); next.Hour() != 3 || next.Minute() != 0 || !next.After(time.Now()) {
			t.Errorf("next run %v", next)
		}
		want := schedule{Name: "nightly", Cron: "0 3 * * *", TimeZone: "Europe/Berlin", Queue: "reports",
			Payload: map[string]any{"kind": "daily"}, Priority: 2, Headers: map[string]string{"team": "ops"}}
		got := added
		got.NextRunAt, got.CreatedAt, got.UpdatedAt = time.Time{}, time.Time{}, time.Time{}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("schedule add (-want +got):\n%s", diff)
		}
		if out := b.ok("schedule", "add", "hourly", "--cron", "@hourly", "--queue", "reports"); !strings.Contains(out, `schedule "hourly": @hourly UTC, queue reports; next run`) {
			t.Errorf("schedule add text: %q", out)
		}

		var list []schedule
		b.json(&list, "schedule", "list")
		if len(list) != 2 || list[0].Name != "hourly" || list[1].Name != "nightly" || list[0].Payload != nil {
			t.Errorf("schedule list = %+v", list)
		}
		if out := b.ok("schedule", "list"); !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "queue reports") {
			t.Errorf("schedule list table:\n%s", out)
		}

		var paused schedule
		b.json(&paused, "schedule", "pause", "nightly")
		if !paused.Paused {
			t.Errorf("after pause: %+v", paused)
		}
		if out := b.ok("schedule", "list"); !strings.Contains(out, "paused") {
			t.Errorf("schedule list of a paused schedule:\n%s", out)
		}
		var ran map[string]any
		b.json(&ran, "schedule", "run", "nightly")
		if ran["schedule"] != "nightly" || ran["queue"] != "reports" || ran["message_id"] == nil {
			t.Errorf("schedule run = %v", ran)
		}
		var msgs []struct {
			Headers map[string]string `json:"headers"`
			Payload any               `json:"payload"`
		}
		b.json(&msgs, "recv", "reports", "--archive")
		if len(msgs) != 1 || msgs[0].Headers[pgqrs.HeaderSchedule] != "nightly" || msgs[0].Headers[pgqrs.HeaderScheduledAt] == "" ||
			msgs[0].Headers["team"] != "ops" {
			t.Errorf("the occurrence's message = %+v", msgs)
		}
		if out := b.ok("schedule", "resume", "nightly"); !strings.Contains(out, `resumed schedule "nightly"`) {
			t.Errorf("schedule resume: %q", out)
		}
		b.json(&list, "schedule", "list")
		if list[1].Paused || list[1].LastRunAt == nil {
			t.Errorf("after resume and run: %+v", list[1])
		}

		var deleted map[string]string
		b.json(&deleted, "schedule", "delete", "hourly")
		if diff := cmp.Diff(map[string]string{"deleted": "hourly"}, deleted); diff != "" {
			t.Errorf("schedule delete (-want +got):\n%s", diff)
		}
		for _, cmd := range []string{"pause", "resume", "delete", "run"} {
			b.fails(1, `schedule "hourly": schedule not found`, "schedule", cmd, "hourly")
		}
		b.fails(2, `invalid schedule "bad": cron: hour field "25"`, "schedule", "add", "bad", "--cron", "0 25 * * *", "--queue", "reports")
		b.fails(2, `invalid schedule "bad": timezone`, "schedule", "add", "bad", "--cron", "@daily", "--tz", "Mars/Olympus", "--queue", "reports")
		b.fails(2, "invalid payload", "schedule", "add", "bad", "--cron", "@daily", "--queue", "reports", "--payload", "{")
		b.fails(1, "queue not found", "schedule", "add", "bad", "--cron", "@daily", "--queue", "nope")
		b.fails(1, "workflow not registered", "schedule", "add", "bad", "--cron", "@daily", "--workflow", "nope")
	})
}

// TestScheduleWorkflowCommands: a schedule that starts workflow runs, run
// by hand from the command line.
func TestScheduleWorkflowCommands(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := b.store()
		wf := pgqrs.NewWorkflow("report", func(ctx context.Context, r *pgqrs.Run, in map[string]int) (int, error) { return in["n"] * 2, nil })
		if err := wf.Register(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		var added schedule
		b.json(&added, "schedule", "add", "weekly", "--cron", "@weekly", "--workflow", "report", "--input", `{"n":21}`)
		if added.Workflow != "report" || added.Queue != "" {
			t.Errorf("schedule add = %+v", added)
		}
		var ran map[string]any
		b.json(&ran, "schedule", "run", "weekly")
		id, ok := ran["run_id"].(float64)
		if !ok || ran["workflow"] != "report" {
			t.Fatalf("schedule run = %v", ran)
		}
		serve(t, s, wf)
		waitStatus(t, s, int64(id), pgqrs.RunSucceeded)
		if out := b.ok("schedule", "run", "weekly"); !strings.Contains(out, `of workflow "report"`) {
			t.Errorf("schedule run text: %q", out)
		}
	})
}

// TestScheduleUsageErrors: command-line mistakes exit 2 before the
// database is touched.
func TestScheduleUsageErrors(t *testing.T) {
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "usage.db")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"schedule"}, "schedule: missing subcommand: want one of add, list, pause, resume, delete, run"},
		{[]string{"schedule", "add"}, "schedule add: missing argument: want NAME"},
		{[]string{"schedule", "add", "s", "--queue", "q"}, "--cron is required"},
		{[]string{"schedule", "add", "s", "--cron", "@daily"}, "give one of --queue and --workflow"},
		{[]string{"schedule", "add", "s", "--cron", "@daily", "--queue", "q", "--workflow", "w"}, "give one of --queue and --workflow"},
		{[]string{"schedule", "add", "s", "--cron", "@daily", "--queue", "q", "--input", "1"}, "--input goes with --workflow"},
		{[]string{"schedule", "add", "s", "--cron", "@daily", "--workflow", "w", "--payload", "1"}, "--payload goes with --queue"},
		{[]string{"schedule", "add", "s", "--cron", "@daily", "--queue", "q", "--header", "novalue"}, "want KEY=VALUE"},
		{[]string{"schedule", "run"}, "schedule run: missing argument: want NAME"},
		{[]string{"schedule", "list", "x"}, `schedule list: unexpected argument "x"`},
	}
	for _, tt := range tests {
		args := append([]string{"--dsn", dsn}, tt.args...)
		checkFailure(t, runBin(t, "", "", nil, args...), 2, tt.want, args)
	}
}
