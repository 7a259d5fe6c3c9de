package pgqrs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Middleware: order, headers added at enqueue, the outcomes reported to
// handle middleware, workflow runs and steps.

// trail records what middleware saw, in order.
type trail struct {
	mu  sync.Mutex
	got []string
}

func (tr *trail) add(format string, args ...any) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.got = append(tr.got, fmt.Sprintf(format, args...))
}

func (tr *trail) all() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.got...)
}

// layer is a middleware of every kind that records entry and exit.
type layer struct {
	name string
	tr   *trail
}

func (l layer) InterceptEnqueue(ctx context.Context, e *EnqueueInfo, next func(context.Context) error) error {
	l.tr.add("%s enqueue> %s n=%d", l.name, e.Queue, e.Count)
	e.SetHeader("via", l.name)
	err := next(ctx)
	l.tr.add("%s <enqueue ids=%d", l.name, len(e.IDs))
	return err
}

func (l layer) InterceptHandle(ctx context.Context, d *Delivery, next func(context.Context) error) error {
	l.tr.add("%s handle> %s", l.name, d.Queue)
	err := next(ctx)
	l.tr.add("%s <handle", l.name)
	return err
}

func TestMiddlewareOrderAndHeaders(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			tr := &trail{}
			var seen *EnqueueInfo
			capture := EnqueueFunc(func(ctx context.Context, e *EnqueueInfo, next func(context.Context) error) error {
				e.SetHeader("trace", "t1")
				err := next(ctx)
				seen = e
				return err
			})
			s := openBackend(t, b, WithMiddleware(layer{"outer", tr}), WithMiddleware(layer{"inner", tr}, capture))
			if err := s.Admin().Install(t.Context()); err != nil {
				t.Fatal(err)
			}
			p, c := fixture(t, s, "mw")
			id := mustEnqueue(t, p, map[string]int{"n": 1}, Header("user", "kept"), Header("via", "caller"))
			want := []string{"outer enqueue> mw n=1", "inner enqueue> mw n=1", "inner <enqueue ids=1", "outer <enqueue ids=1"}
			if diff := cmp.Diff(want, tr.all()); diff != "" {
				t.Errorf("enqueue trail (-want +got):\n%s", diff)
			}
			got := make(chan *Message, 1)
			stop := inBackground(t, func(ctx context.Context) error {
				return c.Run(ctx, func(ctx context.Context, m *Message) error {
					tr.add("handler %d", m.ID)
					got <- m
					return nil
				}, &RunOptions{PollInterval: 20 * time.Millisecond})
			})
			m := <-got
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if m.ID != id {
				t.Fatalf("delivered %d, enqueued %d", m.ID, id)
			}
			// The innermost middleware set "via" last; the caller's other header stays.
			if diff := cmp.Diff(map[string]string{"user": "kept", "via": "inner", "trace": "t1"}, m.Headers); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			want = append(want, "outer handle> mw", "inner handle> mw", fmt.Sprintf("handler %d", id), "inner <handle", "outer <handle")
			if diff := cmp.Diff(want, tr.all()); diff != "" {
				t.Errorf("trail (-want +got):\n%s", diff)
			}

			// Batches and jobs: every message gets the headers; IDs come back.
			p2 := p
			ids, err := p2.EnqueueBatch(t.Context(), []any{1, 2})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(ids, seen.IDs); diff != "" || seen.Count != 2 {
				t.Errorf("batch info: count %d, ids (-returned +seen):\n%s", seen.Count, diff)
			}
			res, err := p2.EnqueueJobs(t.Context(), []Job{{Payload: 3}, {Payload: 4, Options: []EnqueueOption{Header("own", "x")}}})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]int64{res[0].ID, res[1].ID}, seen.IDs); diff != "" {
				t.Errorf("jobs info ids (-returned +seen):\n%s", diff)
			}
			c2, err := s.Consumer(t.Context(), "mw")
			if err != nil {
				t.Fatal(err)
			}
			msgs := mustDequeue(t, c2, 10)
			if len(msgs) != 4 {
				t.Fatalf("dequeued %d, want 4", len(msgs))
			}
			for _, m := range msgs {
				if m.Headers["trace"] != "t1" {
					t.Errorf("message %d headers %v: no trace header", m.ID, m.Headers)
				}
			}
		})
	}
}

func TestMiddlewareShortCircuitAndBadInput(t *testing.T) {
	t.Parallel()
	refuse := errors.New("refused by policy")
	s := openBackend(t, "sqlite", WithMiddleware(EnqueueFunc(func(ctx context.Context, e *EnqueueInfo, next func(context.Context) error) error {
		return refuse
	})))
	if err := s.Admin().Install(t.Context()); err != nil {
		t.Fatal(err)
	}
	p, _ := fixture(t, s, "closed")
	if _, err := p.Enqueue(t.Context(), 1); !errors.Is(err, refuse) {
		t.Fatalf("enqueue: %v, want the middleware's error", err)
	}
	if m := metrics(t, s, "closed"); m.Pending != 0 {
		t.Fatalf("pending %d after a refused enqueue", m.Pending)
	}
	for _, bad := range []any{nil, 42, "text"} {
		if _, err := New(s.db, SQLite, WithMiddleware(bad)); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("WithMiddleware(%v): %v, want ErrInvalidArgument", bad, err)
		}
	}
	// An invalid header set by a middleware fails the enqueue.
	s3, err := New(s.db, SQLite, WithMiddleware(EnqueueFunc(func(ctx context.Context, e *EnqueueInfo, next func(context.Context) error) error {
		e.SetHeader("", "no key")
		return next(ctx)
	})))
	if err != nil {
		t.Fatal(err)
	}
	p3, err := s3.Producer(t.Context(), "closed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p3.Enqueue(t.Context(), 1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("enqueue with an empty header key: %v, want ErrInvalidArgument", err)
	}
}

func TestMiddlewareOutcomes(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			type seen struct {
				attempt int
				kind    OutcomeKind
				delay   time.Duration
			}
			var mu sync.Mutex
			outcomes := map[int64][]seen{}
			s := openBackend(t, b, WithMiddleware(HandleFunc(func(ctx context.Context, d *Delivery, next func(context.Context) error) error {
				err := next(ctx)
				mu.Lock()
				defer mu.Unlock()
				for _, m := range d.Messages {
					o := d.Outcome(m, err)
					outcomes[m.ID] = append(outcomes[m.ID], seen{m.ReadCount, o.Kind, o.Delay})
				}
				return err
			})))
			if err := s.Admin().Install(t.Context()); err != nil {
				t.Fatal(err)
			}
			p, c := fixture(t, s, "outcomes")
			ok := mustEnqueue(t, p, "ok")
			flaky := mustEnqueue(t, p, "flaky")   // fails once, then succeeds
			doomed := mustEnqueue(t, p, "doomed") // always fails: retried, then dead
			fatal := mustEnqueue(t, p, "fatal")   // permanent
			backoff := 30 * time.Millisecond
			inBackground(t, func(ctx context.Context) error {
				return c.Run(ctx, func(ctx context.Context, m *Message) error {
					switch string(m.Payload) {
					case `"flaky"`:
						if m.ReadCount == 1 {
							return errors.New("first try")
						}
					case `"doomed"`:
						return errors.New("never")
					case `"fatal"`:
						return Permanent(errors.New("bad input"))
					}
					return nil
				}, &RunOptions{PollInterval: 20 * time.Millisecond, MaxAttempts: 2, Backoff: func(int) time.Duration { return backoff }})
			})
			awaitDead(t, s, "outcomes", doomed)
			awaitDead(t, s, "outcomes", fatal)
			await(t, 20*time.Second, "archive of ok and flaky", func() bool {
				m := metrics(t, s, "outcomes")
				return m.Archived == 2
			})
			want := map[int64][]seen{
				ok:     {{1, OutcomeArchive, 0}},
				flaky:  {{1, OutcomeRetry, backoff}, {2, OutcomeArchive, 0}},
				doomed: {{1, OutcomeRetry, backoff}, {2, OutcomeDeadLetter, 0}},
				fatal:  {{1, OutcomeDeadLetter, 0}},
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(want, outcomes, cmp.AllowUnexported(seen{})); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMiddlewareWorkflow(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			tr := &trail{}
			s := openBackend(t, b,
				WithMiddleware(HandleFunc(func(ctx context.Context, d *Delivery, next func(context.Context) error) error {
					err := next(ctx)
					tr.add("run %s #%d: %s", d.Workflow, d.RunID, d.Outcome(d.Messages[0], err).Kind)
					return err
				})),
				WithMiddleware(StepFunc(func(ctx context.Context, a *StepAttempt, next func(context.Context) error) error {
					err := next(ctx)
					tr.add("step %s of %s #%d attempt %d: %v", a.Step, a.Workflow, a.RunID, a.Attempt, err)
					return err
				})))
			if err := s.Admin().Install(t.Context()); err != nil {
				t.Fatal(err)
			}
			var tries sync.Map
			wf := NewWorkflow("mw-flow", func(ctx context.Context, run *Run, in int) (int, error) {
				a, err := Step(ctx, run, "double", func(ctx context.Context) (int, error) { return 2 * in, nil })
				if err != nil {
					return 0, err
				}
				return Step(ctx, run, "flaky", func(ctx context.Context) (int, error) {
					n, _ := tries.LoadOrStore(run.ID(), new(int))
					*n.(*int)++
					if *n.(*int) == 1 {
						return 0, Transient(errors.New("blip"))
					}
					return a + 1, nil
				}, StepRetry(RetryPolicy{MaxRetries: 2, Backoff: func(int) time.Duration { return 10 * time.Millisecond }}))
			})
			id, err := wf.Trigger(t.Context(), s, 20)
			if err != nil {
				t.Fatal(err)
			}
			serveInBackground(t, s, wf, fastPoll)
			out, err := waitResult(t, s, wf, id)
			if err != nil || out != 41 {
				t.Fatalf("result %d, %v; want 41", out, err)
			}
			await(t, 20*time.Second, "the archive of the run's message", func() bool { return len(tr.all()) == 5 })
			want := []string{
				fmt.Sprintf("step double of mw-flow #%d attempt 1: <nil>", id),
				fmt.Sprintf("step flaky of mw-flow #%d attempt 1: transient: blip", id),
				fmt.Sprintf("run mw-flow #%d: wait", id),
				fmt.Sprintf("step flaky of mw-flow #%d attempt 2: <nil>", id),
				fmt.Sprintf("run mw-flow #%d: archive", id),
			}
			if diff := cmp.Diff(want, tr.all()); diff != "" {
				t.Errorf("trail (-want +got):\n%s", diff)
			}
		})
	}
}

// BenchmarkHandlerCall measures what middleware costs per handler call:
// "direct" is the handler call itself, "none" the call site with no
// middleware (the one slice-length check), "noopN" N middleware that only
// call next. The database is not involved; see docs/observability.md for
// the drain figures.
func BenchmarkHandlerCall(b *testing.B) {
	noop := HandleFunc(func(ctx context.Context, d *Delivery, next func(context.Context) error) error { return next(ctx) })
	msgs := []*Message{{ID: 1, ReadCount: 1}}
	runnerWith := func(mws ...HandleMiddleware) *runner {
		s := &Store{}
		s.cfg.mw.handle = mws
		return &runner{c: &Consumer{worker: &worker{s: s, queue: "q"}}, o: RunOptions{MaxAttempts: 5},
			handle: func(context.Context, []*Message) error { return nil }, held: map[int64]*lease{}}
	}
	ctx := context.Background()
	b.Run("direct", func(b *testing.B) {
		r := runnerWith()
		for b.Loop() {
			_ = r.call(ctx, msgs)
		}
	})
	b.Run("none", func(b *testing.B) {
		r := runnerWith()
		for b.Loop() {
			_, _ = r.intercept(ctx, msgs)
		}
	})
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("noop%d", n), func(b *testing.B) {
			mws := make([]HandleMiddleware, n)
			for i := range mws {
				mws[i] = noop
			}
			r := runnerWith(mws...)
			for b.Loop() {
				_, _ = r.intercept(ctx, msgs)
			}
		})
	}
}
