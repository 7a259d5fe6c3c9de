package pgqrstest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgqrs/pgqrs-go"
	"github.com/pgqrs/pgqrs-go/pgqrstest"
)

// failing records a helper's failure instead of ending the test, so tests
// can check that the assertions fail when they should.
type failing struct {
	*testing.T
	failed string
}

func (f *failing) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	panic(f)
}

func fails(t *testing.T, f func(tb pgqrstest.TB)) string {
	t.Helper()
	ft := &failing{T: t}
	func() {
		defer func() {
			if p := recover(); p != nil && p != ft {
				panic(p)
			}
		}()
		f(ft)
	}()
	if ft.failed == "" {
		t.Fatalf("the helper did not fail")
	}
	return ft.failed
}

func TestRequireEnqueued(t *testing.T) {
	s := pgqrstest.NewStore(t)
	ctx := t.Context()
	if _, err := s.Admin().CreateQueue(ctx, "emails"); err != nil {
		t.Fatal(err)
	}
	p, err := s.Producer(ctx, "emails")
	if err != nil {
		t.Fatal(err)
	}
	id, err := p.Enqueue(ctx, map[string]any{"to": "ada@example.com", "n": 1}, pgqrs.Header("tenant", "acme"), pgqrs.Delay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// Key order and spacing do not matter; headers are a subset match.
	m := pgqrstest.RequireEnqueued(t, s, "emails", pgqrstest.Want{Payload: json.RawMessage(`{"n": 1, "to": "ada@example.com"}`), Headers: map[string]string{"tenant": "acme"}})
	if m.ID != id || m.VisibleAt.Before(time.Now().Add(50*time.Minute)) {
		t.Errorf("matched %d visible at %v; want %d, an hour from now", m.ID, m.VisibleAt, id)
	}
	pgqrstest.RequireEnqueued(t, s, "emails", pgqrstest.Want{Payload: map[string]any{"to": "ada@example.com", "n": 1}})
	pgqrstest.RequireEnqueued(t, s, "emails", pgqrstest.Want{})
	pgqrstest.RequireNotEnqueued(t, s, "emails", pgqrstest.Want{Payload: map[string]any{"to": "bob@example.com", "n": 1}})
	pgqrstest.RequireNotEnqueued(t, s, "emails", pgqrstest.Want{Headers: map[string]string{"tenant": "other"}})

	msg := fails(t, func(tb pgqrstest.TB) {
		pgqrstest.RequireEnqueued(tb, s, "emails", pgqrstest.Want{Payload: map[string]any{"to": "bob@example.com"}})
	})
	if !strings.Contains(msg, `no message of queue "emails" matches`) || !strings.Contains(msg, "ada@example.com") {
		t.Errorf("failure message %q does not name the queue and show what it holds", msg)
	}
	fails(t, func(tb pgqrstest.TB) {
		pgqrstest.RequireNotEnqueued(tb, s, "emails", pgqrstest.Want{Headers: map[string]string{"tenant": "acme"}})
	})
	fails(t, func(tb pgqrstest.TB) { pgqrstest.Enqueued(tb, s, "nope") })
	if n := len(pgqrstest.Enqueued(t, s, "emails")); n != 1 {
		t.Errorf("%d enqueued, want 1", n)
	}
}

func TestWork(t *testing.T) {
	s := pgqrstest.NewStore(t)
	ctx := t.Context()
	if _, err := s.Admin().CreateQueue(ctx, "jobs"); err != nil {
		t.Fatal(err)
	}
	p, err := s.Producer(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.EnqueueBatch(ctx, []any{"ok", "flaky", "doomed", "spawn"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Enqueue(ctx, "far", pgqrs.Delay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var spawned atomic.Bool
	res := pgqrstest.Work(t, s, "jobs", func(ctx context.Context, m *pgqrs.Message) error {
		switch string(m.Payload) {
		case `"flaky"`:
			if m.ReadCount < 3 {
				return errors.New("not yet")
			}
		case `"doomed"`:
			return errors.New("never")
		case `"spawn"`: // work enqueued by a handler is worked too
			if !spawned.Swap(true) {
				_, err := p.Enqueue(ctx, "child")
				return err
			}
		}
		return nil
	}, nil)
	// ok 1, flaky 3, doomed 5 (MaxAttempts), spawn 1, child 1.
	if res.Calls != 11 || res.Failures != 7 || res.Left != 1 {
		t.Errorf("result %+v, want 11 calls, 7 failures, 1 left (the delayed one)", res)
	}
	m, err := s.Admin().QueueMetrics(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if m.Archived != 4 || m.Dead != 1 || m.Delayed != 1 {
		t.Errorf("metrics %+v, want 4 archived, 1 dead, 1 delayed", m)
	}

	// WaitDelayed: a short delay is waited for, in real time.
	if _, err := p.Enqueue(ctx, "soon", pgqrs.Delay(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var soon atomic.Bool
	res = pgqrstest.Work(t, s, "jobs", func(ctx context.Context, m *pgqrs.Message) error {
		soon.Store(soon.Load() || string(m.Payload) == `"soon"`)
		return nil
	}, &pgqrstest.Options{WaitDelayed: 3 * time.Second})
	if !soon.Load() || res.Left != 1 {
		t.Errorf("soon handled %v, left %d; want handled, 1 left (the hour-delayed one)", soon.Load(), res.Left)
	}
}

func TestWorkWorkflow(t *testing.T) {
	s := pgqrstest.NewStore(t)
	var tries atomic.Int32
	// The run sleeps as long as its input says, then takes a step that
	// fails once.
	wf := pgqrs.NewWorkflow("signup", func(ctx context.Context, run *pgqrs.Run, sleep time.Duration) (string, error) {
		if err := pgqrs.Sleep(ctx, run, "cool-off", sleep); err != nil {
			return "", err
		}
		return pgqrs.Step(ctx, run, "welcome", func(ctx context.Context) (string, error) {
			if tries.Add(1) == 1 {
				return "", pgqrs.Transient(errors.New("mail down"))
			}
			return "welcomed", nil
		}, pgqrs.StepRetry(pgqrs.RetryPolicy{Backoff: func(int) time.Duration { return 50 * time.Millisecond }}))
	})
	ctx := t.Context()
	long, err := wf.Trigger(ctx, s, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Without WaitDelayed, Work stops at the sleep.
	res := pgqrstest.WorkWorkflow(t, s, wf, nil)
	if info, err := s.Runs().Get(ctx, long); err != nil || info.Status != pgqrs.RunRunning || res.Left != 1 {
		t.Fatalf("after Work without waiting: %+v, %v, left %d; want RUNNING (asleep), 1 left", info, err, res.Left)
	}
	// With it, a short sleep and the step's retry are waited for, in real
	// time; the hour-long sleep is still left.
	short, err := wf.Trigger(ctx, s, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	res = pgqrstest.WorkWorkflow(t, s, wf, &pgqrstest.Options{WaitDelayed: 3 * time.Second})
	out, err := wf.Result(ctx, s, short)
	if err != nil || out != "welcomed" || tries.Load() != 2 || res.Left != 1 {
		t.Fatalf("result %q, %v after %d tries, %d left; want welcomed after 2, the long sleeper left", out, err, tries.Load(), res.Left)
	}
	if info, err := s.Runs().Get(ctx, long); err != nil || info.Status != pgqrs.RunRunning {
		t.Fatalf("the hour-long sleeper: %+v, %v; want still RUNNING", info, err)
	}
}
