package main

import (
	"context"
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
		return printJSON(c.stdout, jsonList(ws))
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
	runs, err := s.Runs().List(ctx, f)
	if err != nil {
		if errors.Is(err, pgqrs.ErrInvalidArgument) && c.f.status != "" {
			return fmt.Errorf("%w (--status takes queued, running, paused, cancelling, cancelled, success or error)", err)
		}
		return err
	}
	if c.json {
		return printJSON(c.stdout, jsonList(runs))
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
	r, err := s.Runs().Get(ctx, id)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, r)
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
	st, err := s.Runs().Cancel(ctx, id)
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
	if err := s.Runs().Resume(ctx, id); err != nil {
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
	if err := s.Runs().Retry(ctx, id); err != nil {
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
	n, err := s.Runs().Purge(ctx, args[0], time.Now().Add(-c.f.olderThan))
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
	r, err := s.Runs().Get(ctx, id)
	if err != nil {
		return fmt.Errorf("the change to run %d is made, but reading its status failed: %w", id, err)
	}
	if c.json {
		return printJSON(c.stdout, runStatusJSON{ID: id, Status: string(r.Status)})
	}
	_, err = fmt.Fprintf(c.stdout, text, id, r.Status)
	return err
}
