package pgqrs

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Queue pause and resume, and an admin's cancel of a message.

// twoStores runs f on every backend with two Stores, each with a pool of
// its own, on one installed database: two processes, as far as pgqrs can
// tell.
func twoStores(t *testing.T, f func(t *testing.T, a, b *Store)) {
	t.Helper()
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			dsn, opts := backendDSN(t, backend)
			open := func() *Store {
				s, err := Open(t.Context(), dsn, opts...)
				if err != nil {
					t.Fatalf("open %s: %v", backend, err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
			a := open()
			if strings.HasPrefix(backend, "turso") {
				wipeTurso(t, a)
			}
			if err := a.Admin().Install(t.Context()); err != nil {
				t.Fatalf("install: %v", err)
			}
			f(t, a, open())
		})
	}
}

// countingLog is a slog.Handler that counts the records with one message.
type countingLog struct {
	want string
	n    atomic.Int64
}

func (h *countingLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.want {
		h.n.Add(1)
	}
	return nil
}
func (h *countingLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingLog) WithGroup(string) slog.Handler      { return h }

// handledSet records the IDs a handler saw.
type handledSet struct {
	mu  sync.Mutex
	ids []int64
}

func (h *handledSet) add(id int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids = append(h.ids, id)
}

func (h *handledSet) get() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := slices.Clone(h.ids)
	slices.Sort(out)
	return out
}

func TestPauseQueueAdmin(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		a := s.Admin()
		p, c := fixture(t, s, "paused")
		if _, err := a.CreateQueue(ctx, "running"); err != nil {
			t.Fatal(err)
		}
		wantErr(t, a.PauseQueue(ctx, "missing"), ErrQueueNotFound)
		wantErr(t, a.ResumeQueue(ctx, "missing"), ErrQueueNotFound)
		wantErr(t, a.PauseQueue(ctx, "bad name!"), ErrInvalidName)

		mustEnqueue(t, p, "before")
		if err := a.PauseQueue(ctx, "paused"); err != nil {
			t.Fatalf("pause: %v", err)
		}
		q, err := a.GetQueue(ctx, "paused")
		if err != nil {
			t.Fatal(err)
		}
		if !q.Paused || time.Since(q.PausedAt) > time.Minute {
			t.Errorf("paused queue reads as %+v", q)
		}
		if err := a.PauseQueue(ctx, "paused"); err != nil {
			t.Fatalf("second pause: %v", err)
		}
		if again, _ := a.GetQueue(ctx, "paused"); !again.PausedAt.Equal(q.PausedAt) {
			t.Errorf("second pause moved PausedAt from %v to %v", q.PausedAt, again.PausedAt)
		}
		// Enqueue still works; nothing is claimed.
		mustEnqueue(t, p, "while paused")
		if _, err := p.EnqueueBatch(ctx, []any{1, 2}); err != nil {
			t.Fatalf("batch enqueue while paused: %v", err)
		}
		if msgs := mustDequeue(t, c, 10); len(msgs) != 0 {
			t.Fatalf("dequeued %d messages from a paused queue", len(msgs))
		}
		m := metrics(t, s, "paused")
		if !m.Paused || m.PausedAt.IsZero() || m.Visible != 4 || m.Leased != 0 {
			t.Errorf("metrics of the paused queue = %+v", m)
		}
		if m := metrics(t, s, "running"); m.Paused {
			t.Errorf("the other queue reads as paused: %+v", m)
		}
		qs, err := a.ListQueues(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			if q.Paused != (q.Name == "paused") {
				t.Errorf("ListQueues: %s paused = %v", q.Name, q.Paused)
			}
		}
		all, err := a.AllQueueMetrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range all {
			if m.Paused != (m.Queue == "paused") {
				t.Errorf("AllQueueMetrics: %s paused = %v", m.Queue, m.Paused)
			}
		}

		if err := a.ResumeQueue(ctx, "paused"); err != nil {
			t.Fatalf("resume: %v", err)
		}
		if err := a.ResumeQueue(ctx, "paused"); err != nil {
			t.Fatalf("second resume: %v", err)
		}
		if q, _ := a.GetQueue(ctx, "paused"); q.Paused || !q.PausedAt.IsZero() {
			t.Errorf("resumed queue reads as %+v", q)
		}
		if msgs := mustDequeue(t, c, 10); len(msgs) != 4 {
			t.Errorf("dequeued %d messages after resume, want 4", len(msgs))
		}
	})
}

// TestPauseStopsRunLoop: a Run loop claims nothing from a paused queue,
// while the handler that was running finishes and is archived, and it
// handles what was enqueued meanwhile as soon as the queue is resumed (its
// poll interval is an hour: the resume wakes it).
func TestPauseStopsRunLoop(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "jobs")
		idle := &countingLog{want: "pgqrs: idle"}
		var handled handledSet
		started, finish := make(chan struct{}), make(chan struct{})
		first := mustEnqueue(t, p, "first")
		runInBackground(t, c, func(ctx context.Context, m *Message) error {
			if m.ID == first {
				close(started)
				<-finish
			}
			handled.add(m.ID)
			return nil
		}, &RunOptions{PollInterval: time.Hour, Logger: slog.New(idle)})
		<-started
		if err := s.Admin().PauseQueue(ctx, "jobs"); err != nil {
			t.Fatal(err)
		}
		later := []int64{mustEnqueue(t, p, "second"), mustEnqueue(t, p, "third")}
		// Each enqueue wakes the loop; a claim after both returns nothing.
		k := idle.n.Load()
		await(t, 10*time.Second, "claims after the enqueues", func() bool { return idle.n.Load() >= k+2 })
		close(finish) // the running handler finishes while paused
		await(t, 10*time.Second, "the running handler's archive", func() bool {
			n, _ := s.Admin().CountArchived(ctx, "jobs")
			return n == 1
		})
		if got := handled.get(); !slices.Equal(got, []int64{first}) {
			t.Fatalf("handled %v while paused, want only %d", got, first)
		}
		if m := metrics(t, s, "jobs"); m.Visible != 2 || m.Leased != 0 || !m.Paused {
			t.Fatalf("metrics while paused = %+v, want 2 visible, none leased", m)
		}
		// Waiting, not spinning: a handful of empty claims, not thousands.
		if n := idle.n.Load(); n > k+20 {
			t.Errorf("%d empty claims while paused: the loop spins", n-k)
		}
		if err := s.Admin().ResumeQueue(ctx, "jobs"); err != nil {
			t.Fatal(err)
		}
		await(t, 20*time.Second, "the messages enqueued while paused", func() bool {
			return len(handled.get()) == 3
		})
		if got, want := handled.get(), sorted(append(later, first)...); !slices.Equal(got, want) {
			t.Errorf("handled %v, want %v", got, want)
		}
	})
}

// TestPauseIsSeenByAnotherStore: a pause and a resume made through one
// pool reach the consumers of another. On Postgres the resume's NOTIFY
// wakes the other Store's idle Run loop (poll interval an hour); elsewhere
// the loop finds it at its next poll.
func TestPauseIsSeenByAnotherStore(t *testing.T) {
	t.Parallel()
	twoStores(t, func(t *testing.T, a, b *Store) {
		ctx := t.Context()
		p, c := fixture(t, a, "shared")
		if err := b.Admin().PauseQueue(ctx, "shared"); err != nil {
			t.Fatal(err)
		}
		id := mustEnqueue(t, p, "x")
		if msgs := mustDequeue(t, c, 10); len(msgs) != 0 {
			t.Fatalf("dequeued %d messages from a queue another Store paused", len(msgs))
		}
		if m := metrics(t, a, "shared"); !m.Paused {
			t.Errorf("metrics through the other Store = %+v, want paused", m)
		}
		poll := 50 * time.Millisecond
		idle := &eventHandler{want: "pgqrs: idle"}
		if a.Dialect() == Postgres {
			poll = time.Hour
		}
		var handled handledSet
		runInBackground(t, c, func(ctx context.Context, m *Message) error {
			handled.add(m.ID)
			return nil
		}, &RunOptions{PollInterval: poll, Logger: slog.New(idle)})
		await(t, 10*time.Second, "idle loop", func() bool { return idle.seen.Load() })
		if a.Dialect() == Postgres {
			await(t, 10*time.Second, "LISTEN connection", func() bool { return a.listening.Load() })
		}
		if got := handled.get(); len(got) != 0 {
			t.Fatalf("handled %v from a paused queue", got)
		}
		if err := b.Admin().ResumeQueue(ctx, "shared"); err != nil {
			t.Fatal(err)
		}
		await(t, 20*time.Second, "the message after the other Store's resume", func() bool {
			return slices.Equal(handled.get(), []int64{id})
		})
	})
}

func TestCancelMessage(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		a := s.Admin()
		p, c := fixture(t, s, "q")
		leased := mustEnqueue(t, p, "leased")
		if msgs := mustDequeue(t, c, 1); len(msgs) != 1 || msgs[0].ID != leased {
			t.Fatalf("dequeued %v, want [%d]", msgIDs(msgs), leased)
		}
		pending := mustEnqueue(t, p, map[string]int{"n": 1}, Header("k", "v"))
		delayed := mustEnqueue(t, p, "later", Delay(time.Hour))

		wantErr(t, a.CancelMessage(ctx, "missing", pending), ErrQueueNotFound)
		wantErr(t, a.CancelMessage(ctx, "q", delayed+1000), ErrMessageNotFound)
		for _, id := range []int64{pending, delayed, leased} {
			if err := a.CancelMessage(ctx, "q", id); err != nil {
				t.Fatalf("cancel %d: %v", id, err)
			}
		}
		wantErr(t, a.CancelMessage(ctx, "q", pending), ErrMessageNotFound)
		if m := metrics(t, s, "q"); m.Pending+m.Leased != 0 || m.Archived != 3 || m.Dead != 0 {
			t.Errorf("metrics after cancelling all = %+v, want 3 archived, nothing live, no dead letters", m)
		}
		got, err := a.GetArchived(ctx, "q", pending)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Cancelled || got.Dead || got.Headers["k"] != "v" || !sameJSON(got.Payload, []byte(`{"n":1}`)) {
			t.Errorf("cancelled message in the archive: %+v", got)
		}
		list, err := a.ListArchived(ctx, "q", ArchivePage{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 3 || !list[0].Cancelled || !list[1].Cancelled || !list[2].Cancelled {
			t.Errorf("ListArchived after cancels: %+v", list)
		}
		if n, _ := a.CountDeadLetters(ctx, "q"); n != 0 {
			t.Errorf("%d dead letters after cancels, want 0", n)
		}

		// The holder of the cancelled lease is told so by every settle.
		wantErr(t, c.Archive(ctx, leased), ErrMessageCancelled)
		wantErr(t, c.Delete(ctx, leased), ErrMessageCancelled)
		wantErr(t, c.Release(ctx, leased, 0), ErrMessageCancelled)
		wantErr(t, c.ExtendVisibility(ctx, leased, time.Minute), ErrMessageCancelled)
		wantErr(t, c.Archive(ctx, leased+1000), ErrMessageNotFound)

		// A dead letter is out of the queue already.
		dead := mustEnqueue(t, p, "dead")
		if msgs := mustDequeue(t, c, 1); len(msgs) != 1 {
			t.Fatal("no message to dead-letter")
		}
		if err := c.Release(ctx, dead, 0); err != nil {
			t.Fatal(err)
		}
		if n, err := a.MoveToDLQ(ctx, 1); err != nil || n != 1 {
			t.Fatalf("MoveToDLQ = %d, %v", n, err)
		}
		wantErr(t, a.CancelMessage(ctx, "q", dead), ErrMessageNotFound)
		if d, _ := a.GetArchived(ctx, "q", dead); !d.Dead || d.Cancelled {
			t.Errorf("dead letter after a refused cancel: %+v", d)
		}

		// The batch form reports per ID.
		x, y := mustEnqueue(t, p, "x"), mustEnqueue(t, p, "y")
		ok, err := a.CancelMessages(ctx, "q", []int64{x, pending, y})
		if err != nil || !slices.Equal(ok, []bool{true, false, true}) {
			t.Errorf("CancelMessages = %v, %v, want [true false true]", ok, err)
		}
		if ok, err := a.CancelMessages(ctx, "q", nil); err != nil || len(ok) != 0 {
			t.Errorf("CancelMessages(nil) = %v, %v", ok, err)
		}

		// A workflow's messages belong to its runs.
		wf := NewWorkflow("wf", func(ctx context.Context, run *Run, in int) (int, error) { return in, nil })
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		err = a.CancelMessage(ctx, "wf", 1)
		wantErr(t, err, ErrInvalidArgument)
		if !strings.Contains(err.Error(), "Runs.Cancel") {
			t.Errorf("refusal does not point to Runs.Cancel: %v", err)
		}
	})
}

// TestCancelStopsRunningHandler: cancelling a message whose handler runs
// cancels the handler's context at the loop's next lease extension, with
// ErrMessageCancelled as its cause; the message stays cancelled in the
// archive (the handler's result is dropped) and the loop goes on.
func TestCancelStopsRunningHandler(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "q")
		victim := mustEnqueue(t, p, "long")
		started := make(chan struct{})
		causes := make(chan error, 1)
		var calls atomic.Int64
		runInBackground(t, c, func(ctx context.Context, m *Message) error {
			if m.ID != victim {
				return nil
			}
			calls.Add(1)
			close(started)
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return ctx.Err()
		}, &RunOptions{VisibilityTimeout: 600 * time.Millisecond, PollInterval: 50 * time.Millisecond,
			Backoff: func(int) time.Duration { return 0 }, Logger: slog.New(slog.DiscardHandler)})
		<-started
		if err := s.Admin().CancelMessage(ctx, "q", victim); err != nil {
			t.Fatal(err)
		}
		select {
		case cause := <-causes:
			if !errors.Is(cause, ErrMessageCancelled) {
				t.Errorf("handler's context cause = %v, want ErrMessageCancelled", cause)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the handler's context was not cancelled after its message was")
		}
		next := mustEnqueue(t, p, "next")
		await(t, 20*time.Second, "the next message's archive", func() bool {
			m, err := s.Admin().GetArchived(ctx, "q", next)
			return err == nil && !m.Cancelled
		})
		got, err := s.Admin().GetArchived(ctx, "q", victim)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Cancelled || got.Dead || got.LastError != "" {
			t.Errorf("cancelled message after its handler returned: %+v", got)
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("the cancelled message was delivered %d times", n)
		}
		if m := metrics(t, s, "q"); m.Pending+m.Leased != 0 || m.Dead != 0 {
			t.Errorf("metrics = %+v", m)
		}
	})
}
