package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/pgqrs/pgqrs-go"
)

// The schedule commands define and steer periodic schedules. They fire
// nothing on their own: a scheduler does that, in the application's
// processes (Store.RunScheduler, or RunOptions.Scheduler); "schedule run"
// enqueues one occurrence now.

// scheduleAddOptions are the flags of schedule add.
type scheduleAddOptions struct {
	cron, tz        string
	queue, workflow string
	payload, input  *string // nil: not given
	priority        int
	headers         map[string]string
}

func scheduleAddCommand(c *cli, fs *flag.FlagSet) runFunc {
	o := scheduleAddOptions{headers: map[string]string{}}
	fs.StringVar(&o.cron, "cron", "", "when it fires: an `EXPR` of five cron fields (\"0 3 * * *\"), a descriptor such as @daily, or \"@every 10m\"")
	fs.StringVar(&o.tz, "tz", "", "IANA time `ZONE` of the cron fields, such as Europe/Berlin (default UTC)")
	fs.StringVar(&o.queue, "queue", "", "enqueue to the queue `NAME` at each occurrence")
	fs.StringVar(&o.workflow, "workflow", "", "start a run of the workflow `NAME` at each occurrence")
	fs.Func("payload", "the message's `JSON` (with --queue; default null)", func(v string) error { o.payload = &v; return nil })
	fs.Func("input", "the run's input `JSON` (with --workflow; default null)", func(v string) error { o.input = &v; return nil })
	fs.IntVar(&o.priority, "priority", 0, "priority of each message, 0 (most urgent) to 9")
	fs.Func("header", "add the header `KEY=VALUE` to each message (repeatable)", func(v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		o.headers[k] = val
		return nil
	})
	return func(ctx context.Context, args []string) error { return c.scheduleAdd(ctx, args[0], o) }
}

// scheduleAdd creates or redefines a schedule and prints it.
func (c *cli) scheduleAdd(ctx context.Context, name string, o scheduleAddOptions) error {
	switch {
	case o.cron == "":
		return usagef("schedule add: --cron is required")
	case (o.queue == "") == (o.workflow == ""):
		return usagef("schedule add: give one of --queue and --workflow")
	case o.queue != "" && o.input != nil:
		return usagef("schedule add: --input goes with --workflow; a queue's message is --payload")
	case o.workflow != "" && o.payload != nil:
		return usagef("schedule add: --payload goes with --queue; a workflow's run takes --input")
	}
	def := pgqrs.Schedule{Name: name, Cron: o.cron, TimeZone: o.tz, Queue: o.queue, Workflow: o.workflow,
		Priority: o.priority, Headers: o.headers}
	for _, p := range []*string{o.payload, o.input} {
		if p != nil {
			def.Payload = json.RawMessage(*p)
		}
	}
	return query(ctx, c, func(s *pgqrs.Store) (*pgqrs.ScheduleInfo, error) {
		return s.Schedules().Add(ctx, def)
	}, func(w io.Writer, info *pgqrs.ScheduleInfo) error {
		_, err := fmt.Fprintf(w, "schedule %q: %s %s, %s; next run %s\n", info.Name, info.Cron, info.TimeZone, scheduleTarget(info),
			nextRunCell(info))
		return err
	})
}

// scheduleTarget names what a schedule's occurrences do.
func scheduleTarget(info *pgqrs.ScheduleInfo) string {
	if info.Workflow != "" {
		return "workflow " + info.Workflow
	}
	return "queue " + info.Queue
}

// nextRunCell is a schedule's next run, or that it is paused.
func nextRunCell(info *pgqrs.ScheduleInfo) string {
	if info.Paused {
		return "paused"
	}
	return timeCell(info.NextRunAt)
}

func (c *cli) scheduleList(ctx context.Context, _ []string) error {
	return query(ctx, c, func(s *pgqrs.Store) ([]pgqrs.ScheduleInfo, error) {
		list, err := s.Schedules().List(ctx)
		return jsonList(list), err
	}, func(w io.Writer, list []pgqrs.ScheduleInfo) error {
		t := newTable(w, "NAME", "CRON", "ZONE", "TARGET", "NEXT RUN", "LAST RUN", "PAYLOAD")
		for i := range list {
			info := &list[i]
			t.row(info.Name, info.Cron, info.TimeZone, scheduleTarget(info), nextRunCell(info), timeCell(info.LastRunAt),
				payloadCell(info.Payload))
		}
		return t.flush()
	})
}

// schedulePause and scheduleResume print the schedule afterwards.
func (c *cli) schedulePause(ctx context.Context, args []string) error {
	return c.scheduleChange(ctx, args[0], (*pgqrs.Schedules).Pause, "paused schedule %q\n")
}

func (c *cli) scheduleResume(ctx context.Context, args []string) error {
	return c.scheduleChange(ctx, args[0], (*pgqrs.Schedules).Resume, "resumed schedule %q\n")
}

func (c *cli) scheduleChange(ctx context.Context, name string, change func(*pgqrs.Schedules, context.Context, string) error, text string) error {
	return query(ctx, c, func(s *pgqrs.Store) (*pgqrs.ScheduleInfo, error) {
		if err := change(s.Schedules(), ctx, name); err != nil {
			return nil, err
		}
		return s.Schedules().Get(ctx, name)
	}, func(w io.Writer, info *pgqrs.ScheduleInfo) error {
		_, err := fmt.Fprintf(w, text+"next run: %s\n", info.Name, nextRunCell(info))
		return err
	})
}

func (c *cli) scheduleDelete(ctx context.Context, args []string) error {
	return query(ctx, c, func(s *pgqrs.Store) (map[string]string, error) {
		if err := s.Schedules().Delete(ctx, args[0]); err != nil {
			return nil, err
		}
		return map[string]string{"deleted": args[0]}, nil
	}, func(w io.Writer, _ map[string]string) error {
		_, err := fmt.Fprintf(w, "deleted schedule %q\n", args[0])
		return err
	})
}

// scheduleRunJSON is the result of schedule run: the message enqueued to a
// queue, or the run started of a workflow.
type scheduleRunJSON struct {
	Schedule  string `json:"schedule"`
	Queue     string `json:"queue,omitempty"`
	MessageID int64  `json:"message_id,omitempty"`
	Workflow  string `json:"workflow,omitempty"`
	RunID     int64  `json:"run_id,omitempty"`
}

func (c *cli) scheduleRun(ctx context.Context, args []string) error {
	return query(ctx, c, func(s *pgqrs.Store) (scheduleRunJSON, error) {
		id, err := s.Schedules().Trigger(ctx, args[0])
		if err != nil {
			return scheduleRunJSON{}, err
		}
		info, err := s.Schedules().Get(ctx, args[0])
		if err != nil {
			return scheduleRunJSON{}, fmt.Errorf("schedule %q ran (ID %d), but reading it failed: %w", args[0], id, err)
		}
		if info.Workflow != "" {
			return scheduleRunJSON{Schedule: info.Name, Workflow: info.Workflow, RunID: id}, nil
		}
		return scheduleRunJSON{Schedule: info.Name, Queue: info.Queue, MessageID: id}, nil
	}, func(w io.Writer, r scheduleRunJSON) error {
		var err error
		if r.Workflow != "" {
			_, err = fmt.Fprintf(w, "started run %d of workflow %q\n", r.RunID, r.Workflow)
		} else {
			_, err = fmt.Fprintf(w, "enqueued message %d to queue %q\n", r.MessageID, r.Queue)
		}
		return err
	})
}
