package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// The workflow commands inspect and steer the runs of durable workflows
// (pgqrs.NewWorkflow). They never execute a run: that is the job of the
// application's workers (Workflow.Serve).

// runStatuses are the statuses of a run in the order the tables show them.
var runStatuses = []pgqrs.RunStatus{
	pgqrs.RunQueued, pgqrs.RunRunning, pgqrs.RunPaused, pgqrs.RunCancelling,
	pgqrs.RunCancelled, pgqrs.RunSucceeded, pgqrs.RunFailed,
}

func runsFlags(c *cli, fs *flag.FlagSet) {
	fs.StringVar(&c.f.workflow, "workflow", "", "only the runs of the workflow `NAME`")
	fs.StringVar(&c.f.status, "status", "", "only runs in `STATUS`: queued, running, paused, cancelling, cancelled, success or error")
	fs.IntVar(&c.f.limit, "limit", 20, "print at most this many runs")
	fs.Int64Var(&c.f.before, "before", 0, "only runs with an ID below this one (for paging; 0: from the newest)")
}

func purgeRunsFlags(c *cli, fs *flag.FlagSet) {
	fs.DurationVar(&c.f.olderThan, "older-than", 7*24*time.Hour, "delete runs that finished longer ago than this")
}

// workflowJSON is a registered workflow with its run counts.
type workflowJSON struct {
	Name      string        `json:"name"`
	CreatedAt time.Time     `json:"created_at"`
	Runs      runCountsJSON `json:"runs"`
}

// runCountsJSON counts a workflow's runs per status; the keys are the
// statuses in lower case.
type runCountsJSON struct {
	Queued     int64 `json:"queued"`
	Running    int64 `json:"running"`
	Paused     int64 `json:"paused"`
	Cancelling int64 `json:"cancelling"`
	Cancelled  int64 `json:"cancelled"`
	Success    int64 `json:"success"`
	Error      int64 `json:"error"`
}

func newWorkflowJSON(w pgqrs.WorkflowInfo) workflowJSON {
	return workflowJSON{Name: w.Name, CreatedAt: w.CreatedAt.UTC(), Runs: runCountsJSON{
		Queued: w.Runs[pgqrs.RunQueued], Running: w.Runs[pgqrs.RunRunning], Paused: w.Runs[pgqrs.RunPaused],
		Cancelling: w.Runs[pgqrs.RunCancelling], Cancelled: w.Runs[pgqrs.RunCancelled],
		Success: w.Runs[pgqrs.RunSucceeded], Error: w.Runs[pgqrs.RunFailed],
	}}
}

// runJSON is a workflow run, as "workflow runs" lists it. output appears
// only for a run that succeeded, error only for one that failed.
type runJSON struct {
	ID         int64           `json:"id"`
	Workflow   string          `json:"workflow"`
	Status     string          `json:"status"`
	Input      json.RawMessage `json:"input"`
	Output     json.RawMessage `json:"output,omitempty"`
	Error      string          `json:"error,omitempty"`
	ResumeAt   *time.Time      `json:"resume_at"` // a PAUSED run's own wake-up time
	CreatedAt  time.Time       `json:"created_at"`
	StartedAt  *time.Time      `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

func newRunJSON(r *pgqrs.RunInfo) runJSON {
	return runJSON{
		ID: r.ID, Workflow: r.Workflow, Status: string(r.Status), Input: r.Input, Output: r.Output, Error: r.Error,
		ResumeAt: nullTime(r.ResumeAt), CreatedAt: r.CreatedAt.UTC(), StartedAt: nullTime(r.StartedAt),
		FinishedAt: nullTime(r.FinishedAt), UpdatedAt: r.UpdatedAt.UTC(),
	}
}

// runDetailJSON is a run with its steps, as "workflow show" prints it.
type runDetailJSON struct {
	runJSON
	Steps []stepJSON `json:"steps"`
}

// stepJSON is one recorded step of a run. output appears only for a step
// that succeeded, error only for one whose last attempt failed.
type stepJSON struct {
	Position  int             `json:"position"`
	Name      string          `json:"name"`
	Status    string          `json:"status"`
	Attempts  int             `json:"attempts"`
	Output    json.RawMessage `json:"output,omitempty"`
	Error     string          `json:"error,omitempty"`
	RetryAt   *time.Time      `json:"retry_at"` // null: no retry scheduled
	UpdatedAt time.Time       `json:"updated_at"`
}

func newStepJSON(st pgqrs.StepInfo) stepJSON {
	return stepJSON{
		Position: st.Position, Name: st.Name, Status: string(st.Status), Attempts: st.Attempts,
		Output: st.Output, Error: st.Error, RetryAt: nullTime(st.RetryAt), UpdatedAt: st.UpdatedAt.UTC(),
	}
}

// runStatusJSON is the result of cancel, resume and retry.
type runStatusJSON struct {
	ID     int64  `json:"id"`
	Status string `json:"status"`
}

// parseRunID reads a run ID argument; anything but a positive integer is a
// usage error.
func parseRunID(cmd, arg string) (int64, error) {
	id, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || id < 1 {
		return 0, usagef("%s: %q is not a run ID", cmd, arg)
	}
	return id, nil
}

func (c *cli) workflowList(ctx context.Context, _ []string) error {
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	ws, err := s.Admin().ListWorkflows(ctx)
	if err != nil {
		return err
	}
	if c.json {
		out := make([]workflowJSON, len(ws))
		for i, w := range ws {
			out[i] = newWorkflowJSON(w)
		}
		return printJSON(c.stdout, out)
	}
	header := []string{"NAME", "CREATED"}
	for _, st := range runStatuses {
		header = append(header, string(st))
	}
	t := newTable(c.stdout, header...)
	for _, w := range ws {
		cells := []string{w.Name, timeCell(w.CreatedAt)}
		for _, st := range runStatuses {
			cells = append(cells, num(w.Runs[st]))
		}
		t.row(cells...)
	}
	return t.flush()
}

// workflowRuns lists runs newest first. The status is matched without
// regard to case; the library rejects an unknown one as invalid (exit 2).
func (c *cli) workflowRuns(ctx context.Context, _ []string) error {
	if err := atLeastOne("--limit", c.f.limit); err != nil {
		return err
	}
	if c.f.before < 0 {
		return usagef("--before must not be negative, got %d", c.f.before)
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	f := pgqrs.RunFilter{
		Workflow: c.f.workflow,
		Status:   pgqrs.RunStatus(strings.ToUpper(c.f.status)),
		Before:   c.f.before,
		Limit:    c.f.limit,
	}
	runs, err := s.Admin().ListRuns(ctx, f)
	if err != nil {
		if errors.Is(err, pgqrs.ErrInvalidArgument) && c.f.status != "" {
			return fmt.Errorf("%w (--status takes queued, running, paused, cancelling, cancelled, success or error)", err)
		}
		return err
	}
	if c.json {
		out := make([]runJSON, len(runs))
		for i := range runs {
			out[i] = newRunJSON(&runs[i])
		}
		return printJSON(c.stdout, out)
	}
	t := newTable(c.stdout, "ID", "WORKFLOW", "STATUS", "CREATED", "FINISHED", "INPUT", "RESULT")
	for i := range runs {
		r := &runs[i]
		t.row(num(r.ID), r.Workflow, string(r.Status), timeCell(r.CreatedAt), timeCell(r.FinishedAt),
			payloadCell(r.Input), runResultCell(r))
	}
	return t.flush()
}

// runResultCell sums up how a run ended, or why it waits, for a table.
func runResultCell(r *pgqrs.RunInfo) string {
	const width = 60
	switch r.Status {
	case pgqrs.RunSucceeded:
		return jsonCell(r.Output, width)
	case pgqrs.RunFailed:
		return clip(r.Error, width)
	case pgqrs.RunPaused:
		return pausedUntil(r)
	}
	return "-"
}

// pausedUntil says when a paused run continues.
func pausedUntil(r *pgqrs.RunInfo) string {
	if r.ResumeAt.IsZero() {
		return "paused until resumed"
	}
	return "paused until " + timeCell(r.ResumeAt)
}

// workflowShow prints one run and its steps. Tables cut long values; --json
// prints them in full.
func (c *cli) workflowShow(ctx context.Context, args []string) error {
	id, err := parseRunID("workflow show", args[0])
	if err != nil {
		return err
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	r, err := s.RunStatus(ctx, id)
	if err != nil {
		return err
	}
	if c.json {
		out := runDetailJSON{runJSON: newRunJSON(r), Steps: make([]stepJSON, len(r.Steps))}
		for i, st := range r.Steps {
			out.Steps[i] = newStepJSON(st)
		}
		return printJSON(c.stdout, out)
	}
	const width = 120
	t := newTable(c.stdout)
	t.row("run", num(r.ID))
	t.row("workflow", r.Workflow)
	t.row("status", string(r.Status))
	t.row("created", timeCell(r.CreatedAt))
	t.row("started", timeCell(r.StartedAt))
	t.row("finished", timeCell(r.FinishedAt))
	if r.Status == pgqrs.RunPaused {
		resumes := timeCell(r.ResumeAt)
		if r.ResumeAt.IsZero() {
			resumes = fmt.Sprintf("when resumed (pgqrs workflow resume %d)", r.ID)
		}
		t.row("resumes", resumes)
	}
	t.row("input", jsonCell(r.Input, width))
	switch {
	case r.Output != nil:
		t.row("output", jsonCell(r.Output, width))
	case r.Error != "":
		t.row("error", clip(r.Error, width))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(r.Steps) == 0 {
		_, err := fmt.Fprintln(c.stdout, "\nno steps recorded")
		return err
	}
	fmt.Fprintln(c.stdout)
	t = newTable(c.stdout, "POS", "STEP", "STATUS", "ATTEMPTS", "RETRY AT", "OUTPUT / ERROR")
	for _, st := range r.Steps {
		result := payloadCell(st.Output)
		if st.Status != pgqrs.StepSucceeded {
			result = errorCell(st.Error)
		}
		t.row(num(st.Position), st.Name, string(st.Status), num(st.Attempts), timeCell(st.RetryAt), result)
	}
	return t.flush()
}

// workflowCancel asks a run to stop and prints the status it is left in.
func (c *cli) workflowCancel(ctx context.Context, args []string) error {
	id, err := parseRunID("workflow cancel", args[0])
	if err != nil {
		return err
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	st, err := s.CancelRun(ctx, id)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, runStatusJSON{ID: id, Status: string(st)})
	}
	if st == pgqrs.RunCancelling {
		_, err = fmt.Fprintf(c.stdout, "cancelling run %d (%s): a worker is executing it; it stops at its next step boundary\n", id, st)
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "cancelled run %d (%s)\n", id, st)
	return err
}

// workflowResume continues a paused run now.
func (c *cli) workflowResume(ctx context.Context, args []string) error {
	id, err := parseRunID("workflow resume", args[0])
	if err != nil {
		return err
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	if err := s.ResumeRun(ctx, id); err != nil {
		return err
	}
	return c.printRunStatus(ctx, s, id, "resumed run %d (%s)\n")
}

// workflowRetry runs a failed run again from its failed step.
func (c *cli) workflowRetry(ctx context.Context, args []string) error {
	id, err := parseRunID("workflow retry", args[0])
	if err != nil {
		return err
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	if err := s.Admin().RetryRun(ctx, id); err != nil {
		return err
	}
	return c.printRunStatus(ctx, s, id, "retrying run %d from its failed step (%s); completed steps keep their results\n")
}

// workflowDelete deletes a workflow whose runs have all finished, with its
// runs and queue.
func (c *cli) workflowDelete(ctx context.Context, args []string) error {
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	if err := s.Admin().DeleteWorkflow(ctx, args[0]); err != nil {
		if errors.Is(err, pgqrs.ErrQueueInUse) {
			return fmt.Errorf("%w (cancel or finish its runs and stop its workers first)", err)
		}
		return err
	}
	if c.json {
		return printJSON(c.stdout, map[string]string{"deleted": args[0]})
	}
	_, err = fmt.Fprintf(c.stdout, "deleted workflow %q with its runs and queue\n", args[0])
	return err
}

// workflowPurge deletes a workflow's runs that finished long enough ago.
func (c *cli) workflowPurge(ctx context.Context, args []string) error {
	if err := nonNegative("--older-than", c.f.olderThan); err != nil {
		return err
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	n, err := s.Admin().PurgeRuns(ctx, args[0], time.Now().Add(-c.f.olderThan))
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, map[string]int64{"purged": n})
	}
	_, err = fmt.Fprintf(c.stdout, "deleted %d finished runs of %q\n", n, args[0])
	return err
}

// printRunStatus prints run id's status after a change: {"id", "status"}
// with --json, else text formatted with the ID and the status. The status
// is read afresh, so a worker may already have moved the run on.
func (c *cli) printRunStatus(ctx context.Context, s *pgqrs.Store, id int64, text string) error {
	r, err := s.RunStatus(ctx, id)
	if err != nil {
		return fmt.Errorf("the change to run %d is made, but reading its status failed: %w", id, err)
	}
	if c.json {
		return printJSON(c.stdout, runStatusJSON{ID: id, Status: string(r.Status)})
	}
	_, err = fmt.Fprintf(c.stdout, text, id, r.Status)
	return err
}
