package pgqrs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// runInBackground starts c.Run and returns a function that cancels it and
// returns Run's error.
func runInBackground(t *testing.T, c *Consumer, h Handler, o *RunOptions) (stop func() error) {
	t.Helper()
	return inBackground(t, func(ctx context.Context) error { return c.Run(ctx, h, o) })
}

// inBackground starts run (a Run or Serve loop) and returns a function that
// cancels its context and returns its error; the test's cleanup calls it too.
func inBackground(t *testing.T, run func(ctx context.Context) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				err = errors.New("the loop did not return within 60s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// await polls cond until it holds or the deadline passes.
func await(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunProcessesWithBoundedConcurrency(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		const total, concurrency = 40, 4
		p, c := fixture(t, s, "run")
		batch := make([]any, total)
		for i := range batch {
			batch[i] = i
		}
		if _, err := p.EnqueueBatch(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		var running, peak, handled atomic.Int64
		allIn := make(chan struct{})
		var allInOnce sync.Once
		stop := runInBackground(t, c, func(ctx context.Context, m *Message) error {
			n := running.Add(1)
			defer running.Add(-1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			if n == concurrency {
				allInOnce.Do(func() { close(allIn) })
			}
			// The first handlers wait until all slots are busy, proving
			// Concurrency handlers do run at once.
			select {
			case <-allIn:
			case <-time.After(10 * time.Second):
				return errors.New("never saw all handlers running at once")
			}
			handled.Add(1)
			return nil
		}, &RunOptions{Concurrency: concurrency, BatchSize: 8, HeartbeatInterval: 50 * time.Millisecond})
		await(t, 30*time.Second, "all messages handled", func() bool { return handled.Load() >= total })
		if err := stop(); err != nil {
			t.Fatalf("Run returned %v, want nil on cancel", err)
		}
		if got := peak.Load(); got != concurrency {
			t.Errorf("peak concurrency = %d, want %d", got, concurrency)
		}
		m := metrics(t, s, "run")
		if m.Archived != total || m.Pending+m.Leased != 0 {
			t.Errorf("metrics after Run = %+v, want %d archived", m, total)
		}
		if st, err := c.Status(t.Context()); err != nil || st != WorkerStopped {
			t.Errorf("worker after Run = %s, %v; want stopped", st, err)
		}
	})
}

func TestRunRetriesWithBackoffThenDeadLetters(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		const backoff = 300 * time.Millisecond
		p, c := fixture(t, s, "retry")
		id := mustEnqueue(t, p, "fails")
		var mu sync.Mutex
		var calls []time.Time
		var lastErrs []string
		runInBackground(t, c, func(ctx context.Context, m *Message) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, time.Now())
			lastErrs = append(lastErrs, m.LastError)
			return fmt.Errorf("boom %d", m.ReadCount)
		}, &RunOptions{MaxAttempts: 3, PollInterval: 20 * time.Millisecond,
			Backoff: func(int) time.Duration { return backoff }})
		await(t, 20*time.Second, "dead letter", func() bool {
			n, err := s.Admin().CountDeadLetters(t.Context(), "retry")
			return err == nil && n == 1
		})
		mu.Lock()
		defer mu.Unlock()
		if len(calls) != 3 {
			t.Fatalf("handler called %d times, want 3", len(calls))
		}
		for i := 1; i < len(calls); i++ {
			if gap := calls[i].Sub(calls[i-1]); gap < backoff-20*time.Millisecond {
				t.Errorf("retry %d came %v after the failure, before the %v backoff", i, gap, backoff)
			}
		}
		if diff := cmp.Diff([]string{"", "boom 1", "boom 2"}, lastErrs); diff != "" {
			t.Errorf("errors recorded on the message (-want +got):\n%s", diff)
		}
		dead, err := s.Admin().ListDeadLetters(t.Context(), "retry", ArchivePage{})
		if err != nil || len(dead) != 1 {
			t.Fatalf("dead letters = %v, %v", dead, err)
		}
		if dead[0].ID != id || dead[0].LastError != "boom 3" || dead[0].ReadCount != 3 || !dead[0].Dead {
			t.Errorf("dead letter = %+v, want ID %d, error boom 3, read count 3", dead[0], id)
		}
		if m := metrics(t, s, "retry"); m.Pending+m.Leased != 0 || m.Dead != 1 || m.Archived != 0 {
			t.Errorf("metrics = %+v", m)
		}
	})
}

func TestRunSurvivesPanics(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "panics")
		a := mustEnqueue(t, p, "a")
		var logs syncBuffer
		var calls atomic.Int64
		stop := runInBackground(t, c, func(ctx context.Context, m *Message) error {
			if calls.Add(1) == 1 {
				panic("handler bug")
			}
			return nil
		}, &RunOptions{PollInterval: 20 * time.Millisecond, Backoff: func(int) time.Duration { return 0 },
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		await(t, 20*time.Second, "archive after the panic", func() bool {
			n, _ := s.Admin().CountArchived(t.Context(), "panics")
			return n == 1
		})
		b := mustEnqueue(t, p, "b") // the loop keeps running
		await(t, 20*time.Second, "the next message", func() bool {
			n, _ := s.Admin().CountArchived(t.Context(), "panics")
			return n == 2
		})
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		am, err := s.Admin().GetArchived(t.Context(), "panics", a)
		if err != nil || am.ReadCount != 2 || !strings.Contains(am.LastError, "panic: handler bug") {
			t.Errorf("archived after panic = %+v, %v; want read count 2 and the panic recorded", am, err)
		}
		if _, err := s.Admin().GetArchived(t.Context(), "panics", b); err != nil {
			t.Error(err)
		}
		if !strings.Contains(logs.String(), "goroutine") {
			t.Errorf("panic logged without a stack:\n%s", logs.String())
		}
	})
}

func TestRunExtendsLeaseOfSlowHandler(t *testing.T) {
	forEachBackendSerial(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "slow")
		other, err := s.Consumer(t.Context(), "slow")
		if err != nil {
			t.Fatal(err)
		}
		id := mustEnqueue(t, p, "slow work")
		started, release := make(chan struct{}), make(chan struct{})
		var seen atomic.Int64
		stop := runInBackground(t, c, func(ctx context.Context, m *Message) error {
			seen.Add(1)
			close(started)
			<-release
			return ctx.Err() // fails if the lease was lost
		}, &RunOptions{VisibilityTimeout: 500 * time.Millisecond})
		<-started
		// Three lease lengths pass while the handler works; nobody else may
		// get the message meanwhile.
		deadline := time.Now().Add(1500 * time.Millisecond)
		for time.Now().Before(deadline) {
			if got := mustDequeue(t, other, 1); len(got) != 0 {
				t.Fatalf("slow handler's message %d delivered to another consumer", got[0].ID)
			}
			time.Sleep(50 * time.Millisecond)
		}
		close(release)
		await(t, 10*time.Second, "archive", func() bool {
			n, _ := s.Admin().CountArchived(t.Context(), "slow")
			return n == 1
		})
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		am, err := s.Admin().GetArchived(t.Context(), "slow", id)
		if err != nil || am.ReadCount != 1 || seen.Load() != 1 {
			t.Errorf("archived = %+v, %v, handled %d times; want one delivery", am, err, seen.Load())
		}
	})
}

func TestRunGracefulShutdown(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "shutdown")
		want, err := p.EnqueueBatch(t.Context(), []any{1, 2, 3, 4, 5})
		if err != nil {
			t.Fatal(err)
		}
		started, release := make(chan int64, 5), make(chan struct{})
		stop := runInBackground(t, c, func(ctx context.Context, m *Message) error {
			started <- m.ID
			<-release
			return nil
		}, &RunOptions{Concurrency: 1, BatchSize: 5})
		first := <-started
		stopped := make(chan error, 1)
		go func() { stopped <- stop() }()
		// The four unstarted messages are given back at once, while the
		// running handler still runs, unread…
		c2, err := s.Consumer(t.Context(), "shutdown")
		if err != nil {
			t.Fatal(err)
		}
		var rest []*Message
		await(t, 10*time.Second, "unstarted messages given back", func() bool {
			rest = append(rest, mustDequeue(t, c2, 10)...)
			return len(rest) == 4
		})
		// …and Run waits for that handler.
		select {
		case err := <-stopped:
			t.Fatalf("Run returned (%v) before its running handler finished", err)
		default:
		}
		close(release)
		if err := <-stopped; err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		if first != want[0] {
			t.Errorf("first handled %d, want %d", first, want[0])
		}
		// …archives it, and gives the unstarted four back at once, unread.
		if n, _ := s.Admin().CountArchived(t.Context(), "shutdown"); n != 1 {
			t.Errorf("archived %d, want 1", n)
		}
		if diff := cmp.Diff(want[1:], msgIDs(rest)); diff != "" {
			t.Errorf("given back (-want +got):\n%s", diff)
		}
		for _, m := range rest {
			if m.ReadCount != 1 {
				t.Errorf("message %d read count %d after give-back and one claim, want 1", m.ID, m.ReadCount)
			}
		}
		if st, _ := c.Status(t.Context()); st != WorkerStopped {
			t.Errorf("worker = %s, want stopped", st)
		}
		err = c.Run(t.Context(), func(context.Context, *Message) error { return nil }, nil)
		wantErr(t, err, ErrWorkerStopped)
	})
}

func TestRunInterruptedFromAnotherHandle(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		_, c := fixture(t, s, "interrupt")
		ctx := t.Context()
		done := make(chan error, 1)
		go func() {
			done <- c.Run(ctx, func(context.Context, *Message) error { return nil },
				&RunOptions{HeartbeatInterval: 50 * time.Millisecond, PollInterval: 50 * time.Millisecond})
		}()
		admin, err := New(s.DB(), s.Dialect(), schemaOpt(s)...)
		if err != nil {
			t.Fatal(err)
		}
		await(t, 10*time.Second, "worker polling", func() bool {
			w, err := admin.Admin().GetWorker(ctx, c.ID())
			return err == nil && w.Status == WorkerPolling
		})
		if err := admin.Admin().InterruptWorker(ctx, c.ID()); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			wantErr(t, err, ErrInterrupted)
		case <-time.After(20 * time.Second):
			t.Fatal("interrupted Run did not return")
		}
		w, err := admin.Admin().GetWorker(ctx, c.ID())
		if err != nil || w.Status != WorkerSuspended {
			t.Errorf("worker after interrupt = %+v, %v; want suspended", w, err)
		}
	})
}

// TestRunWakesOnEnqueue gives Run an hour-long poll interval: a prompt
// pickup proves a wakeup, not a poll, found the message. On Postgres the
// producer uses another pool, so only LISTEN/NOTIFY can deliver the wakeup.
func TestRunWakesOnEnqueue(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		_, c := fixture(t, s, "wake")
		idle := &eventHandler{want: "pgqrs: idle"}
		got := make(chan int64, 1)
		runInBackground(t, c, func(ctx context.Context, m *Message) error {
			got <- m.ID
			return nil
		}, &RunOptions{PollInterval: time.Hour, Logger: slog.New(idle)})
		await(t, 10*time.Second, "idle loop", func() bool { return idle.seen.Load() })
		producerStore := s
		if s.Dialect() == Postgres {
			await(t, 10*time.Second, "LISTEN connection", func() bool { return s.listening.Load() })
			other, err := Open(t.Context(), os.Getenv("PGQRS_TEST_POSTGRES_DSN"), schemaOpt(s)...)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			producerStore = other
		}
		p, err := producerStore.Producer(t.Context(), "wake")
		if err != nil {
			t.Fatal(err)
		}
		id := mustEnqueue(t, p, "now")
		select {
		case h := <-got:
			if h != id {
				t.Errorf("handled %d, want %d", h, id)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("idle Run did not wake for a new message")
		}
	})
}

// eventHandler is a slog.Handler that notes whether a message was logged.
type eventHandler struct {
	want string
	seen atomic.Bool
}

func (h *eventHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *eventHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.want {
		h.seen.Store(true)
	}
	return nil
}
func (h *eventHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *eventHandler) WithGroup(string) slog.Handler      { return h }

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestRunBatch(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "batches")
		if _, err := p.EnqueueBatch(t.Context(), []any{1, 2, 3, 4, 5, 6, 7}); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var sizes []int
		var handled atomic.Int64
		stop := func() func() error {
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() {
				done <- c.RunBatch(ctx, func(ctx context.Context, msgs []*Message) error {
					mu.Lock()
					sizes = append(sizes, len(msgs))
					mu.Unlock()
					handled.Add(int64(len(msgs)))
					return nil
				}, &RunOptions{BatchSize: 3})
			}()
			return func() error { cancel(); return <-done }
		}()
		await(t, 20*time.Second, "all handled", func() bool { return handled.Load() == 7 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]int{3, 3, 1}, sizes); diff != "" {
			t.Errorf("batch sizes (-want +got):\n%s", diff)
		}
		if n, _ := s.Admin().CountArchived(t.Context(), "batches"); n != 7 {
			t.Errorf("archived %d, want 7", n)
		}
	})
}

func TestRunRejectsBadOptions(t *testing.T) {
	t.Parallel()
	s := openBackend(t, "sqlite")
	if err := s.Admin().Install(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, c := fixture(t, s, "opts")
	h := func(context.Context, *Message) error { return nil }
	for _, o := range []*RunOptions{{Concurrency: -1}, {PollInterval: -time.Second}, {MaxAttempts: -2}, {BatchSize: 5000}} {
		if err := c.Run(t.Context(), h, o); !errors.Is(err, ErrInvalidArgument) && !errors.Is(err, ErrBatchTooLarge) {
			t.Errorf("Run(%+v) = %v, want an invalid-argument error", o, err)
		}
	}
	wantErr(t, c.Run(t.Context(), nil, nil), ErrInvalidArgument)
}

// TestRunShutdownIsBounded: a handler that ignores its cancelled context is
// abandoned after the grace period, and its message comes back later.
func TestRunShutdownIsBounded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "stuck")
		id := mustEnqueue(t, p, "never finishes")
		started, unblock := make(chan struct{}), make(chan struct{})
		defer close(unblock)
		stop := runInBackground(t, c, func(ctx context.Context, m *Message) error {
			close(started)
			<-unblock // ignores ctx
			return nil
		}, &RunOptions{ShutdownTimeout: 100 * time.Millisecond, VisibilityTimeout: time.Second})
		<-started
		begin := time.Now()
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		if took := time.Since(begin); took > 100*time.Millisecond+abandonAfter+5*time.Second {
			t.Errorf("Run took %v to give up on a stuck handler", took)
		}
		c2, err := s.Consumer(t.Context(), "stuck")
		if err != nil {
			t.Fatal(err)
		}
		got := awaitDequeue(t, c2, 1, 20*time.Second)
		if got[0].ID != id {
			t.Errorf("got %d, want the abandoned message %d", got[0].ID, id)
		}
	})
}

// TestRunNeverRunsOneDeliveryTwice keeps claimed messages waiting in memory
// for longer than their lease: the runner keeps their leases, so its own
// next claim cannot take them again.
func TestRunNeverRunsOneDeliveryTwice(t *testing.T) {
	forEachBackendSerial(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "prefetch")
		const total = 12
		batch := make([]any, total)
		for i := range batch {
			batch[i] = i
		}
		if _, err := p.EnqueueBatch(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		calls := map[int64]int{}
		var handled atomic.Int64
		stop := runInBackground(t, c, func(ctx context.Context, m *Message) error {
			mu.Lock()
			calls[m.ID]++
			mu.Unlock()
			time.Sleep(120 * time.Millisecond) // slower than the lease allows for the queue behind it
			handled.Add(1)
			return nil
		}, &RunOptions{Concurrency: 1, BatchSize: 3, VisibilityTimeout: 300 * time.Millisecond, PollInterval: 20 * time.Millisecond})
		await(t, 30*time.Second, "all handled", func() bool { return handled.Load() >= total })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		for id, n := range calls {
			if n != 1 {
				t.Errorf("message %d handled %d times", id, n)
			}
		}
		if n, _ := s.Admin().CountArchived(t.Context(), "prefetch"); n != total || len(calls) != total {
			t.Errorf("archived %d, handled %d distinct; want %d", n, len(calls), total)
		}
	})
}

// TestRunGivesBackMoreThanABatch: the unstarted messages given back at
// shutdown may outnumber the store's batch limit.
func TestRunGivesBackMoreThanABatch(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		small, err := New(s.DB(), s.Dialect(), append(schemaOpt(s), WithMaxBatch(4))...)
		if err != nil {
			t.Fatal(err)
		}
		p, c := fixture(t, small, "giveback")
		for range 2 {
			if _, err := p.EnqueueBatch(t.Context(), []any{1, 2, 3, 4}); err != nil {
				t.Fatal(err)
			}
		}
		started, release := make(chan struct{}, 8), make(chan struct{})
		stop := runInBackground(t, c, func(ctx context.Context, m *Message) error {
			started <- struct{}{}
			<-release
			return nil
		}, &RunOptions{Concurrency: 1, BatchSize: 4})
		<-started
		await(t, 10*time.Second, "8 messages claimed", func() bool { return metrics(t, s, "giveback").Leased == 8 })
		stopped := make(chan error, 1)
		go func() { stopped <- stop() }()
		await(t, 10*time.Second, "7 given back", func() bool { return metrics(t, s, "giveback").Visible == 7 })
		close(release)
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		c2, err := s.Consumer(t.Context(), "giveback")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mustDequeue(t, c2, 10) {
			if m.ReadCount != 1 {
				t.Errorf("given-back message %d has read count %d after one claim, want 1", m.ID, m.ReadCount)
			}
		}
	})
}

// TestRunStoresAnyErrorText: error texts with NUL bytes, invalid UTF-8 and
// more than 4,000 bytes are stored (cleaned) on every backend.
func TestRunStoresAnyErrorText(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "errtext")
		id := mustEnqueue(t, p, "x")
		long := "nul\x00 bad\xff " + strings.Repeat("é", 3000)
		runInBackground(t, c, func(ctx context.Context, m *Message) error {
			return errors.New(long)
		}, &RunOptions{MaxAttempts: 1})
		var dead *ArchivedMessage
		await(t, 20*time.Second, "dead letter", func() bool {
			d, err := s.Admin().GetArchived(t.Context(), "errtext", id)
			dead = d
			return err == nil
		})
		if !utf8.ValidString(dead.LastError) || strings.Contains(dead.LastError, "\x00") ||
			len(dead.LastError) > 4010 || !strings.HasPrefix(dead.LastError, "nul bad") {
			t.Errorf("stored error text: %d bytes, valid UTF-8 %v: %.40q", len(dead.LastError), utf8.ValidString(dead.LastError), dead.LastError)
		}
	})
}

func TestTinyVisibilityTimeoutsAreRejected(t *testing.T) {
	t.Parallel()
	s := openBackend(t, "sqlite")
	if err := s.Admin().Install(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, c := fixture(t, s, "tiny")
	h := func(context.Context, *Message) error { return nil }
	wantErr(t, c.Run(t.Context(), h, &RunOptions{VisibilityTimeout: 2}), ErrInvalidArgument)
	_, err := c.Dequeue(t.Context(), 1, VisibilityTimeout(500*time.Microsecond))
	wantErr(t, err, ErrInvalidArgument)
	wantErr(t, c.ExtendVisibility(t.Context(), 1, time.Nanosecond), ErrInvalidArgument)
}
