package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/pgqrs/pgqrs-go"
	"github.com/pgqrs/pgqrs-go/cmd/pgqrs/internal/bench"
)

// maxStdinPayload bounds how much of stdin send reads; the store's own
// payload limit (1 MiB by default) applies after that.
const maxStdinPayload = 64 << 20

// Each command with flags has a setup function here (see command.setup):
// it declares the command's flags and runs it with their values.

func sendCommand(c *cli, fs *flag.FlagSet) runFunc {
	var o sendOptions
	fs.DurationVar(&o.delay, "delay", 0, "keep the messages invisible for this long")
	fs.IntVar(&o.count, "count", 1, "enqueue this many copies of the payload, in one batch")
	fs.IntVar(&o.priority, "priority", pgqrs.DefaultPriority, fmt.Sprintf("0 (most urgent) to %d (least)", pgqrs.MaxPriority))
	fs.StringVar(&o.key, "key", "", "unique key: nothing is enqueued while a live message of the queue has it (prints that message's ID, a duplicate)")
	fs.DurationVar(&o.uniqueFor, "unique-for", 0, "with --key: the key also stays taken for this long after its message was enqueued, archived or not (e.g. 24h)")
	fs.Var(&o.headers, "header", "a header key=value stored with the message (repeatable)")
	fs.StringVar(&o.group, "group", "", "key group: the queue runs a group's messages in order, at most its per-group limit at once (see \"pgqrs queue limit\")")
	return func(ctx context.Context, args []string) error { return c.send(ctx, args, o) }
}

// sendOptions are send's flags.
type sendOptions struct {
	delay, uniqueFor time.Duration
	count, priority  int
	key, group       string
	headers          headerFlags
}

// headerFlags collects repeated --header k=v flags.
type headerFlags map[string]string

func (h *headerFlags) String() string { return fmt.Sprint(map[string]string(*h)) }

func (h *headerFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	if *h == nil {
		*h = headerFlags{}
	}
	(*h)[k] = val
	return nil
}

func recvCommand(c *cli, fs *flag.FlagSet) runFunc {
	batch := fs.Int("batch", 1, "claim at most this many messages")
	vt := fs.Duration("vt", pgqrs.DefaultVisibilityTimeout, "visibility timeout: the messages are hidden from other consumers for this long")
	archive := fs.Bool("archive", false, "archive the messages after printing them (default: they become visible again after --vt)")
	return func(ctx context.Context, args []string) error { return c.recv(ctx, args[0], *batch, *vt, *archive) }
}

func archiveListCommand(c *cli, fs *flag.FlagSet) runFunc {
	return c.pageCommand(fs, (*pgqrs.Admin).ListArchived)
}

func dlqListCommand(c *cli, fs *flag.FlagSet) runFunc {
	return c.pageCommand(fs, (*pgqrs.Admin).ListDeadLetters)
}

// pageCommand declares the paging flags of archive list and dlq list.
func (c *cli) pageCommand(fs *flag.FlagSet, list listArchiveFunc) runFunc {
	limit := fs.Int("limit", 20, "print at most this many messages")
	before := fs.Int64("before", 0, "only messages with an ID below this one (for paging; 0: from the newest)")
	return func(ctx context.Context, args []string) error {
		return c.listArchive(ctx, args[0], list, pgqrs.ArchivePage{Limit: *limit, BeforeID: *before})
	}
}

func dlqReplayCommand(c *cli, fs *flag.FlagSet) runFunc {
	all := fs.Bool("all", false, "replay every dead letter of the queue")
	return func(ctx context.Context, args []string) error { return c.dlqReplay(ctx, args[0], args[1:], *all) }
}

func workersListCommand(c *cli, fs *flag.FlagSet) runFunc {
	live := fs.Bool("live", false, "only workers that are not stopped")
	return func(ctx context.Context, args []string) error { return c.workersList(ctx, args, *live) }
}

func workersHealthCommand(c *cli, fs *flag.FlagSet) runFunc {
	stale := staleFlag(fs)
	return func(ctx context.Context, args []string) error { return c.workersHealth(ctx, args, *stale) }
}

func workersReclaimCommand(c *cli, fs *flag.FlagSet) runFunc {
	stale := staleFlag(fs)
	return func(ctx context.Context, _ []string) error { return c.workersReclaim(ctx, *stale) }
}

func staleFlag(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("stale", 30*time.Second, "a producer or consumer without a heartbeat for this long is stale")
}

func workersPurgeCommand(c *cli, fs *flag.FlagSet) runFunc {
	olderThan := fs.Duration("older-than", 24*time.Hour, "delete workers stopped longer ago than this")
	return func(ctx context.Context, _ []string) error { return c.workersPurge(ctx, *olderThan) }
}

// install creates or upgrades the schema.
func (c *cli) install(ctx context.Context, _ []string) error {
	return query(ctx, c, func(s *pgqrs.Store) (map[string]any, error) {
		if err := s.Admin().Install(ctx); err != nil {
			return nil, fmt.Errorf("install: %w", err)
		}
		st, err := s.Admin().SystemStats(ctx)
		return map[string]any{"installed": true, "dialect": s.Dialect(), "schema_version": st.SchemaVersion}, err
	}, func(w io.Writer, v map[string]any) error {
		_, err := fmt.Fprintf(w, "pgqrs schema installed (%s, version %d)\n", v["dialect"], v["schema_version"])
		return err
	})
}

// recount rebuilds PostgreSQL's metrics counters from the rows.
func (c *cli) recount(ctx context.Context, _ []string) error {
	return query(ctx, c, func(s *pgqrs.Store) (map[string]any, error) {
		if err := s.Admin().Recount(ctx); err != nil {
			return nil, err
		}
		st, err := s.Admin().SystemStats(ctx)
		return map[string]any{"live_messages": st.LiveMessages, "archived": st.Archived, "dead": st.Dead}, err
	}, func(w io.Writer, v map[string]any) error {
		_, err := fmt.Fprintf(w, "counted %d live messages, %d archived, %d dead letters\n", v["live_messages"], v["archived"], v["dead"])
		return err
	})
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
	return query(ctx, c, func(s *pgqrs.Store) (*pgqrs.Queue, error) {
		return s.Admin().CreateQueue(ctx, args[0])
	}, func(w io.Writer, q *pgqrs.Queue) error {
		_, err := fmt.Fprintf(w, "created queue %q (id %d)\n", q.Name, q.ID)
		return err
	})
}

// listedQueue is a row of "queue list": the queue with its flow control.
type listedQueue struct {
	*pgqrs.Queue
	Limits   pgqrs.Limits `json:"limits"`
	InFlight int64        `json:"in_flight"`
}

func (c *cli) queueList(ctx context.Context, _ []string) error {
	return query(ctx, c, func(s *pgqrs.Store) ([]listedQueue, error) {
		qs, err := s.Admin().ListQueues(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]listedQueue, 0, len(qs))
		for _, q := range qs {
			l, err := s.Admin().Limits(ctx, q.Name)
			if err != nil {
				return nil, err
			}
			out = append(out, listedQueue{Queue: q, Limits: l.Limits, InFlight: l.InFlight})
		}
		return out, nil
	}, func(w io.Writer, qs []listedQueue) error {
		t := newTable(w, "ID", "NAME", "CREATED", "PAUSED", "LIMITS", "IN FLIGHT")
		for _, q := range qs {
			t.row(num(q.ID), q.Name, timeCell(q.CreatedAt), timeCell(q.PausedAt), q.Limits.String(), inFlightCell(q.Limits, q.InFlight))
		}
		return t.flush()
	})
}

// inFlightCell is the IN FLIGHT column: the limited leases held, against
// max-in-flight when set ("3/16"), "-" for a queue without limits (its
// claims are not counted).
func inFlightCell(l pgqrs.Limits, n int64) string {
	switch {
	case l.MaxInFlight > 0:
		return fmt.Sprintf("%d/%d", n, l.MaxInFlight)
	case l.Rate > 0 || n > 0:
		return num(n)
	}
	return "-"
}

// queueLimitCommand: "queue limit NAME [--max-in-flight N] [--per-group N]
// [--rate N/PERIOD] [--none]". The flags given change those settings (0 or
// "none" clears one), the others stay; --none clears them all; with no
// flag it prints the current ones.
func queueLimitCommand(c *cli, fs *flag.FlagSet) runFunc {
	var o limitOptions
	fs.IntVar(&o.maxInFlight, "max-in-flight", 0, "at most N of the queue's messages leased at once, across every process (0: no limit)")
	fs.IntVar(&o.perGroup, "per-group", 0, "at most N messages of one key group leased at once, in order (0: the default, 1)")
	fs.StringVar(&o.rate, "rate", "", "at most N claims per PERIOD across every process, e.g. 100/1s or 5000/1h (none: no limit)")
	fs.BoolVar(&o.none, "none", false, "clear every limit of the queue")
	return func(ctx context.Context, args []string) error {
		fs.Visit(func(f *flag.Flag) { o.set = append(o.set, f.Name) })
		return c.queueLimit(ctx, args[0], o)
	}
}

// limitOptions are queue limit's flags; set names the flags given.
type limitOptions struct {
	maxInFlight, perGroup int
	rate                  string
	none                  bool
	set                   []string
}

// parseRate reads N/PERIOD ("100/1s", "5000/1h"; "none" or "" for none).
func parseRate(v string) (n int, period time.Duration, err error) {
	if v == "" || v == "none" || v == "0" {
		return 0, 0, nil
	}
	count, per, ok := strings.Cut(v, "/")
	if !ok {
		return 0, 0, usagef("--rate wants N/PERIOD such as 100/1s, got %q", v)
	}
	if n, err = strconv.Atoi(count); err != nil || n < 1 {
		return 0, 0, usagef("--rate %q: the count must be a positive integer", v)
	}
	if period, err = time.ParseDuration(per); err != nil || period <= 0 {
		return 0, 0, usagef("--rate %q: the period must be a positive duration such as 1s, 1m or 1h", v)
	}
	return n, period, nil
}

func (c *cli) queueLimit(ctx context.Context, queue string, o limitOptions) error {
	if o.none && len(o.set) > 1 {
		return usagef("--none clears every limit: give it alone")
	}
	for _, f := range []struct {
		name string
		n    int
	}{{"--max-in-flight", o.maxInFlight}, {"--per-group", o.perGroup}} {
		if f.n < 0 {
			return usagef("%s must not be negative, got %d", f.name, f.n)
		}
	}
	rate, period, err := parseRate(o.rate)
	if err != nil {
		return err
	}
	return query(ctx, c, func(s *pgqrs.Store) (pgqrs.QueueLimits, error) {
		a := s.Admin()
		if len(o.set) > 0 {
			cur, err := a.Limits(ctx, queue)
			if err != nil {
				return cur, err
			}
			l := cur.Limits
			for _, name := range o.set {
				switch name {
				case "none":
					l = pgqrs.Limits{}
				case "max-in-flight":
					l.MaxInFlight = o.maxInFlight
				case "per-group":
					l.PerGroup = o.perGroup
				case "rate":
					l.Rate, l.RatePeriod = rate, period
				}
			}
			if err := a.SetLimits(ctx, queue, l); err != nil {
				return cur, err
			}
		}
		return a.Limits(ctx, queue)
	}, func(w io.Writer, l pgqrs.QueueLimits) error {
		_, err := fmt.Fprintf(w, "queue %q: %s; in flight: %s\n", queue, l.Limits, inFlightCell(l.Limits, l.InFlight))
		return err
	})
}

func (c *cli) queueDelete(ctx context.Context, args []string) error {
	return query(ctx, c, func(s *pgqrs.Store) (map[string]string, error) {
		if err := s.Admin().DeleteQueue(ctx, args[0]); err != nil {
			if errors.Is(err, pgqrs.ErrQueueInUse) {
				return nil, fmt.Errorf("%w (purge it with \"pgqrs queue purge %s\" and stop its workers first, with \"pgqrs workers stop ID\" for those whose process is gone; a workflow's queue goes with \"pgqrs workflow delete\")", err, args[0])
			}
			return nil, err
		}
		return map[string]string{"deleted": args[0]}, nil
	}, func(w io.Writer, _ map[string]string) error {
		_, err := fmt.Fprintf(w, "deleted queue %q\n", args[0])
		return err
	})
}

func (c *cli) queuePurge(ctx context.Context, args []string) error {
	return c.count(ctx, args[0], "purged", "deleted %d messages of queue %q\n", func(s *pgqrs.Store) (int64, error) {
		return s.Admin().PurgeQueue(ctx, args[0])
	})
}

// queuePause pauses a queue for every consumer.
func (c *cli) queuePause(ctx context.Context, args []string) error {
	return c.pause(ctx, args[0], true)
}

// queueResume ends a pause.
func (c *cli) queueResume(ctx context.Context, args []string) error {
	return c.pause(ctx, args[0], false)
}

// pause pauses or resumes queue and prints its state:
// {"queue": ..., "paused": ...} with --json.
func (c *cli) pause(ctx context.Context, queue string, paused bool) error {
	return query(ctx, c, func(s *pgqrs.Store) (map[string]any, error) {
		op := s.Admin().ResumeQueue
		if paused {
			op = s.Admin().PauseQueue
		}
		return map[string]any{"queue": queue, "paused": paused}, op(ctx, queue)
	}, func(w io.Writer, _ map[string]any) error {
		text := "resumed queue %q: its consumers claim again\n"
		if paused {
			text = "paused queue %q: its consumers claim nothing until \"pgqrs queue resume\" (enqueue still works)\n"
		}
		_, err := fmt.Fprintf(w, text, queue)
		return err
	})
}

// cancel cancels live messages of a queue by ID. IDs that are not live
// messages of the queue make it fail (exit 1) after the others were
// cancelled.
func (c *cli) cancel(ctx context.Context, args []string) error {
	queue := args[0]
	ids := make([]int64, len(args)-1)
	for i, a := range args[1:] {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil || id < 1 {
			return usagef("cancel: %q is not a message ID", a)
		}
		ids[i] = id
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	ok, err := s.Admin().CancelMessages(ctx, queue, ids)
	if err != nil {
		return err
	}
	cancelled, missing := []int64{}, []int64{}
	for i, done := range ok {
		if done {
			cancelled = append(cancelled, ids[i])
		} else {
			missing = append(missing, ids[i])
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cancel in queue %q: messages %v: %w (never enqueued, or already archived, dead-lettered, cancelled or deleted); cancelled %v",
			queue, missing, pgqrs.ErrMessageNotFound, cancelled)
	}
	return c.show(map[string]any{"queue": queue, "cancelled": cancelled}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "cancelled messages %v of queue %q; they are in its archive, marked cancelled\n", cancelled, queue)
		return err
	})
}

// count runs op, which changes n things of queue, and prints n:
// {"queue": ..., key: n} with --json, else text formatted with n and queue.
func (c *cli) count(ctx context.Context, queue, key, text string, op func(*pgqrs.Store) (int64, error)) error {
	return query(ctx, c, func(s *pgqrs.Store) (map[string]any, error) {
		n, err := op(s)
		return map[string]any{"queue": queue, key: n}, err
	}, func(w io.Writer, v map[string]any) error {
		_, err := fmt.Fprintf(w, text, v[key], queue)
		return err
	})
}

// send enqueues --count copies of one JSON payload in one batch. With
// --json it prints {"ids": [...], "duplicate": bool}; duplicate is true when
// --key was taken, and ids then holds the holder's ID.
func (c *cli) send(ctx context.Context, args []string, o sendOptions) (err error) {
	if err := nonNegative("--delay", o.delay); err != nil {
		return err
	}
	if err := atLeastOne("--count", o.count); err != nil {
		return err
	}
	if o.priority < 0 || o.priority > pgqrs.MaxPriority {
		return usagef("--priority must be 0 to %d, got %d", pgqrs.MaxPriority, o.priority)
	}
	if o.uniqueFor != 0 && o.key == "" {
		return usagef("--unique-for needs --key")
	}
	if err := nonNegative("--unique-for", o.uniqueFor); err != nil {
		return err
	}
	if o.key != "" && o.count > 1 {
		return usagef("--key with --count %d: one key cannot be unique to several messages", o.count)
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
	payloads := make([]any, o.count)
	for i := range payloads {
		payloads[i] = payload
	}
	var opts []pgqrs.EnqueueOption
	if o.delay > 0 {
		opts = append(opts, pgqrs.Delay(o.delay))
	}
	if o.priority != pgqrs.DefaultPriority {
		opts = append(opts, pgqrs.Priority(o.priority))
	}
	if o.group != "" {
		opts = append(opts, pgqrs.Group(o.group))
	}
	if o.key != "" {
		opts = append(opts, pgqrs.Key(o.key))
	}
	if o.uniqueFor > 0 {
		opts = append(opts, pgqrs.UniqueFor(o.uniqueFor))
	}
	if len(o.headers) > 0 {
		opts = append(opts, pgqrs.Headers(o.headers))
	}
	ids, err := p.EnqueueBatch(ctx, payloads, opts...)
	duplicate := errors.Is(err, pgqrs.ErrDuplicate)
	if err != nil && !duplicate {
		return err
	}
	return c.show(map[string]any{"ids": ids, "duplicate": duplicate}, func(w io.Writer) error {
		for _, id := range ids {
			line := strconv.FormatInt(id, 10)
			if duplicate {
				line += fmt.Sprintf(" (duplicate: key %q is held by this message; nothing enqueued)", o.key)
			}
			if _, err := fmt.Fprintln(w, line); err != nil {
				return err
			}
		}
		return nil
	})
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
func (c *cli) recv(ctx context.Context, queue string, batch int, vt time.Duration, archive bool) (err error) {
	if err := atLeastOne("--batch", batch); err != nil {
		return err
	}
	if err := positive("--vt", vt); err != nil {
		return err
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	cons, err := s.Consumer(ctx, queue)
	if err != nil {
		return err
	}
	defer shutdownWorker(ctx, cons.Shutdown, &err)
	msgs, err := cons.Dequeue(ctx, batch, pgqrs.VisibilityTimeout(vt))
	if err != nil {
		return err
	}
	if len(msgs) > 0 {
		ids := make([]int64, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		op, settle := "release", func() ([]bool, error) { return cons.ReleaseBatch(ctx, ids, vt) }
		if archive {
			op, settle = "archive", func() ([]bool, error) { return cons.ArchiveBatch(ctx, ids) }
		}
		done, err := settle()
		if err != nil {
			return err
		}
		for i, ok := range done {
			if !ok {
				return fmt.Errorf("%s message %d of %q: %w", op, ids[i], queue, pgqrs.ErrLeaseLost)
			}
		}
	}
	return c.show(jsonList(msgs), func(w io.Writer) error {
		if len(msgs) == 0 {
			_, err := fmt.Fprintf(w, "no visible messages in queue %q\n", queue)
			return err
		}
		if archive {
			t := newTable(w, "ID", "PRIORITY", "READS", "ENQUEUED", "HEADERS", "PAYLOAD (archived)")
			for _, m := range msgs {
				t.row(num(m.ID), num(m.Priority), num(m.ReadCount), timeCell(m.EnqueuedAt), headersCell(m.Headers), payloadCell(m.Payload))
			}
			return t.flush()
		}
		t := newTable(w, "ID", "PRIORITY", "READS", "ENQUEUED", "VISIBLE AGAIN", "HEADERS", "PAYLOAD")
		for _, m := range msgs {
			t.row(num(m.ID), num(m.Priority), num(m.ReadCount), timeCell(m.EnqueuedAt), timeCell(m.VisibleAt), headersCell(m.Headers), payloadCell(m.Payload))
		}
		return t.flush()
	})
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

func metricsCommand(c *cli, fs *flag.FlagSet) runFunc {
	prom := fs.Bool("prometheus", false, "print every queue's metrics in the Prometheus text exposition format (docs/observability.md)")
	return func(ctx context.Context, args []string) error {
		if !*prom {
			return c.metrics(ctx, args)
		}
		switch {
		case len(args) > 0:
			return usagef("--prometheus prints every queue; it takes no QUEUE")
		case c.json:
			return usagef("--prometheus and --json exclude each other")
		}
		s, err := c.open(ctx)
		if err != nil {
			return err
		}
		return s.Admin().WritePrometheus(ctx, c.stdout)
	}
}

// metrics prints the counts of one queue (an object with --json) or of all
// queues (an array).
func (c *cli) metrics(ctx context.Context, args []string) error {
	if len(args) == 1 {
		return query(ctx, c, func(s *pgqrs.Store) (pgqrs.QueueMetrics, error) {
			return s.Admin().QueueMetrics(ctx, args[0])
		}, func(w io.Writer, m pgqrs.QueueMetrics) error {
			return metricsTable(w, []pgqrs.QueueMetrics{m})
		})
	}
	return query(ctx, c, func(s *pgqrs.Store) ([]pgqrs.QueueMetrics, error) {
		ms, err := s.Admin().AllQueueMetrics(ctx)
		return jsonList(ms), err
	}, metricsTable)
}

// listArchiveFunc is Admin.ListArchived or Admin.ListDeadLetters.
type listArchiveFunc func(*pgqrs.Admin, context.Context, string, pgqrs.ArchivePage) ([]*pgqrs.ArchivedMessage, error)

// listArchive prints a page of archived messages or dead letters.
func (c *cli) listArchive(ctx context.Context, queue string, list listArchiveFunc, page pgqrs.ArchivePage) error {
	if err := atLeastOne("--limit", page.Limit); err != nil {
		return err
	}
	if page.BeforeID < 0 {
		return usagef("--before must not be negative, got %d", page.BeforeID)
	}
	return query(ctx, c, func(s *pgqrs.Store) ([]*pgqrs.ArchivedMessage, error) {
		ms, err := list(s.Admin(), ctx, queue, page)
		return jsonList(ms), err
	}, func(w io.Writer, ms []*pgqrs.ArchivedMessage) error {
		t := newTable(w, "ID", "PRIORITY", "READS", "ENQUEUED", "ARCHIVED", "HEADERS", "LAST ERROR", "PAYLOAD")
		for _, m := range ms {
			last := errorCell(m.LastError)
			if m.Cancelled {
				last = errorCell("(cancelled) " + m.LastError)
			}
			t.row(num(m.ID), num(m.Priority), num(m.ReadCount), timeCell(m.EnqueuedAt), timeCell(m.ArchivedAt), headersCell(m.Headers),
				last, payloadCell(m.Payload))
		}
		return t.flush()
	})
}

// dlqReplay puts the dead letters named by ID, or all of them, back in the
// queue.
func (c *cli) dlqReplay(ctx context.Context, queue string, rest []string, all bool) error {
	switch {
	case all && len(rest) > 0:
		return usagef("dlq replay: give message IDs or --all, not both")
	case !all && len(rest) == 0:
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
	return c.count(ctx, queue, "replayed", "replayed %d dead letters of queue %q\n", func(s *pgqrs.Store) (int64, error) {
		if all {
			return s.Admin().ReplayAllDeadLetters(ctx, queue)
		}
		return s.Admin().ReplayDeadLetters(ctx, queue, ids)
	})
}

func (c *cli) dlqPurge(ctx context.Context, args []string) error {
	return c.count(ctx, args[0], "purged", "deleted %d dead letters of queue %q\n", func(s *pgqrs.Store) (int64, error) {
		return s.Admin().PurgeDeadLetters(ctx, args[0])
	})
}

// optionalQueue returns the optional QUEUE argument, "" for all queues.
func optionalQueue(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	return ""
}

func (c *cli) workersList(ctx context.Context, args []string, live bool) error {
	return query(ctx, c, func(s *pgqrs.Store) ([]pgqrs.WorkerInfo, error) {
		ws, err := s.Admin().ListWorkers(ctx, optionalQueue(args))
		out := []pgqrs.WorkerInfo{}
		for _, w := range ws {
			if !live || w.Status != pgqrs.WorkerStopped {
				out = append(out, w)
			}
		}
		return out, err
	}, func(w io.Writer, ws []pgqrs.WorkerInfo) error {
		t := newTable(w, "ID", "NAME", "QUEUE", "ROLE", "STATUS", "STARTED", "HEARTBEAT", "STOPPED")
		for _, w := range ws {
			t.row(num(w.ID), w.Name, w.Queue, w.Role, string(w.Status), timeCell(w.StartedAt), timeCell(w.HeartbeatAt), timeCell(w.StoppedAt))
		}
		return t.flush()
	})
}

func (c *cli) workersHealth(ctx context.Context, args []string, stale time.Duration) error {
	if err := positive("--stale", stale); err != nil {
		return err
	}
	queue := optionalQueue(args)
	return query(ctx, c, func(s *pgqrs.Store) (pgqrs.WorkerHealth, error) {
		return s.Admin().WorkerHealth(ctx, queue, stale)
	}, func(w io.Writer, h pgqrs.WorkerHealth) error {
		t := newTable(w, "QUEUE", "READY", "POLLING", "SUSPENDED", "INTERRUPTED", "STOPPED", "STALE")
		t.row(cmp.Or(queue, "(all)"), num(h.Ready), num(h.Polling), num(h.Suspended), num(h.Interrupted), num(h.Stopped), num(h.Stale))
		return t.flush()
	})
}

func (c *cli) workersReclaim(ctx context.Context, stale time.Duration) error {
	if err := positive("--stale", stale); err != nil {
		return err
	}
	return query(ctx, c, func(s *pgqrs.Store) (map[string]int64, error) {
		workers, messages, err := s.Admin().ReclaimStale(ctx, stale)
		return map[string]int64{"workers": workers, "messages": messages}, err
	}, func(w io.Writer, v map[string]int64) error {
		_, err := fmt.Fprintf(w, "stopped %d stale workers and released %d messages\n", v["workers"], v["messages"])
		return err
	})
}

func (c *cli) workersStop(ctx context.Context, args []string) error {
	id, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || id < 1 {
		return usagef("workers stop: %q is not a worker ID", args[0])
	}
	return query(ctx, c, func(s *pgqrs.Store) (map[string]int64, error) {
		released, err := s.Admin().StopWorker(ctx, id)
		return map[string]int64{"worker": id, "released": released}, err
	}, func(w io.Writer, v map[string]int64) error {
		_, err := fmt.Fprintf(w, "stopped worker %d and released %d messages\n", id, v["released"])
		return err
	})
}

func (c *cli) workersPurge(ctx context.Context, olderThan time.Duration) error {
	if err := nonNegative("--older-than", olderThan); err != nil {
		return err
	}
	return query(ctx, c, func(s *pgqrs.Store) (map[string]int64, error) {
		n, err := s.Admin().PurgeWorkers(ctx, olderThan)
		return map[string]int64{"purged": n}, err
	}, func(w io.Writer, v map[string]int64) error {
		_, err := fmt.Fprintf(w, "deleted %d stopped workers\n", v["purged"])
		return err
	})
}

// benchCommand is "pgqrs bench": the benchmark tool, package bench, with its
// own flags. Its DSN falls back to the global one only when the user chose
// that (--dsn or $PGQRS_DSN); otherwise bench runs on a temporary SQLite file.
func benchCommand(c *cli, fs *flag.FlagSet) runFunc {
	cfg := bench.Flags(fs)
	return func(ctx context.Context, _ []string) error {
		global := c.dsn
		if global == defaultDSN && c.getenv(dsnEnv) == "" {
			global = "" // the fallback, not the user's choice
		}
		return bench.Run(ctx, cfg, bench.Env{Stdout: c.stdout, Stderr: c.stderr, JSON: c.json, DSN: global, Schema: c.schema})
	}
}
