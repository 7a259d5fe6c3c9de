package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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

// runsOptions are the flags of workflow runs.
type runsOptions struct {
	workflow, status string
	limit            int
	before           int64
}

func workflowRunsCommand(c *cli, fs *flag.FlagSet) runFunc {
	var o runsOptions
	fs.StringVar(&o.workflow, "workflow", "", "only the runs of the workflow `NAME`")
	fs.StringVar(&o.status, "status", "", "only runs in `STATUS`: queued, running, paused, cancelling, cancelled, success or error")
	fs.IntVar(&o.limit, "limit", 20, "print at most this many runs")
	fs.Int64Var(&o.before, "before", 0, "only runs with an ID below this one (for paging; 0: from the newest)")
	return func(ctx context.Context, _ []string) error { return c.workflowRuns(ctx, o) }
}

func workflowPurgeCommand(c *cli, fs *flag.FlagSet) runFunc {
	olderThan := fs.Duration("older-than", 7*24*time.Hour, "delete runs that finished longer ago than this")
	return func(ctx context.Context, args []string) error { return c.workflowPurge(ctx, args[0], *olderThan) }
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
	return query(ctx, c, func(s *pgqrs.Store) ([]pgqrs.WorkflowInfo, error) {
		ws, err := s.Admin().ListWorkflows(ctx)
		return jsonList(ws), err
	}, func(w io.Writer, ws []pgqrs.WorkflowInfo) error {
		header := []string{"NAME", "CREATED"}
		for _, st := range runStatuses {
			header = append(header, string(st))
		}
		t := newTable(w, header...)
		for _, wf := range ws {
			cells := []string{wf.Name, timeCell(wf.CreatedAt)}
			for _, st := range runStatuses {
				cells = append(cells, num(wf.Runs[st]))
			}
			t.row(cells...)
		}
		return t.flush()
	})
}

// workflowRuns lists runs newest first. The status is matched without
// regard to case; the library rejects an unknown one as invalid (exit 2).
func (c *cli) workflowRuns(ctx context.Context, o runsOptions) error {
	if err := atLeastOne("--limit", o.limit); err != nil {
		return err
	}
	if o.before < 0 {
		return usagef("--before must not be negative, got %d", o.before)
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	f := pgqrs.RunFilter{
		Workflow: o.workflow,
		Status:   pgqrs.RunStatus(strings.ToUpper(o.status)),
		Before:   o.before,
		Limit:    o.limit,
	}
	runs, err := s.Runs().List(ctx, f)
	if err != nil {
		if errors.Is(err, pgqrs.ErrInvalidArgument) && o.status != "" {
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
	mail, err := s.Runs().Mailbox(ctx, id)
	if err != nil {
		return err
	}
	children, err := s.Runs().List(ctx, pgqrs.RunFilter{Parent: id, Limit: 1000})
	if err != nil {
		return err
	}
	if c.json {
		show := runShowJSON{RunInfo: r, Signals: mail.Signals, Waiting: mail.Waiting, Events: mail.Events}
		for _, ch := range children {
			show.Children = append(show.Children, childJSON{ID: ch.ID, Workflow: ch.Workflow, Status: ch.Status})
		}
		return printJSON(c.stdout, show)
	}
	const width = 120
	t := newTable(c.stdout)
	t.row("run", num(r.ID))
	t.row("workflow", r.Workflow)
	t.row("status", string(r.Status))
	t.row("created", timeCell(r.CreatedAt))
	t.row("started", timeCell(r.StartedAt))
	t.row("finished", timeCell(r.FinishedAt))
	if r.Parent != 0 {
		t.row("parent", num(r.Parent))
	}
	if r.Key != "" {
		t.row("key", r.Key)
	}
	if !r.Deadline.IsZero() {
		t.row("deadline", timeCell(r.Deadline))
	}
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
	if err := t.flush(); err != nil {
		return err
	}
	if len(children) > 0 {
		fmt.Fprintln(c.stdout)
		t = newTable(c.stdout, "CHILD", "WORKFLOW", "STATUS")
		for _, ch := range children {
			t.row(num(ch.ID), ch.Workflow, string(ch.Status))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	return showMailbox(c.stdout, mail)
}

// childJSON is one child run in workflow show --json.
type childJSON struct {
	ID       int64           `json:"id"`
	Workflow string          `json:"workflow"`
	Status   pgqrs.RunStatus `json:"status"`
}

// runShowJSON is what workflow show prints with --json: the run with its
// steps, and its signals, Recv waits and events when it has any.
type runShowJSON struct {
	*pgqrs.RunInfo
	Signals []pgqrs.SignalInfo `json:"signals,omitempty"`
	Waiting []pgqrs.SignalWait `json:"waiting,omitempty"`
	Events  []pgqrs.EventInfo  `json:"events,omitempty"`
	// Children are the runs this one started with StartChild, newest first
	// (at most 1,000).
	Children []childJSON `json:"children,omitempty"`
}

// showMailbox prints a run's Recv waits, signals and events as tables,
// each only when there is something to show.
func showMailbox(w io.Writer, m *pgqrs.Mailbox) error {
	if len(m.Waiting) > 0 {
		fmt.Fprintln(w)
		t := newTable(w, "WAITING IN", "FOR TOPIC", "UNTIL")
		for _, wt := range m.Waiting {
			t.row(wt.Step, wt.Topic, timeCell(wt.Until))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(m.Signals) > 0 {
		fmt.Fprintln(w)
		t := newTable(w, "SIGNAL", "TOPIC", "SENT", "RECEIVED BY", "RECEIVED", "PAYLOAD")
		for _, sig := range m.Signals {
			by := sig.ReceivedBy
			if by == "" {
				by = "-"
			}
			t.row(num(sig.ID), sig.Topic, timeCell(sig.SentAt), by, timeCell(sig.ReceivedAt), payloadCell(sig.Payload))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(m.Events) > 0 {
		fmt.Fprintln(w)
		t := newTable(w, "EVENT", "UPDATED", "VALUE")
		for _, ev := range m.Events {
			t.row(ev.Key, timeCell(ev.UpdatedAt), payloadCell(ev.Value))
		}
		return t.flush()
	}
	return nil
}

// workflowSend sends a signal to a run (Runs.Send): JSON must be one JSON
// value; text that is not is refused as an invalid payload (exit 2).
func (c *cli) workflowSend(ctx context.Context, args []string) error {
	id, err := parseRunID("workflow send", args[0])
	if err != nil {
		return err
	}
	topic, payload := args[1], json.RawMessage(args[2])
	return query(ctx, c, func(s *pgqrs.Store) (signalSentJSON, error) {
		return signalSentJSON{RunID: id, Topic: topic}, s.Runs().Send(ctx, id, topic, payload)
	}, func(w io.Writer, _ signalSentJSON) error {
		_, err := fmt.Fprintf(w, "sent %s to run %d on topic %q\n", payloadCell(payload), id, topic)
		return err
	})
}

// signalSentJSON is the result of workflow send.
type signalSentJSON struct {
	RunID int64  `json:"run_id"`
	Topic string `json:"topic"`
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
	return query(ctx, c, func(s *pgqrs.Store) (map[string]string, error) {
		if err := s.Admin().DeleteWorkflow(ctx, args[0]); err != nil {
			if errors.Is(err, pgqrs.ErrQueueInUse) {
				return nil, fmt.Errorf("%w (cancel or finish its runs and stop its workers first)", err)
			}
			return nil, err
		}
		return map[string]string{"deleted": args[0]}, nil
	}, func(w io.Writer, _ map[string]string) error {
		_, err := fmt.Fprintf(w, "deleted workflow %q with its runs and queue\n", args[0])
		return err
	})
}

// workflowPurge deletes a workflow's runs that finished long enough ago.
func (c *cli) workflowPurge(ctx context.Context, name string, olderThan time.Duration) error {
	if err := nonNegative("--older-than", olderThan); err != nil {
		return err
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	n, err := s.Runs().Purge(ctx, name, time.Now().Add(-olderThan))
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, map[string]int64{"purged": n})
	}
	_, err = fmt.Fprintf(c.stdout, "deleted %d finished runs of %q\n", n, name)
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
