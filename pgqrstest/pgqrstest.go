// Package pgqrstest helps test code that uses pgqrs: a throwaway Store,
// assertions on what was enqueued, and "work everything now" for handlers
// and workflows.
//
//   - [NewStore] opens a Store on a fresh SQLite file in t.TempDir() with the
//     schema installed, and closes it when the test ends. Pass it to the code
//     under test as you would the production Store.
//   - [RequireEnqueued] and [RequireNotEnqueued] look at a queue's live
//     messages (pending, delayed or leased, through
//     [pgqrs.Admin.ListMessages], which claims nothing) for one whose payload
//     and headers match; [Enqueued] returns them all.
//   - [Work] runs a handler on a queue with the real [pgqrs.Consumer.Run]
//     loop until nothing is left to do now, and [WorkWorkflow] does the same
//     for a workflow's runs with [pgqrs.Workflow.Serve]: retries, dead
//     letters and settles are the library's own, not a simulation. By
//     default failures are retried without backoff, so "now" includes every
//     retry up to MaxAttempts.
//
// # Time
//
// pgqrs decides visibility by the database's clock (a delayed message, a
// step retry, a durable [pgqrs.Sleep] all compare against it, and a sleeping
// run checks its own wake time again when its message comes back), so this
// package cannot make time pass faster without faking what it tests. It
// does not try. What it offers instead is honest and real-time:
// [Options.WaitDelayed] makes Work also wait, up to that long, for delayed
// messages and sleeping runs to come due. Keep delays and sleeps in tests
// short (or configurable), and assert on the delayed message itself
// (RequireEnqueued returns it with its VisibleAt) where the delay is long.
package pgqrstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/pgqrs/pgqrs-go"
	_ "modernc.org/sqlite" // the driver NewStore opens
)

// TB is the part of [testing.TB] the helpers use; a *testing.T or
// *testing.B is one.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// NewStore returns a Store on a new SQLite database in t.TempDir(), with
// the schema installed; it is closed when the test ends. opts are the
// Store's options (middleware, limits).
func NewStore(t TB, opts ...pgqrs.Option) *pgqrs.Store {
	t.Helper()
	ctx := context.Background()
	s, err := pgqrs.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "pgqrstest.db"), opts...)
	if err != nil {
		t.Fatalf("pgqrstest: open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Admin().Install(ctx); err != nil {
		t.Fatalf("pgqrstest: install: %v", err)
	}
	return s
}

// Want describes an expected message. A zero Want matches any message.
type Want struct {
	// Payload, when not nil, must equal the message's payload as JSON:
	// encoded with encoding/json (json.RawMessage and []byte are taken as
	// JSON text), then compared by value, so key order and spacing do not
	// matter.
	Payload any
	// Headers must all be present on the message with these values; other
	// headers are allowed.
	Headers map[string]string
}

func (w Want) String() string {
	var parts []string
	if w.Payload != nil {
		b, _ := payloadJSON(w.Payload)
		parts = append(parts, "payload "+string(b))
	}
	if len(w.Headers) > 0 {
		parts = append(parts, fmt.Sprintf("headers %v", w.Headers))
	}
	if len(parts) == 0 {
		return "any message"
	}
	return fmt.Sprint(parts)
}

func payloadJSON(v any) ([]byte, error) {
	switch p := v.(type) {
	case json.RawMessage:
		return p, nil
	case []byte:
		return p, nil
	}
	return json.Marshal(v)
}

// canonical re-encodes JSON text so that equal values compare equal.
func canonical(b []byte) ([]byte, error) {
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func (w Want) match(m *pgqrs.LiveMessage) (bool, error) {
	for k, v := range w.Headers {
		if got, ok := m.Headers[k]; !ok || got != v {
			return false, nil
		}
	}
	if w.Payload == nil {
		return true, nil
	}
	b, err := payloadJSON(w.Payload)
	if err != nil {
		return false, fmt.Errorf("want payload: %w", err)
	}
	want, err := canonical(b)
	if err != nil {
		return false, fmt.Errorf("want payload %s: %w", b, err)
	}
	got, err := canonical(m.Payload)
	if err != nil {
		return false, fmt.Errorf("message %d payload: %w", m.ID, err)
	}
	return bytes.Equal(want, got), nil
}

// Enqueued returns the queue's live messages (pending, delayed or leased),
// oldest first. It fails t if the queue does not exist.
func Enqueued(t TB, s *pgqrs.Store, queue string) []*pgqrs.LiveMessage {
	t.Helper()
	var all []*pgqrs.LiveMessage
	page := pgqrs.MessagePage{Limit: 100}
	for {
		ms, err := s.Admin().ListMessages(context.Background(), queue, page)
		if err != nil {
			t.Fatalf("pgqrstest: messages of %q: %v", queue, err)
		}
		all = append(all, ms...)
		if len(ms) < page.Limit {
			break
		}
		page.BeforeID = ms[len(ms)-1].ID
	}
	slices.Reverse(all)
	return all
}

// RequireEnqueued fails t unless a live message of queue matches want, and
// returns the oldest that does.
func RequireEnqueued(t TB, s *pgqrs.Store, queue string, want Want) *pgqrs.LiveMessage {
	t.Helper()
	msgs := Enqueued(t, s, queue)
	for _, m := range msgs {
		ok, err := want.match(m)
		if err != nil {
			t.Fatalf("pgqrstest: %v", err)
		}
		if ok {
			return m
		}
	}
	t.Fatalf("pgqrstest: no message of queue %q matches %v; the queue holds %s", queue, want, describe(msgs))
	return nil
}

// RequireNotEnqueued fails t if a live message of queue matches want.
func RequireNotEnqueued(t TB, s *pgqrs.Store, queue string, want Want) {
	t.Helper()
	for _, m := range Enqueued(t, s, queue) {
		ok, err := want.match(m)
		if err != nil {
			t.Fatalf("pgqrstest: %v", err)
		}
		if ok {
			t.Fatalf("pgqrstest: message %d of queue %q matches %v: payload %s, headers %v", m.ID, queue, want, m.Payload, m.Headers)
		}
	}
}

func describe(msgs []*pgqrs.LiveMessage) string {
	if len(msgs) == 0 {
		return "no live messages"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d live messages:", len(msgs))
	for i, m := range msgs {
		if i == 10 {
			fmt.Fprintf(&b, "\n\t…")
			break
		}
		fmt.Fprintf(&b, "\n\t%d: payload %s headers %v", m.ID, m.Payload, m.Headers)
	}
	return b.String()
}

// Options tune [Work] and [WorkWorkflow]; nil means all defaults.
type Options struct {
	// Run is passed to the Run loop. Nil fields get these defaults rather
	// than Run's: Backoff none (retries are immediate), PollInterval 10ms,
	// Logger discarding (set one to see the loop's warnings).
	Run *pgqrs.RunOptions
	// WaitDelayed makes Work also wait, in real time and up to this long,
	// for delayed messages (delays, backoffs, sleeping or retrying
	// workflow runs) to come due and be worked. Zero: they are left.
	WaitDelayed time.Duration
	// Timeout bounds the whole call; the test fails when it passes. Default
	// 30s.
	Timeout time.Duration
}

// Result counts what Work did.
type Result struct {
	Calls    int // handler calls
	Failures int // of which returned an error (or panicked)
	// Left are the queue's messages still pending when Work returned:
	// delayed ones not waited for.
	Left int64
}

func (o *Options) run() (pgqrs.RunOptions, time.Duration, time.Duration) {
	var ro pgqrs.RunOptions
	var wait, timeout time.Duration
	if o != nil {
		if o.Run != nil {
			ro = *o.Run
		}
		wait, timeout = o.WaitDelayed, o.Timeout
	}
	if ro.Backoff == nil {
		ro.Backoff = func(int) time.Duration { return 0 }
	}
	if ro.PollInterval == 0 {
		ro.PollInterval = 10 * time.Millisecond
	}
	if ro.Logger == nil {
		ro.Logger = slog.New(slog.DiscardHandler)
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return ro, wait, timeout
}

// Work runs h on queue's messages with [pgqrs.Consumer.Run] until the
// queue has no message visible or leased (and, with WaitDelayed, none
// delayed, or that long has passed), then stops the loop and returns. A
// message the handler fails is retried, by default at once, until its
// MaxAttempts, then dead-lettered, as in production. It fails t if the
// loop cannot start or returns an error, or on the timeout.
func Work(t TB, s *pgqrs.Store, queue string, h pgqrs.Handler, o *Options) Result {
	t.Helper()
	if h == nil {
		t.Fatalf("pgqrstest: Work: nil handler")
	}
	var calls, failures atomic.Int64
	counted := func(ctx context.Context, m *pgqrs.Message) (err error) {
		calls.Add(1)
		defer func() {
			if err != nil {
				failures.Add(1)
			}
		}()
		return h(ctx, m)
	}
	ro, wait, timeout := o.run()
	left := drive(t, s, queue, wait, timeout, func(ctx context.Context) error {
		c, err := s.Consumer(ctx, queue)
		if err != nil {
			return err
		}
		return c.Run(ctx, counted, &ro)
	})
	return Result{Calls: int(calls.Load()), Failures: int(failures.Load()), Left: left}
}

// WorkWorkflow runs wf's runs with [pgqrs.Workflow.Serve] until its queue
// has nothing visible or leased (see [Work]; with WaitDelayed it also
// waits for sleeping and retrying runs). Step retries follow the
// workflow's [pgqrs.RetryPolicy], whose delays are real: use short ones in
// tests, with WaitDelayed. Result.Calls and Failures are not counted.
func WorkWorkflow[In, Out any](t TB, s *pgqrs.Store, wf *pgqrs.Workflow[In, Out], o *Options) Result {
	t.Helper()
	if err := wf.Register(context.Background(), s); err != nil {
		t.Fatalf("pgqrstest: register workflow: %v", err)
	}
	ro, wait, timeout := o.run()
	left := drive(t, s, wf.Name(), wait, timeout, func(ctx context.Context) error { return wf.Serve(ctx, s, &ro) })
	return Result{Left: left}
}

// drive runs loop until the queue is idle, then cancels it; it returns
// the queue's pending messages left.
func drive(t TB, s *pgqrs.Store, queue string, wait, timeout time.Duration, loop func(ctx context.Context) error) int64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- loop(ctx) }()
	stop := func() error {
		cancel()
		return <-done
	}
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("pgqrstest: the loop on %q ended early: %v", queue, err)
		default:
		}
		m, err := s.Admin().QueueMetrics(context.Background(), queue)
		if err != nil {
			stop()
			t.Fatalf("pgqrstest: metrics of %q: %v", queue, err)
		}
		idle := m.Visible == 0 && m.Leased == 0
		if idle && (m.Delayed == 0 || time.Since(start) >= wait) {
			if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("pgqrstest: the loop on %q: %v", queue, err)
			}
			return m.Pending
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("pgqrstest: %q not worked off within %v: %d visible, %d leased, %d delayed", queue, timeout, m.Visible, m.Leased, m.Delayed)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
