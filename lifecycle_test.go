package pgqrs

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWorkerLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if _, err := s.Admin().CreateQueue(ctx, "w"); err != nil {
			t.Fatal(err)
		}
		p, err := s.Producer(ctx, "w", WithWorkerName("api-1"))
		if err != nil {
			t.Fatal(err)
		}
		if p.Name() != "api-1" || p.Queue() != "w" || p.ID() == 0 {
			t.Errorf("producer = %q on %q, id %d", p.Name(), p.Queue(), p.ID())
		}
		_, err = s.Consumer(ctx, "w", WithWorkerName("api-1"))
		wantErr(t, err, ErrWorkerNameTaken)
		_, err = s.Producer(ctx, "w", WithWorkerName("bad name"))
		wantErr(t, err, ErrInvalidName)
		if err := p.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}

		// Invalid transitions name both states.
		err = p.Resume(ctx)
		var te *TransitionError
		if !errors.As(err, &te) || !errors.Is(err, ErrInvalidTransition) || te.From != WorkerReady || te.To != WorkerReady {
			t.Fatalf("resume a ready worker = %v, want TransitionError ready→ready", err)
		}

		c, err := s.Consumer(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Suspend(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = c.Dequeue(ctx, 1)
		wantErr(t, err, ErrWorkerSuspended)
		if st, err := c.Status(ctx); err != nil || st != WorkerSuspended {
			t.Fatalf("status = %s, %v", st, err)
		}
		if err := c.Resume(ctx); err != nil {
			t.Fatal(err)
		}

		// Shutdown releases what the consumer holds, at once.
		id := mustEnqueue(t, p, "held")
		mustDequeue(t, c, 1)
		if n, err := c.Held(ctx); err != nil || n != 1 {
			t.Fatalf("held = %d, %v; want 1", n, err)
		}
		if err := c.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = c.Dequeue(ctx, 1)
		wantErr(t, err, ErrWorkerStopped)
		wantErr(t, c.Heartbeat(ctx), ErrWorkerStopped)
		err = c.Shutdown(ctx)
		if !errors.As(err, &te) || te.From != WorkerStopped {
			t.Errorf("second shutdown = %v, want a transition error from stopped", err)
		}
		c2, err := s.Consumer(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		got := mustDequeue(t, c2, 1)
		if len(got) != 1 || got[0].ID != id {
			t.Fatalf("message held by the stopped consumer not released: %v", msgIDs(got))
		}

		// A stopped worker's name is free again.
		if err := p.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = p.Enqueue(ctx, "x")
		wantErr(t, err, ErrWorkerStopped)
		p2, err := s.Producer(ctx, "w", WithWorkerName("api-1"))
		if err != nil {
			t.Fatalf("reuse a stopped worker's name: %v", err)
		}

		ws, err := s.Admin().ListWorkers(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		type row struct {
			Name, Role string
			Status     WorkerStatus
			Stopped    bool
		}
		var rows []row
		for _, w := range ws {
			rows = append(rows, row{w.Name, w.Role, w.Status, !w.StoppedAt.IsZero()})
			if w.Queue != "w" || time.Since(w.HeartbeatAt) > time.Minute || w.StartedAt.IsZero() {
				t.Errorf("worker %+v", w)
			}
		}
		want := []row{
			{"api-1", "producer", WorkerStopped, true},
			{c.Name(), "consumer", WorkerStopped, true},
			{c2.Name(), "consumer", WorkerReady, false},
			{"api-1", "producer", WorkerReady, false},
		}
		if diff := cmp.Diff(want, rows); diff != "" {
			t.Errorf("workers (-want +got):\n%s", diff)
		}
		info, err := s.Admin().GetWorker(ctx, p2.ID())
		if err != nil || info.Name != "api-1" || info.Status != WorkerReady {
			t.Errorf("get worker = %+v, %v", info, err)
		}
		_, err = s.Admin().GetWorker(ctx, 999999)
		wantErr(t, err, ErrWorkerNotFound)
	})
}

// TestWorkerStateMachine tries every operation from every state.
func TestWorkerStateMachine(t *testing.T) {
	all := []WorkerStatus{WorkerReady, WorkerPolling, WorkerSuspended, WorkerInterrupted, WorkerStopped}
	type op struct {
		name  string
		to    WorkerStatus
		from  []WorkerStatus // states it is allowed from
		apply func(c *Consumer, ctx context.Context) error
	}
	ops := []op{
		{"suspend", WorkerSuspended, []WorkerStatus{WorkerReady, WorkerPolling, WorkerInterrupted}, (*Consumer).Suspend},
		{"resume", WorkerReady, []WorkerStatus{WorkerSuspended}, (*Consumer).Resume},
		{"interrupt", WorkerInterrupted, []WorkerStatus{WorkerReady, WorkerPolling}, (*Consumer).Interrupt},
		{"shutdown", WorkerStopped, []WorkerStatus{WorkerReady, WorkerPolling, WorkerSuspended, WorkerInterrupted}, (*Consumer).Shutdown},
	}
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if _, err := s.Admin().CreateQueue(ctx, "sm"); err != nil {
			t.Fatal(err)
		}
		for _, o := range ops {
			for _, from := range all {
				c, err := s.Consumer(ctx, "sm")
				if err != nil {
					t.Fatal(err)
				}
				// Force the starting state.
				if err := c.transition(ctx, nil, from, all...); err != nil {
					t.Fatal(err)
				}
				err = o.apply(c, ctx)
				allowed := slices.Contains(o.from, from)
				st, serr := c.Status(ctx)
				if serr != nil {
					t.Fatal(serr)
				}
				var te *TransitionError
				switch {
				case allowed && err != nil:
					t.Errorf("%s from %s: %v, want success", o.name, from, err)
				case allowed && st != o.to:
					t.Errorf("%s from %s: now %s, want %s", o.name, from, st, o.to)
				case !allowed && (!errors.As(err, &te) || te.From != from || te.To != o.to):
					t.Errorf("%s from %s: %v, want TransitionError %s→%s", o.name, from, err, from, o.to)
				case !allowed && st != from:
					t.Errorf("refused %s from %s changed the state to %s", o.name, from, st)
				}
			}
		}
	})
}
