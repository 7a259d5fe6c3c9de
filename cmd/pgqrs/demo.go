package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// The demo's fixed settings. Messages that fail are retried after a short
// backoff, so the whole run takes seconds.
const (
	demoMaxAttempts   = 3                      // deliveries before a message is dead-lettered
	demoEnqueueBatch  = 100                    // messages per EnqueueBatch
	demoConcurrency   = 4                      // handlers per consumer
	demoClaimBatch    = 25                     // messages per claim
	demoWork          = time.Millisecond       // simulated work per message
	demoPoll          = 100 * time.Millisecond // Run's poll interval; also how often progress is shown
	demoCheck         = time.Second            // how often the queue's metrics are read while the demo runs
	demoStall         = time.Minute            // the demo fails after this long without progress
	demoSettleTimeout = 10 * time.Second       // for the final reads after an interrupt
)

// demoOptions are the flags of demo.
type demoOptions struct {
	queue    string
	messages int
	workers  int
}

func demoCommand(c *cli, fs *flag.FlagSet) runFunc {
	var o demoOptions
	fs.StringVar(&o.queue, "queue", "demo", "queue to use (created if missing; its messages are deleted first)")
	fs.IntVar(&o.messages, "messages", 3000, "how many messages to produce")
	fs.IntVar(&o.workers, "workers", 4, "how many consumers to run")
	return func(ctx context.Context, _ []string) error { return c.demo(ctx, o) }
}

// demoPayload is the body of a demo message.
type demoPayload struct {
	N     int  `json:"n"`
	Fail  bool `json:"fail,omitempty"`  // fails every attempt: dead-lettered
	Flaky bool `json:"flaky,omitempty"` // fails its first attempt, then succeeds
}

// demoPlan returns the payloads of n demo messages: 1 in 50 always fails,
// 1 in 20 fails once.
func demoPlan(n int) (payloads []any, fail, flaky int) {
	payloads = make([]any, n)
	for i := range payloads {
		p := demoPayload{N: i + 1}
		switch {
		case i%50 == 49:
			p.Fail = true
			fail++
		case i%20 == 3:
			p.Flaky = true
			flaky++
		}
		payloads[i] = p
	}
	return payloads, fail, flaky
}

// demoStats counts what the demo's producer and handlers did. The progress
// line shows these counts, which cost nothing to read; the queue's metrics
// count rows, so the demo reads them only once a second and at the end.
type demoStats struct {
	produced    atomic.Int64
	succeeded   atomic.Int64 // handler successes: archived by Run
	dead        atomic.Int64 // failures of the last allowed attempt: dead-lettered by Run
	failed      atomic.Int64 // all handler errors, retried or dead-lettered
	okAfterFail atomic.Int64 // successes on a second or later delivery
}

// handle is the demo's message handler.
func (st *demoStats) handle(ctx context.Context, m *pgqrs.Message) error {
	err := work(ctx, m)
	switch {
	case err == nil:
		st.succeeded.Add(1)
		if m.ReadCount > 1 {
			st.okAfterFail.Add(1)
		}
	case m.ReadCount >= demoMaxAttempts:
		st.failed.Add(1)
		st.dead.Add(1)
	default:
		st.failed.Add(1)
	}
	return err
}

// work is the demo's simulated job: a short wait, then the failure the
// payload asks for.
func work(ctx context.Context, m *pgqrs.Message) error {
	var p demoPayload
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return fmt.Errorf("decode demo message: %w", err)
	}
	select {
	case <-time.After(demoWork):
	case <-ctx.Done():
		return ctx.Err()
	}
	switch {
	case p.Fail:
		return fmt.Errorf("message %d always fails (attempt %d of %d)", p.N, m.ReadCount, demoMaxAttempts)
	case p.Flaky && m.ReadCount == 1:
		return fmt.Errorf("message %d fails on its first attempt", p.N)
	}
	return nil
}

// demo installs the schema, fills a queue while consumers drain it with
// Consumer.Run, shows progress, and checks that every message ended
// archived or dead-lettered.
func (c *cli) demo(ctx context.Context, o demoOptions) (err error) {
	if err := atLeastOne("--messages", o.messages); err != nil {
		return err
	}
	if err := atLeastOne("--workers", o.workers); err != nil {
		return err
	}
	if o.workers > 64 {
		return usagef("--workers must be at most 64, got %d", o.workers)
	}
	queue, total := o.queue, int64(o.messages)
	start := time.Now()
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	admin := s.Admin()
	if err := admin.Install(ctx); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if _, err := admin.CreateQueue(ctx, queue); err != nil && !errors.Is(err, pgqrs.ErrQueueExists) {
		return err
	}
	leftover, err := admin.PurgeQueue(ctx, queue)
	if err != nil {
		return err
	}
	payloads, fail, flaky := demoPlan(o.messages)
	where := string(s.Dialect())
	if c.dsn == defaultDSN {
		where = defaultDSN
	}
	c.say("pgqrs demo on %s: %d messages to queue %q, %d consumers\n", where, total, queue, o.workers)
	c.say("  %d always fail (dead-lettered after %d attempts); %d fail once, then succeed\n", fail, demoMaxAttempts, flaky)
	if leftover > 0 {
		c.say("  (deleted %d messages left in %q by an earlier run)\n", leftover, queue)
	}

	var st demoStats
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runDone, runErr := c.startConsumers(runCtx, s, queue, o.workers, &st)
	p, err := s.Producer(ctx, queue)
	if err != nil {
		stopRun()
		<-runDone
		return errors.Join(err, runErr())
	}
	defer shutdownWorker(ctx, p.Shutdown, &err)
	prodDone := make(chan error, 1) // the producer's result, for demoWait
	prodExited := make(chan struct{})
	go func() {
		defer close(prodExited)
		for i := 0; i < len(payloads); i += demoEnqueueBatch {
			ids, err := p.EnqueueBatch(runCtx, payloads[i:min(i+demoEnqueueBatch, len(payloads))])
			if err != nil {
				prodDone <- err
				return
			}
			st.produced.Add(int64(len(ids)))
		}
		prodDone <- nil
	}()

	waitErr := c.demoWait(ctx, admin, queue, total, &st, start, prodDone, runDone)
	stopRun()
	<-prodExited // before the deferred producer shutdown
	<-runDone
	if err := errors.Join(waitErr, runErr()); err != nil {
		return err
	}
	m, err := admin.QueueMetrics(ctx, queue)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if !demoComplete(m, total) {
		c.printDemoMetrics(m)
		return fmt.Errorf("demo ended with unfinished messages: %d pending, %d leased, %d archived + %d dead of %d",
			m.Pending, m.Leased, m.Archived, m.Dead, total)
	}
	if !c.json {
		c.say("done in %.1fs: %d archived (%d of them on a retry), %d dead-lettered; %d failed attempts in all\n\n",
			elapsed.Seconds(), m.Archived, st.okAfterFail.Load(), m.Dead, st.failed.Load())
		if err := c.printDemoMetrics(m); err != nil {
			return err
		}
	}
	wf, err := c.demoWorkflowPart(ctx, s)
	if err != nil {
		return fmt.Errorf("workflow demo: %w", err)
	}
	if c.json {
		return printJSON(c.stdout, demoJSON{
			Queue: queue, Messages: total, Consumers: o.workers, ElapsedSeconds: elapsed.Seconds(),
			Archived: m.Archived, Dead: m.Dead, FailedAttempts: st.failed.Load(),
			SucceededAfterRetry: st.okAfterFail.Load(), Metrics: m, Workflow: wf,
		})
	}
	c.demoHints(queue, s.Dialect(), wf.LastRunID)
	return nil
}

// demoJSON is what demo prints with --json.
type demoJSON struct {
	Queue               string              `json:"queue"`
	Messages            int64               `json:"messages"`
	Consumers           int                 `json:"consumers"`
	ElapsedSeconds      float64             `json:"elapsed_seconds"`
	Archived            int64               `json:"archived"`
	Dead                int64               `json:"dead"`
	FailedAttempts      int64               `json:"failed_attempts"`
	SucceededAfterRetry int64               `json:"succeeded_after_retry"`
	Metrics             pgqrs.QueueMetrics  `json:"metrics"`
	Workflow            *demoWorkflowResult `json:"workflow"`
}

// startConsumers starts n consumers running Consumer.Run until
// ctx is cancelled. done is closed when all have returned; errs then
// reports their failures.
func (c *cli) startConsumers(ctx context.Context, s *pgqrs.Store, queue string, n int, st *demoStats) (done <-chan struct{}, errs func() error) {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []error
	)
	record := func(err error) {
		mu.Lock()
		failed = append(failed, err)
		mu.Unlock()
	}
	opts := &pgqrs.RunOptions{
		Concurrency:     demoConcurrency,
		BatchSize:       demoClaimBatch,
		MaxAttempts:     demoMaxAttempts,
		Backoff:         pgqrs.ExponentialBackoff(50*time.Millisecond, 500*time.Millisecond),
		PollInterval:    demoPoll,
		ShutdownTimeout: 5 * time.Second,
		Logger:          c.demoLogger(),
	}
	for range n {
		cons, err := s.Consumer(ctx, queue)
		if err != nil {
			record(err)
			break
		}
		wg.Go(func() {
			if err := cons.Run(ctx, st.handle, opts); err != nil {
				record(fmt.Errorf("consumer %s: %w", cons.Name(), err))
			}
		})
	}
	ch := make(chan struct{})
	go func() {
		wg.Wait()
		close(ch)
	}()
	return ch, func() error {
		mu.Lock()
		defer mu.Unlock()
		return errors.Join(failed...)
	}
}

// demoWait shows progress until the queue's metrics say that every message
// is archived or dead, and fails on an interrupt, a producer error,
// consumers that stop early, or demoStall without progress. It reads the
// metrics once the handlers have seen every message through, and otherwise
// every demoCheck.
func (c *cli) demoWait(ctx context.Context, admin *pgqrs.Admin, queue string, total int64, st *demoStats,
	start time.Time, prodDone <-chan error, runDone <-chan struct{}) error {
	tick := time.NewTicker(demoPoll)
	defer tick.Stop()
	pr := progress{c: c}
	defer pr.end()
	var checked time.Time
	var last int64 // produced + handled at the last sign of progress
	lastChange := time.Now()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo stopped before the end: %w", ctx.Err())
		case err := <-prodDone:
			if err != nil {
				return fmt.Errorf("demo producer: %w", err)
			}
			prodDone = nil
		case <-runDone:
			return errors.New("demo consumers stopped before the end")
		case <-tick.C:
			produced, ok, dead := st.produced.Load(), st.succeeded.Load(), st.dead.Load()
			if n := produced + ok + st.failed.Load(); n != last {
				last, lastChange = n, time.Now()
			} else if time.Since(lastChange) > demoStall {
				return fmt.Errorf("demo made no progress for %v", demoStall)
			}
			done := false
			if produced == total && ok+dead >= total || time.Since(checked) >= demoCheck {
				m, err := admin.QueueMetrics(ctx, queue)
				if err != nil {
					return err
				}
				checked = time.Now()
				done = produced == total && demoComplete(m, total)
			}
			pr.show(fmt.Sprintf("produced %d/%d | succeeded %d | dead-lettered %d | failed attempts %d | %.1fs",
				produced, total, ok, dead, st.failed.Load(), time.Since(start).Seconds()), done)
			if done {
				return nil
			}
		}
	}
}

// demoComplete reports whether every one of total messages ended archived
// or dead-lettered.
func demoComplete(m pgqrs.QueueMetrics, total int64) bool {
	return m.Pending == 0 && m.Leased == 0 && m.Archived+m.Dead == total
}

// progress prints the demo's progress line: rewritten in place on a
// terminal, else a new line at most once a second; nothing with --json.
type progress struct {
	c       *cli
	last    time.Time
	width   int  // length of the line on screen, to blank out leftovers
	showing bool // a line without its newline is on screen
}

func (p *progress) show(line string, final bool) {
	switch {
	case p.c.json:
	case p.c.stdoutTTY:
		fmt.Fprintf(p.c.stdout, "\r%s%s", line, strings.Repeat(" ", max(0, p.width-len(line))))
		p.width, p.showing = len(line), true
	case final || time.Since(p.last) >= time.Second:
		fmt.Fprintln(p.c.stdout, line)
		p.last = time.Now()
	}
}

func (p *progress) end() {
	if p.showing {
		fmt.Fprintln(p.c.stdout)
		p.showing = false
	}
}

// say prints human-readable demo output; --json suppresses it.
func (c *cli) say(format string, args ...any) {
	if !c.json {
		fmt.Fprintf(c.stdout, format, args...)
	}
}

func (c *cli) printDemoMetrics(m pgqrs.QueueMetrics) error {
	if c.json {
		return nil
	}
	return metricsTable(c.stdout, []pgqrs.QueueMetrics{m})
}

// demoLogger reports the Run loops' errors on stderr. Their warnings are
// the failures the demo makes on purpose, which its summary counts.
func (c *cli) demoLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// demoHints prints what to try after the demo. It never prints the DSN,
// which may hold a password.
func (c *cli) demoHints(queue string, d pgqrs.Dialect, lastRun int64) {
	pgqrsCmd, viaGoRun := selfCommand()
	c.say("\nNext, try:\n")
	if c.dsn != defaultDSN {
		c.say("  (give these the same --dsn, or export %s)\n", dsnEnv)
	}
	t := newTable(c.stdout)
	t.row("  "+pgqrsCmd+" dlq list "+queue, "the messages that always failed, with their last error")
	t.row("  "+pgqrsCmd+" dlq replay "+queue+" --all", "put them back in the queue")
	t.row("  "+pgqrsCmd+" metrics", "message counts of every queue")
	t.row("  "+pgqrsCmd+" workers list "+queue, "the demo's producer and consumers, now stopped")
	t.row("  "+pgqrsCmd+" --json recv "+queue, "nothing left to claim: an empty array")
	t.row("  "+pgqrsCmd+" workflow list", "the demo's workflow and its runs per status")
	t.row(fmt.Sprintf("  %s workflow show %d", pgqrsCmd, lastRun), "one run with its recorded steps")
	t.flush()
	if viaGoRun {
		c.say("\nOr install the command once and call it as pgqrs:\n  go install github.com/pgqrs/pgqrs-go/cmd/pgqrs@latest\n")
	}
	if d == pgqrs.SQLite {
		c.say("\nThe same demo on PostgreSQL, or on Turso/libSQL (sqld):\n")
		c.say("  %s --dsn 'postgres://USER:PASSWORD@localhost:5432/DB?sslmode=disable' demo\n", pgqrsCmd)
		c.say("  %s --dsn http://127.0.0.1:8080 demo\n", pgqrsCmd)
	}
}

// selfCommand is how the user can run this command again: "pgqrs", or
// "go run ./cmd/pgqrs" (as the README starts it, from the module root) when
// this process is a binary that go run built in its cache.
func selfCommand() (cmd string, viaGoRun bool) {
	exe, err := os.Executable()
	if err == nil && strings.Contains(filepath.ToSlash(exe), "/go-build") {
		return "go run ./cmd/pgqrs", true
	}
	return "pgqrs", false
}
