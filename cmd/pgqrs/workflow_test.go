package main

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pgqrs/pgqrs-go"
)

// run is the JSON of a workflow run; steps only from "workflow show".
type run struct {
	ID         int64      `json:"id"`
	Workflow   string     `json:"workflow"`
	Status     string     `json:"status"`
	Input      any        `json:"input"`
	Output     any        `json:"output"`
	Error      string     `json:"error"`
	ResumeAt   *time.Time `json:"resume_at"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	Steps      []step     `json:"steps"`
}

// step is the JSON of one recorded step.
type step struct {
	Position  int        `json:"position"`
	Name      string     `json:"name"`
	Status    string     `json:"status"`
	Attempts  int        `json:"attempts"`
	Output    any        `json:"output"`
	Error     string     `json:"error"`
	RetryAt   *time.Time `json:"retry_at"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// runTimes are the fields of runs and steps that the tests check apart.
var runTimes = cmp.Options{
	cmpopts.IgnoreFields(run{}, "CreatedAt", "StartedAt", "FinishedAt", "UpdatedAt"),
	cmpopts.IgnoreFields(step{}, "UpdatedAt"),
}

// store opens the backend's database in the test process, to define, serve
// and trigger a workflow as an application would.
func (b *backend) store() *pgqrs.Store {
	b.t.Helper()
	var dsn string
	var opts []pgqrs.Option
	for i := 0; i+1 < len(b.global); i += 2 {
		switch b.global[i] {
		case "--dsn":
			dsn = b.global[i+1]
		case "--schema":
			opts = append(opts, pgqrs.WithSchema(b.global[i+1]))
		}
	}
	s, err := pgqrs.Open(b.t.Context(), dsn, opts...)
	if err != nil {
		b.t.Fatalf("open store: %v", err)
	}
	b.t.Cleanup(func() { s.Close() })
	return s
}

// serve runs wf.Serve in the background until the returned stop is called
// (or the test ends).
func serve[In, Out any](t *testing.T, s *pgqrs.Store, wf *pgqrs.Workflow[In, Out]) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- wf.Serve(ctx, s, &pgqrs.RunOptions{Concurrency: 4, PollInterval: 50 * time.Millisecond})
	}()
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("Serve did not return within 60s of cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitStatus waits until run id is in status want.
func waitStatus(t *testing.T, s *pgqrs.Store, id int64, want pgqrs.RunStatus) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := s.Runs().Get(t.Context(), id)
		if err != nil {
			t.Fatalf("run %d: %v", id, err)
		}
		if info.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %d is %s after 30s, want %s (error %q)", id, info.Status, want, info.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type order struct {
	Item string `json:"item"`
}

type receipt struct {
	Receipt string `json:"receipt"`
}

// TestWorkflowCommands runs a small workflow in the test process, with a
// run that succeeds, one that fails, one that pauses and one that waits,
// and drives them with the workflow commands.
func TestWorkflowCommands(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		if out := b.ok("--json", "workflow", "list"); strings.TrimSpace(out) != "[]" {
			t.Errorf("workflow list with no workflows: %q, want []", out)
		}
		if out := b.ok("--json", "workflow", "runs"); strings.TrimSpace(out) != "[]" {
			t.Errorf("workflow runs with no runs: %q, want []", out)
		}

		var fixed, approved atomic.Bool // the card works again; the order is approved
		var reserved atomic.Int64       // times the "reserve" step ran
		long := strings.Repeat("x", 200)
		wf := pgqrs.NewWorkflow("orders", func(ctx context.Context, r *pgqrs.Run, in order) (receipt, error) {
			res, err := pgqrs.Step(ctx, r, "reserve", func(context.Context) (string, error) {
				reserved.Add(1)
				return "reserved " + in.Item, nil
			})
			if err != nil {
				return receipt{}, err
			}
			if _, err := pgqrs.Step(ctx, r, "charge", func(context.Context) (int, error) {
				if in.Item == "declined" && !fixed.Load() {
					return 0, pgqrs.Permanent(errors.New("card declined"))
				}
				return 42, nil
			}); err != nil {
				return receipt{}, err
			}
			if _, err := pgqrs.Step(ctx, r, "approve", func(context.Context) (bool, error) {
				if in.Item == "big" && !approved.Load() {
					return false, pgqrs.Pause(time.Time{})
				}
				return true, nil
			}); err != nil {
				return receipt{}, err
			}
			if _, err := pgqrs.Step(ctx, r, "report", func(context.Context) (string, error) {
				return long, nil
			}); err != nil {
				return receipt{}, err
			}
			return receipt{Receipt: res}, nil
		})
		s := b.store()
		if err := wf.Register(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		trigger := func(item string, opts ...pgqrs.EnqueueOption) int64 {
			t.Helper()
			id, err := wf.Trigger(t.Context(), s, order{Item: item}, opts...)
			if err != nil {
				t.Fatalf("trigger %s: %v", item, err)
			}
			return id
		}
		okID, failID, pauseID := trigger("book"), trigger("declined"), trigger("big")
		laterID := trigger("later", pgqrs.Delay(time.Hour))
		stop := serve(t, s, wf)
		waitStatus(t, s, okID, pgqrs.RunSucceeded)
		waitStatus(t, s, failID, pgqrs.RunFailed)
		waitStatus(t, s, pauseID, pgqrs.RunPaused)
		stop() // the commands below meet runs no worker moves

		// workflow list
		var wfs []struct {
			Name      string           `json:"name"`
			CreatedAt time.Time        `json:"created_at"`
			Runs      map[string]int64 `json:"runs"`
		}
		b.json(&wfs, "workflow", "list")
		wantRuns := map[string]int64{"queued": 1, "running": 0, "paused": 1, "cancelling": 0, "cancelled": 0, "success": 1, "error": 1}
		if len(wfs) != 1 || wfs[0].Name != "orders" || wfs[0].CreatedAt.IsZero() {
			t.Fatalf("workflow list: %+v", wfs)
		}
		if diff := cmp.Diff(wantRuns, wfs[0].Runs); diff != "" {
			t.Errorf("workflow list run counts (-want +got):\n%s", diff)
		}
		out := b.ok("workflow", "list")
		if !strings.HasPrefix(out, "NAME    CREATED") || !strings.Contains(out, "QUEUED  RUNNING  PAUSED") || !strings.Contains(out, "orders") {
			t.Errorf("workflow list table:\n%s", out)
		}

		// workflow runs
		var runs []run
		b.json(&runs, "workflow", "runs")
		wantList := []run{
			{ID: laterID, Workflow: "orders", Status: "QUEUED", Input: map[string]any{"item": "later"}},
			{ID: pauseID, Workflow: "orders", Status: "PAUSED", Input: map[string]any{"item": "big"}},
			{ID: failID, Workflow: "orders", Status: "ERROR", Input: map[string]any{"item": "declined"}, Error: `step "charge" failed after 1 attempt(s): card declined`},
			{ID: okID, Workflow: "orders", Status: "SUCCESS", Input: map[string]any{"item": "book"}, Output: map[string]any{"receipt": "reserved book"}},
		}
		if diff := cmp.Diff(wantList, runs, runTimes); diff != "" {
			t.Errorf("workflow runs (-want +got):\n%s", diff)
		}
		for _, r := range runs {
			finished := r.Status == "SUCCESS" || r.Status == "ERROR"
			if r.CreatedAt.IsZero() || (r.FinishedAt != nil) != finished || (r.StartedAt == nil) != (r.Status == "QUEUED") {
				t.Errorf("run %d (%s): created %v, started %v, finished %v", r.ID, r.Status, r.CreatedAt, r.StartedAt, r.FinishedAt)
			}
		}
		out = b.ok("--json", "workflow", "runs", "--limit", "1")
		var raw []json.RawMessage
		if err := json.Unmarshal([]byte(out), &raw); err != nil || len(raw) != 1 {
			t.Fatalf("workflow runs --limit 1: %v: %s", err, out)
		}
		// Times that do not apply are left out.
		wantKeys := []string{"created_at", "id", "input", "status", "updated_at", "workflow"}
		if diff := cmp.Diff(wantKeys, keys(t, string(raw[0]))); diff != "" {
			t.Errorf("keys of a queued run (-want +got):\n%s", diff)
		}
		for _, tt := range []struct {
			args []string
			want []int64
		}{
			{[]string{"--status", "error"}, []int64{failID}},
			{[]string{"--status", "SUCCESS", "--workflow", "orders"}, []int64{okID}},
			{[]string{"--status", "cancelled"}, nil},
			{[]string{"--limit", "2"}, []int64{laterID, pauseID}},
			{[]string{"--before", itoa(pauseID), "--limit", "2"}, []int64{failID, okID}},
			{[]string{"--before", itoa(okID)}, nil},
		} {
			b.json(&runs, append([]string{"workflow", "runs"}, tt.args...)...)
			var got []int64
			for _, r := range runs {
				got = append(got, r.ID)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("workflow runs %s (-want +got):\n%s", strings.Join(tt.args, " "), diff)
			}
		}
		out = b.ok("workflow", "runs")
		for _, want := range []string{"ID", "WORKFLOW", "STATUS", "RESULT", `{"receipt":"reserved book"}`, "card declined", "paused until resumed", `{"item":"later"}`} {
			if !strings.Contains(out, want) {
				t.Errorf("workflow runs table lacks %q:\n%s", want, out)
			}
		}
		b.fails(2, `unknown run status "BOGUS"`, "workflow", "runs", "--status", "bogus")
		b.fails(1, `workflow not registered: "nope"`, "workflow", "runs", "--workflow", "nope")

		// workflow show
		var got run
		b.json(&got, "workflow", "show", itoa(okID))
		want := run{
			ID: okID, Workflow: "orders", Status: "SUCCESS", Input: map[string]any{"item": "book"},
			Output: map[string]any{"receipt": "reserved book"},
			Steps: []step{
				{Position: 0, Name: "reserve", Status: "SUCCESS", Attempts: 1, Output: "reserved book"},
				{Position: 1, Name: "charge", Status: "SUCCESS", Attempts: 1, Output: 42.0},
				{Position: 2, Name: "approve", Status: "SUCCESS", Attempts: 1, Output: true},
				{Position: 3, Name: "report", Status: "SUCCESS", Attempts: 1, Output: long},
			},
		}
		if diff := cmp.Diff(want, got, runTimes); diff != "" {
			t.Errorf("workflow show %d (-want +got):\n%s", okID, diff)
		}
		out = b.ok("--json", "workflow", "show", itoa(okID))
		wantKeys = []string{"created_at", "finished_at", "id", "input", "output", "started_at", "status", "steps", "updated_at", "workflow"}
		if diff := cmp.Diff(wantKeys, keys(t, out)); diff != "" {
			t.Errorf("workflow show keys (-want +got):\n%s", diff)
		}
		out = b.ok("workflow", "show", itoa(okID))
		for _, want := range []string{"status    SUCCESS", `output    {"receipt":"reserved book"}`, "POS  STEP", "OUTPUT / ERROR", `"reserved book"`, "…"} {
			if !strings.Contains(out, want) {
				t.Errorf("workflow show %d lacks %q:\n%s", okID, want, out)
			}
		}
		if strings.Contains(out, long) {
			t.Errorf("workflow show %d prints the long step output in full:\n%s", okID, out)
		}

		b.json(&got, "workflow", "show", itoa(failID))
		want = run{
			ID: failID, Workflow: "orders", Status: "ERROR", Input: map[string]any{"item": "declined"},
			Error: `step "charge" failed after 1 attempt(s): card declined`,
			Steps: []step{
				{Position: 0, Name: "reserve", Status: "SUCCESS", Attempts: 1, Output: "reserved declined"},
				{Position: 1, Name: "charge", Status: "ERROR", Attempts: 1, Error: "card declined"},
			},
		}
		if diff := cmp.Diff(want, got, runTimes); diff != "" {
			t.Errorf("workflow show %d (-want +got):\n%s", failID, diff)
		}
		if out := b.ok("workflow", "show", itoa(failID)); !strings.Contains(out, "error     step \"charge\" failed") || !strings.Contains(out, "charge   ERROR") {
			t.Errorf("workflow show %d:\n%s", failID, out)
		}

		b.json(&got, "workflow", "show", itoa(pauseID))
		if got.Status != "PAUSED" || got.ResumeAt != nil || len(got.Steps) != 2 || got.Output != nil || got.Error != "" {
			t.Errorf("workflow show %d: %+v, want PAUSED until resumed after two steps", pauseID, got)
		}
		if out := b.ok("workflow", "show", itoa(pauseID)); !strings.Contains(out, "resumes   when resumed (pgqrs workflow resume "+itoa(pauseID)+")") {
			t.Errorf("workflow show %d:\n%s", pauseID, out)
		}
		b.json(&got, "workflow", "show", itoa(laterID))
		if got.Status != "QUEUED" || got.Steps == nil || len(got.Steps) != 0 {
			t.Errorf("workflow show %d: %+v, want QUEUED with steps []", laterID, got)
		}
		if out := b.ok("workflow", "show", itoa(laterID)); !strings.Contains(out, "no steps recorded") {
			t.Errorf("workflow show %d:\n%s", laterID, out)
		}

		// workflow cancel, resume, retry
		type status struct {
			ID     int64  `json:"id"`
			Status string `json:"status"`
		}
		var st status
		b.json(&st, "workflow", "cancel", itoa(laterID))
		if diff := cmp.Diff(status{laterID, "CANCELLED"}, st); diff != "" {
			t.Errorf("workflow cancel %d (-want +got):\n%s", laterID, diff)
		}
		b.fails(1, "cancel run "+itoa(laterID)+": run already finished: it is CANCELLED", "workflow", "cancel", itoa(laterID))
		b.fails(1, "cancel run "+itoa(okID)+": run already finished: it is SUCCESS", "workflow", "cancel", itoa(okID))
		b.fails(1, "resume run "+itoa(failID)+": run already finished: it is ERROR", "workflow", "resume", itoa(failID))
		b.fails(1, "retry needs a run in ERROR; it is PAUSED", "workflow", "retry", itoa(pauseID))
		b.fails(1, "retry needs a run in ERROR; it is SUCCESS", "workflow", "retry", itoa(okID))

		approved.Store(true)
		b.json(&st, "workflow", "resume", itoa(pauseID))
		if diff := cmp.Diff(status{pauseID, "RUNNING"}, st); diff != "" {
			t.Errorf("workflow resume %d (-want +got):\n%s", pauseID, diff)
		}
		b.fails(1, "resume needs a PAUSED run; it is RUNNING", "workflow", "resume", itoa(pauseID))

		fixed.Store(true)
		if out := b.ok("workflow", "retry", itoa(failID)); !strings.Contains(out, "retrying run "+itoa(failID)+" from its failed step (QUEUED)") {
			t.Errorf("workflow retry %d: %q", failID, out)
		}
		b.fails(1, "retry needs a run in ERROR; it is QUEUED", "workflow", "retry", itoa(failID))

		before := reserved.Load()
		stop = serve(t, s, wf)
		waitStatus(t, s, pauseID, pgqrs.RunSucceeded)
		waitStatus(t, s, failID, pgqrs.RunSucceeded)
		if n := reserved.Load() - before; n != 0 {
			t.Errorf("the resumed and retried runs ran the completed step \"reserve\" %d more times", n)
		}
		b.json(&got, "workflow", "show", itoa(failID))
		want = run{
			ID: failID, Workflow: "orders", Status: "SUCCESS", Input: map[string]any{"item": "declined"},
			Output: map[string]any{"receipt": "reserved declined"},
			Steps: []step{
				{Position: 0, Name: "reserve", Status: "SUCCESS", Attempts: 1, Output: "reserved declined"},
				{Position: 1, Name: "charge", Status: "SUCCESS", Attempts: 1, Output: 42.0},
				{Position: 2, Name: "approve", Status: "SUCCESS", Attempts: 1, Output: true},
				{Position: 3, Name: "report", Status: "SUCCESS", Attempts: 1, Output: long},
			},
		}
		if diff := cmp.Diff(want, got, runTimes); diff != "" {
			t.Errorf("workflow show %d after retry (-want +got):\n%s", failID, diff)
		}
		b.json(&wfs, "workflow", "list")
		wantRuns = map[string]int64{"queued": 0, "running": 0, "paused": 0, "cancelling": 0, "cancelled": 1, "success": 3, "error": 0}
		if len(wfs) != 1 || !cmp.Equal(wantRuns, wfs[0].Runs) {
			t.Errorf("workflow list at the end: %+v, want runs %v", wfs, wantRuns)
		}

		// Unknown runs.
		for _, cmd := range []string{"show", "cancel", "resume", "retry"} {
			b.fails(1, "run 999999: run not found", "workflow", cmd, "999999")
		}

		// Purge: nothing finished a day ago; everything finished by now.
		var purged map[string]int64
		b.json(&purged, "workflow", "purge", "orders", "--older-than", "24h")
		if purged["purged"] != 0 {
			t.Errorf("workflow purge --older-than 24h: %v, want 0", purged)
		}
		b.fails(1, "workflow not registered", "workflow", "purge", "nope")
		b.fails(2, "--older-than must not be negative", "workflow", "purge", "orders", "--older-than", "-1h")

		// Delete: refused while a worker is live, then gone with its runs.
		b.fails(1, "queue in use", "workflow", "delete", "orders")
		b.fails(1, "workflow not registered", "workflow", "delete", "nope")
		stop()
		if out := b.ok("workflow", "delete", "orders"); !strings.Contains(out, `deleted workflow "orders"`) {
			t.Errorf("workflow delete: %q", out)
		}
		if out := b.ok("--json", "workflow", "list"); strings.TrimSpace(out) != "[]" {
			t.Errorf("workflow list after delete: %q, want []", out)
		}
		b.fails(1, "run "+itoa(okID)+": run not found", "workflow", "show", itoa(okID))
	})
}

func TestWorkflowPurgeCommand(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := b.store()
		ctx := t.Context()
		wf := pgqrs.NewWorkflow("tidy", func(ctx context.Context, r *pgqrs.Run, in int) (int, error) { return in, nil })
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		stop := serve(t, s, wf)
		for i := range 3 {
			id, err := wf.Trigger(ctx, s, i)
			if err != nil {
				t.Fatal(err)
			}
			waitStatus(t, s, id, pgqrs.RunSucceeded)
		}
		stop()
		if out := b.ok("workflow", "purge", "tidy", "--older-than", "0s"); !strings.Contains(out, `deleted 3 finished runs of "tidy"`) {
			t.Errorf("workflow purge: %q", out)
		}
		if out := b.ok("--json", "workflow", "runs", "--workflow", "tidy"); strings.TrimSpace(out) != "[]" {
			t.Errorf("runs after purge: %q", out)
		}
	})
}

// TestWorkflowUsageErrors checks the workflow commands' command-line
// mistakes: exit 2 before the database is touched.
func TestWorkflowUsageErrors(t *testing.T) {
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "usage.db")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"workflow"}, "workflow: missing subcommand: want one of list, runs, show, send, cancel, resume, retry, purge, delete"},
		{[]string{"workflow", "frob"}, `workflow: unknown subcommand "frob"`},
		{[]string{"workflow", "show"}, "workflow show: missing argument: want RUN_ID"},
		{[]string{"workflow", "show", "1", "2"}, `workflow show: unexpected argument "2"`},
		{[]string{"workflow", "show", "abc"}, `workflow show: "abc" is not a run ID`},
		{[]string{"workflow", "cancel", "0"}, `workflow cancel: "0" is not a run ID`},
		{[]string{"workflow", "resume", "--", "-3"}, `workflow resume: "-3" is not a run ID`},
		{[]string{"workflow", "retry", "1.5"}, `workflow retry: "1.5" is not a run ID`},
		{[]string{"workflow", "runs", "--limit", "0"}, "--limit must be at least 1"},
		{[]string{"workflow", "runs", "--before", "-1"}, "--before must not be negative"},
		{[]string{"workflow", "list", "extra"}, `workflow list: unexpected argument "extra"`},
	}
	for _, tt := range tests {
		args := append([]string{"--dsn", dsn}, tt.args...)
		checkFailure(t, runBin(t, "", "", nil, args...), 2, tt.want, args)
	}
	r := runBin(t, "", "", nil, "help", "workflow", "runs")
	for _, want := range []string{"Usage: pgqrs [global flags] workflow runs", "--status STATUS", "--workflow NAME", "--limit", "--before"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("help workflow runs: exit %d, lacks %q:\n%s", r.code, want, r.stdout)
		}
	}
	if r := runBin(t, "", "", nil, "help"); !slices.ContainsFunc(strings.Split(r.stdout, "\n"), func(l string) bool {
		return strings.HasPrefix(strings.TrimSpace(l), "workflow show RUN_ID")
	}) {
		t.Errorf("help lacks the workflow commands:\n%s", r.stdout)
	}
}
