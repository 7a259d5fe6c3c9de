package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// maxStdinPayload bounds how much of stdin send reads; the store's own
// payload limit (1 MiB by default) applies after that.
const maxStdinPayload = 64 << 20

func sendFlags(c *cli, fs *flag.FlagSet) {
	fs.DurationVar(&c.f.delay, "delay", 0, "keep the messages invisible for this long")
	fs.IntVar(&c.f.count, "count", 1, "enqueue this many copies of the payload, in one batch")
}

func recvFlags(c *cli, fs *flag.FlagSet) {
	fs.IntVar(&c.f.batch, "batch", 1, "claim at most this many messages")
	fs.DurationVar(&c.f.vt, "vt", pgqrs.DefaultVisibilityTimeout, "visibility timeout: the messages are hidden from other consumers for this long")
	fs.BoolVar(&c.f.archive, "archive", false, "archive the messages after printing them (default: they become visible again after --vt)")
}

func pageFlags(c *cli, fs *flag.FlagSet) {
	fs.IntVar(&c.f.limit, "limit", 20, "print at most this many messages")
	fs.Int64Var(&c.f.before, "before", 0, "only messages with an ID below this one (for paging; 0: from the newest)")
}

func replayFlags(c *cli, fs *flag.FlagSet) {
	fs.BoolVar(&c.f.all, "all", false, "replay every dead letter of the queue")
}

func workersListFlags(c *cli, fs *flag.FlagSet) {
	fs.BoolVar(&c.f.live, "live", false, "only workers that are not stopped")
}

func staleFlags(c *cli, fs *flag.FlagSet) {
	fs.DurationVar(&c.f.stale, "stale", 30*time.Second, "a producer or consumer without a heartbeat for this long is stale")
}

func purgeWorkersFlags(c *cli, fs *flag.FlagSet) {
	fs.DurationVar(&c.f.olderThan, "older-than", 24*time.Hour, "delete workers stopped longer ago than this")
}

// install creates or upgrades the schema.
func (c *cli) install(ctx context.Context, _ []string) error {
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	if err := s.Admin().Install(ctx); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	st, err := s.Admin().SystemStats(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, map[string]any{"installed": true, "dialect": s.Dialect(), "schema_version": st.SchemaVersion})
	}
	_, err = fmt.Fprintf(c.stdout, "pgqrs schema installed (%s, version %d)\n", s.Dialect(), st.SchemaVersion)
	return err
}

// verify checks the schema. Problems are the command's output; the error
// only summarises them.
func (c *cli) verify(ctx context.Context, _ []string) error {
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	problems := []string{}
	var se *pgqrs.SchemaError
	switch err := s.Admin().Verify(ctx); {
	case errors.As(err, &se):
		problems = se.Problems
	case err != nil:
		return err
	}
	if c.json {
		if err := printJSON(c.stdout, map[string]any{"ok": len(problems) == 0, "problems": problems}); err != nil {
			return err
		}
	} else {
		for _, p := range problems {
			fmt.Fprintln(c.stdout, "problem:", p)
		}
		if len(problems) == 0 {
			fmt.Fprintf(c.stdout, "pgqrs schema ok (%s)\n", s.Dialect())
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %d problems (run \"pgqrs install\" to create missing tables)", pgqrs.ErrSchema, len(problems))
	}
	return nil
}

// version prints the module and Go versions; it needs no database.
func (c *cli) version(_ context.Context, _ []string) error {
	v := map[string]string{"version": "(devel)", "go": runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v["version"] = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v["commit"] = s.Value
			}
		}
	}
	if c.json {
		return printJSON(c.stdout, v)
	}
	_, err := fmt.Fprintf(c.stdout, "pgqrs %s %s %s/%s\n", v["version"], v["go"], runtime.GOOS, runtime.GOARCH)
	return err
}

func (c *cli) queueCreate(ctx context.Context, args []string) error {
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	q, err := s.Admin().CreateQueue(ctx, args[0])
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, q)
	}
	_, err = fmt.Fprintf(c.stdout, "created queue %q (id %d)\n", q.Name, q.ID)
	return err
}

func (c *cli) queueList(ctx context.Context, _ []string) error {
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	qs, err := s.Admin().ListQueues(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, jsonList(qs))
	}
	t := newTable(c.stdout, "ID", "NAME", "CREATED")
	for _, q := range qs {
		t.row(num(q.ID), q.Name, timeCell(q.CreatedAt))
	}
	return t.flush()
}

func (c *cli) queueDelete(ctx context.Context, args []string) error {
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	if err := s.Admin().DeleteQueue(ctx, args[0]); err != nil {
		if errors.Is(err, pgqrs.ErrQueueInUse) {
			return fmt.Errorf("%w (purge it with \"pgqrs queue purge %s\" and stop its workers first, with \"pgqrs workers stop ID\" for those whose process is gone; a workflow's queue goes with \"pgqrs workflow delete\")", err, args[0])
		}
		return err
	}
	if c.json {
		return printJSON(c.stdout, map[string]string{"deleted": args[0]})
	}
	_, err = fmt.Fprintf(c.stdout, "deleted queue %q\n", args[0])
	return err
}

func (c *cli) queuePurge(ctx context.Context, args []string) error {
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	n, err := s.Admin().PurgeQueue(ctx, args[0])
	if err != nil {
		return err
	}
	return c.printCount(args[0], "purged", n, "deleted %d messages of queue %q\n")
}

// printCount prints the result of a command that changed n things of queue:
// {"queue": ..., key: n} with --json, else text formatted with n and queue.
func (c *cli) printCount(queue, key string, n int64, text string) error {
	if c.json {
		return printJSON(c.stdout, map[string]any{"queue": queue, key: n})
	}
	_, err := fmt.Fprintf(c.stdout, text, n, queue)
	return err
}

// send enqueues --count copies of one JSON payload in one batch.
func (c *cli) send(ctx context.Context, args []string) (err error) {
	if err := nonNegative("--delay", c.f.delay); err != nil {
		return err
	}
	if err := atLeastOne("--count", c.f.count); err != nil {
		return err
	}
	payload, err := c.readPayload(args[1:])
	if err != nil {
		return err
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	p, err := s.Producer(ctx, args[0])
	if err != nil {
		return err
	}
	defer shutdownWorker(ctx, p.Shutdown, &err)
	payloads := make([]any, c.f.count)
	for i := range payloads {
		payloads[i] = payload
	}
	var opts []pgqrs.EnqueueOption
	if c.f.delay > 0 {
		opts = append(opts, pgqrs.Delay(c.f.delay))
	}
	ids, err := p.EnqueueBatch(ctx, payloads, opts...)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, map[string][]int64{"ids": ids})
	}
	for _, id := range ids {
		fmt.Fprintln(c.stdout, id)
	}
	return nil
}

// readPayload returns the JSON payload given as the argument, or read from
// stdin for "-" or no argument. Text that is not one JSON value is a usage
// error.
func (c *cli) readPayload(args []string) (json.RawMessage, error) {
	var raw []byte
	if len(args) == 1 && args[0] != "-" {
		raw = []byte(args[0])
	} else {
		if len(args) == 0 && c.stdinTTY {
			return nil, usagef("send: missing payload: give the JSON as an argument, or pipe it in with \"-\"")
		}
		b, err := io.ReadAll(io.LimitReader(c.stdin, maxStdinPayload+1))
		if err != nil {
			return nil, fmt.Errorf("read payload from stdin: %w", err)
		}
		if len(b) > maxStdinPayload {
			return nil, usagef("send: payload on stdin is larger than %d bytes", maxStdinPayload)
		}
		raw = b
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, usagef("send: empty payload: want a JSON value such as '{\"id\": 1}'")
	}
	var v json.RawMessage
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, usagef("send: payload is not valid JSON: %v", err)
	}
	return v, nil
}

// recv claims up to --batch messages with a one-shot consumer.
//
// Without --archive the messages must stay hidden for --vt and then come
// back, as a user of a visibility timeout expects. Consumer.Shutdown, which a
// one-shot command needs so that no live worker is left behind, gives held
// messages back at once; so recv first hands each message back with a delay
// of --vt (Consumer.ReleaseBatch). The read count keeps this delivery. Until
// --vt passes the messages count as delayed, not leased, in metrics: no
// consumer holds them any more.
func (c *cli) recv(ctx context.Context, args []string) (err error) {
	if err := atLeastOne("--batch", c.f.batch); err != nil {
		return err
	}
	if err := positive("--vt", c.f.vt); err != nil {
		return err
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	cons, err := s.Consumer(ctx, args[0])
	if err != nil {
		return err
	}
	defer shutdownWorker(ctx, cons.Shutdown, &err)
	msgs, err := cons.Dequeue(ctx, c.f.batch, pgqrs.VisibilityTimeout(c.f.vt))
	if err != nil {
		return err
	}
	if len(msgs) > 0 {
		ids := make([]int64, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		op, settle := "release", func() ([]bool, error) { return cons.ReleaseBatch(ctx, ids, c.f.vt) }
		if c.f.archive {
			op, settle = "archive", func() ([]bool, error) { return cons.ArchiveBatch(ctx, ids) }
		}
		done, err := settle()
		if err != nil {
			return err
		}
		for i, ok := range done {
			if !ok {
				return fmt.Errorf("%s message %d of %q: %w", op, ids[i], args[0], pgqrs.ErrLeaseLost)
			}
		}
	}
	if c.json {
		return printJSON(c.stdout, jsonList(msgs))
	}
	if len(msgs) == 0 {
		_, err := fmt.Fprintf(c.stdout, "no visible messages in queue %q\n", args[0])
		return err
	}
	if c.f.archive {
		t := newTable(c.stdout, "ID", "READS", "ENQUEUED", "PAYLOAD (archived)")
		for _, m := range msgs {
			t.row(num(m.ID), num(m.ReadCount), timeCell(m.EnqueuedAt), payloadCell(m.Payload))
		}
		return t.flush()
	}
	t := newTable(c.stdout, "ID", "READS", "ENQUEUED", "VISIBLE AGAIN", "PAYLOAD")
	for _, m := range msgs {
		t.row(num(m.ID), num(m.ReadCount), timeCell(m.EnqueuedAt), timeCell(m.VisibleAt), payloadCell(m.Payload))
	}
	return t.flush()
}

// shutdownWorker stops the worker of a one-shot command, even after ctx is
// done, and adds a failure to *errp.
func shutdownWorker(ctx context.Context, shutdown func(context.Context) error, errp *error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := shutdown(sctx); err != nil {
		*errp = errors.Join(*errp, err)
	}
}

// metrics prints the counts of one queue (an object with --json) or of all
// queues (an array).
func (c *cli) metrics(ctx context.Context, args []string) error {
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	if len(args) == 1 {
		m, err := s.Admin().QueueMetrics(ctx, args[0])
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(c.stdout, m)
		}
		return metricsTable(c.stdout, []pgqrs.QueueMetrics{m})
	}
	ms, err := s.Admin().AllQueueMetrics(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, jsonList(ms))
	}
	return metricsTable(c.stdout, ms)
}

func (c *cli) archiveList(ctx context.Context, args []string) error {
	return c.listArchive(ctx, args[0], (*pgqrs.Admin).ListArchived)
}

func (c *cli) dlqList(ctx context.Context, args []string) error {
	return c.listArchive(ctx, args[0], (*pgqrs.Admin).ListDeadLetters)
}

// listArchive prints a page of archived messages or dead letters.
func (c *cli) listArchive(ctx context.Context, queue string, list func(*pgqrs.Admin, context.Context, string, pgqrs.ArchivePage) ([]*pgqrs.ArchivedMessage, error)) error {
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
	ms, err := list(s.Admin(), ctx, queue, pgqrs.ArchivePage{Limit: c.f.limit, BeforeID: c.f.before})
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, jsonList(ms))
	}
	t := newTable(c.stdout, "ID", "READS", "ENQUEUED", "ARCHIVED", "LAST ERROR", "PAYLOAD")
	for _, m := range ms {
		t.row(num(m.ID), num(m.ReadCount), timeCell(m.EnqueuedAt), timeCell(m.ArchivedAt), errorCell(m.LastError), payloadCell(m.Payload))
	}
	return t.flush()
}

// dlqReplay puts the dead letters named by ID, or all of them, back in the
// queue.
func (c *cli) dlqReplay(ctx context.Context, args []string) error {
	queue, rest := args[0], args[1:]
	switch {
	case c.f.all && len(rest) > 0:
		return usagef("dlq replay: give message IDs or --all, not both")
	case !c.f.all && len(rest) == 0:
		return usagef("dlq replay: missing argument: give message IDs or --all")
	}
	ids := make([]int64, len(rest))
	for i, a := range rest {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil || id < 1 {
			return usagef("dlq replay: %q is not a message ID", a)
		}
		ids[i] = id
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	var n int64
	if c.f.all {
		n, err = s.Admin().ReplayAllDeadLetters(ctx, queue)
	} else {
		n, err = s.Admin().ReplayDeadLetters(ctx, queue, ids)
	}
	if err != nil {
		return err
	}
	return c.printCount(queue, "replayed", n, "replayed %d dead letters of queue %q\n")
}

func (c *cli) dlqPurge(ctx context.Context, args []string) error {
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	n, err := s.Admin().PurgeDeadLetters(ctx, args[0])
	if err != nil {
		return err
	}
	return c.printCount(args[0], "purged", n, "deleted %d dead letters of queue %q\n")
}

func (c *cli) workersList(ctx context.Context, args []string) error {
	var queue string
	if len(args) == 1 {
		queue = args[0]
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	ws, err := s.Admin().ListWorkers(ctx, queue)
	if err != nil {
		return err
	}
	out := []pgqrs.WorkerInfo{}
	for _, w := range ws {
		if !c.f.live || w.Status != pgqrs.WorkerStopped {
			out = append(out, w)
		}
	}
	if c.json {
		return printJSON(c.stdout, out)
	}
	t := newTable(c.stdout, "ID", "NAME", "QUEUE", "ROLE", "STATUS", "STARTED", "HEARTBEAT", "STOPPED")
	for _, w := range ws {
		if !c.f.live || w.Status != pgqrs.WorkerStopped {
			t.row(num(w.ID), w.Name, w.Queue, w.Role, string(w.Status), timeCell(w.StartedAt), timeCell(w.HeartbeatAt), timeCell(w.StoppedAt))
		}
	}
	return t.flush()
}

func (c *cli) workersHealth(ctx context.Context, args []string) error {
	if err := positive("--stale", c.f.stale); err != nil {
		return err
	}
	var queue string
	if len(args) == 1 {
		queue = args[0]
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	h, err := s.Admin().WorkerHealth(ctx, queue, c.f.stale)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, h)
	}
	if queue == "" {
		queue = "(all)"
	}
	t := newTable(c.stdout, "QUEUE", "READY", "POLLING", "SUSPENDED", "INTERRUPTED", "STOPPED", "STALE")
	t.row(queue, num(h.Ready), num(h.Polling), num(h.Suspended), num(h.Interrupted), num(h.Stopped), num(h.Stale))
	return t.flush()
}

func (c *cli) workersReclaim(ctx context.Context, _ []string) error {
	if err := positive("--stale", c.f.stale); err != nil {
		return err
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	workers, messages, err := s.Admin().ReclaimStale(ctx, c.f.stale)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, map[string]int64{"workers": workers, "messages": messages})
	}
	_, err = fmt.Fprintf(c.stdout, "stopped %d stale workers and released %d messages\n", workers, messages)
	return err
}

func (c *cli) workersStop(ctx context.Context, args []string) error {
	id, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || id < 1 {
		return usagef("workers stop: %q is not a worker ID", args[0])
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	released, err := s.Admin().StopWorker(ctx, id)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, map[string]int64{"worker": id, "released": released})
	}
	_, err = fmt.Fprintf(c.stdout, "stopped worker %d and released %d messages\n", id, released)
	return err
}

func (c *cli) workersPurge(ctx context.Context, _ []string) error {
	if err := nonNegative("--older-than", c.f.olderThan); err != nil {
		return err
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	n, err := s.Admin().PurgeWorkers(ctx, c.f.olderThan)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, map[string]int64{"purged": n})
	}
	_, err = fmt.Fprintf(c.stdout, "deleted %d stopped workers\n", n)
	return err
}
