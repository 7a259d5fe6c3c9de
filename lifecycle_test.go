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
	t.Parallel()
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
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("second shutdown = %v, want nil", err)
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
	t.Parallel()
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
		// Shutting down a stopped worker is a no-op.
		{"shutdown", WorkerStopped, all, (*Consumer).Shutdown},
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

// TestShutdownOfStoppedWorker: "defer c.Shutdown(ctx)" after Run, or after
// an admin stopped the worker, returns nil; so does a producer's second
// Shutdown.
func TestShutdownOfStoppedWorker(t *testing.T) {
	forEachBackendSerial(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "shut")
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(runCtx, func(context.Context, *Message) error { return nil }, nil) }()
		await(t, 10*time.Second, "the loop polling", func() bool {
			st, err := c.Status(ctx)
			return err == nil && st == WorkerPolling
		})
		cancel() // Run shuts the worker down itself
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("shutdown after Run = %v, want nil", err)
		}
		c2, err := s.Consumer(ctx, "shut")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Admin().StopWorker(ctx, c2.ID()); err != nil {
			t.Fatal(err)
		}
		if err := c2.Shutdown(ctx); err != nil {
			t.Errorf("shutdown of a consumer stopped by an admin = %v, want nil", err)
		}
		for range 2 {
			if err := p.Shutdown(ctx); err != nil {
				t.Errorf("producer shutdown = %v, want nil", err)
			}
		}
		if st, err := p.Status(ctx); err != nil || st != WorkerStopped {
			t.Errorf("producer status = %s, %v", st, err)
		}
	})
}

// TestStoppedConsumerClaimsNothing: a consumer stopped or suspended from
// outside claims nothing from its next Dequeue on, although this process
// still believes it live, and its settle calls are fenced off.
func TestStoppedConsumerClaimsNothing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		a := s.Admin()
		p, c := fixture(t, s, "fence")
		ids, err := p.EnqueueBatch(ctx, []any{1, 2, 3})
		if err != nil {
			t.Fatal(err)
		}
		held := mustDequeue(t, c, 1)

		// Suspended from another handle (as another process would).
		other := &worker{s: s, id: c.ID(), name: c.Name()}
		if err := other.Suspend(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = c.Dequeue(ctx, 1)
		wantErr(t, err, ErrWorkerSuspended)
		if err := other.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		if st, err := c.Status(ctx); err != nil || st != WorkerReady {
			t.Fatalf("status after resume = %s, %v", st, err)
		}

		// Stopped by an admin: its held message is released at once.
		n, err := a.StopWorker(ctx, c.ID())
		if err != nil || n != 1 {
			t.Fatalf("stop worker = %d, %v; want 1 released", n, err)
		}
		_, err = c.Dequeue(ctx, 10)
		wantErr(t, err, ErrWorkerStopped)
		wantErr(t, c.Archive(ctx, held[0].ID), ErrLeaseLost)
		if ok, err := c.ArchiveBatch(ctx, []int64{held[0].ID}); err != nil || ok[0] {
			t.Errorf("batch archive by a stopped consumer = %v, %v", ok, err)
		}
		wantErr(t, c.ExtendVisibility(ctx, held[0].ID, time.Minute), ErrLeaseLost)
		if m := metrics(t, s, "fence"); m.Visible != 3 || m.Leased != 0 || m.Archived != 0 {
			t.Errorf("metrics = %+v; want all three visible", m)
		}
		c2, err := s.Consumer(ctx, "fence")
		if err != nil {
			t.Fatal(err)
		}
		if got := mustDequeue(t, c2, 10); !cmp.Equal(msgIDs(got), ids) {
			t.Errorf("another consumer got %v, want %v", msgIDs(got), ids)
		}

		// Stopping is idempotent; unknown IDs are named.
		if n, err := a.StopWorker(ctx, c.ID()); err != nil || n != 0 {
			t.Errorf("second stop = %d, %v; want 0, nil", n, err)
		}
		_, err = a.StopWorker(ctx, 999999)
		wantErr(t, err, ErrWorkerNotFound)
	})
}

// pollingLoop starts a Run loop on c that claims every 10ms but
// heartbeats only hourly, and returns once the worker is polling; the
// channel receives Run's error.
func pollingLoop(t *testing.T, c *Consumer) <-chan error {
	t.Helper()
	ctx := t.Context()
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func(context.Context, *Message) error { return nil },
			&RunOptions{HeartbeatInterval: time.Hour, PollInterval: 10 * time.Millisecond})
	}()
	await(t, 10*time.Second, "the loop polling", func() bool {
		st, err := c.Status(ctx)
		return err == nil && st == WorkerPolling
	})
	return done
}

// TestRunEndsWhenStopped: a Run loop whose worker is stopped from outside
// ends with ErrWorkerStopped at its next claim, long before its next
// heartbeat would tell it.
func TestRunEndsWhenStopped(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		_, c := fixture(t, s, "runstop")
		done := pollingLoop(t, c)
		if _, err := s.Admin().StopWorker(ctx, c.ID()); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			wantErr(t, err, ErrWorkerStopped)
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not end after its worker was stopped")
		}
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("shutdown after Run = %v", err)
		}
	})
}

// TestProducerLiveness: a producer heartbeats when it enqueues, goes stale
// when it does not, and a live one declared stopped or purged from outside
// comes back; only its own Shutdown (or its name going to another worker)
// ends it.
func TestProducerLiveness(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		a := s.Admin()
		if _, err := a.CreateQueue(ctx, "plive"); err != nil {
			t.Fatal(err)
		}
		p, err := s.Producer(ctx, "plive", WithWorkerName("p-1"))
		if err != nil {
			t.Fatal(err)
		}
		info := func() WorkerInfo {
			t.Helper()
			w, err := a.GetWorker(ctx, p.ID())
			if err != nil {
				t.Fatal(err)
			}
			return w
		}
		// An enqueue heartbeats once the last beat is old enough. Times are
		// stored to the millisecond: let the clock pass the registration's.
		before := info().HeartbeatAt
		await(t, time.Second, "the clock past the registration", func() bool { return time.Since(before) > 2*time.Millisecond })
		p.lastBeat.Store(0)
		mustEnqueue(t, p, 1)
		if after := info().HeartbeatAt; !after.After(before) {
			t.Errorf("enqueue did not heartbeat: %v then %v", before, after)
		}
		// So does a batch enqueue, which brings back a producer an admin
		// stopped (a regression of the repository refactor).
		if _, err := a.StopWorker(ctx, p.ID()); err != nil {
			t.Fatal(err)
		}
		p.lastBeat.Store(0)
		if _, err := p.EnqueueBatch(ctx, []any{1, 2}); err != nil {
			t.Fatal(err)
		}
		if w := info(); w.Status != WorkerReady {
			t.Fatalf("batch enqueue of a stopped producer left it %s; want ready", w.Status)
		}
		// Idle, it goes stale and ReclaimStale stops it.
		var stopped int64
		await(t, 10*time.Second, "the idle producer reclaimed", func() bool {
			w, _, err := a.ReclaimStale(ctx, 50*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			stopped += w
			return stopped == 1
		})
		if w := info(); w.Status != WorkerStopped {
			t.Fatalf("stale producer is %s", w.Status)
		}
		// Alive after all: its next enqueue brings it back, same ID.
		p.lastBeat.Store(0)
		mustEnqueue(t, p, 2)
		if w := info(); w.Status != WorkerReady || w.Name != "p-1" || !w.StoppedAt.IsZero() {
			t.Errorf("producer after enqueue = %+v, want ready", w)
		}
		// Stopped by an admin and purged: it registers again under its ID.
		if _, err := a.StopWorker(ctx, p.ID()); err != nil {
			t.Fatal(err)
		}
		mustDequeueAll := func() {
			c, err := s.Consumer(ctx, "plive")
			if err != nil {
				t.Fatal(err)
			}
			msgs := mustDequeue(t, c, 10)
			if _, err := c.ArchiveBatch(ctx, msgIDs(msgs)); err != nil {
				t.Fatal(err)
			}
			if err := c.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		}
		mustDequeueAll() // messages referencing the producer keep its row
		if n, err := a.PurgeWorkers(ctx, 0); err != nil || n != 2 {
			t.Fatalf("purge = %d, %v; want the producer and the consumer", n, err)
		}
		if err := p.Heartbeat(ctx); err != nil {
			t.Fatalf("heartbeat of a purged producer: %v", err)
		}
		if w := info(); w.Status != WorkerReady || w.Name != "p-1" || w.Queue != "plive" || w.Role != "producer" {
			t.Errorf("producer after rejoining = %+v", w)
		}
		// Its name taken by another live worker: it stays stopped.
		if _, err := a.StopWorker(ctx, p.ID()); err != nil {
			t.Fatal(err)
		}
		p2, err := s.Producer(ctx, "plive", WithWorkerName("p-1"))
		if err != nil {
			t.Fatal(err)
		}
		wantErr(t, p.Heartbeat(ctx), ErrWorkerStopped)
		_, err = p.Enqueue(ctx, 3)
		wantErr(t, err, ErrWorkerStopped)
		// Its own Shutdown is final.
		if err := p2.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		wantErr(t, p2.Heartbeat(ctx), ErrWorkerStopped)
		_, err = p2.Enqueue(ctx, 4)
		wantErr(t, err, ErrWorkerStopped)
		if w, err := a.GetWorker(ctx, p2.ID()); err != nil || w.Status != WorkerStopped {
			t.Errorf("shut down producer = %+v, %v", w, err)
		}
		// Inside a caller's transaction the heartbeat rides along.
		p3, err := s.Producer(ctx, "plive")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.StopWorker(ctx, p3.ID()); err != nil {
			t.Fatal(err)
		}
		p3.lastBeat.Store(0)
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p3.EnqueueTx(ctx, tx, 5); err != nil {
			tx.Rollback()
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if w, err := a.GetWorker(ctx, p3.ID()); err != nil || w.Status != WorkerReady {
			t.Errorf("producer after EnqueueTx = %+v, %v", w, err)
		}
	})
}

// TestRunSuspendedFromOutside: a Run loop whose worker an admin suspends
// claims nothing more, ends with ErrInterrupted and leaves the worker
// suspended.
func TestRunSuspendedFromOutside(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		_, c := fixture(t, s, "runsusp")
		done := pollingLoop(t, c)
		if err := (&worker{s: s, id: c.ID(), name: c.Name()}).Suspend(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			wantErr(t, err, ErrInterrupted)
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not end after its worker was suspended")
		}
		if st, err := c.Status(ctx); err != nil || st != WorkerSuspended {
			t.Errorf("status = %s, %v; want suspended", st, err)
		}
	})
}

func TestRunOptionsReclaimAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      RunOptions
		want    time.Duration
		invalid bool
	}{
		{in: RunOptions{}, want: DefaultReclaimAfter},
		{in: RunOptions{HeartbeatInterval: 20 * time.Second}, want: 2 * time.Minute},
		{in: RunOptions{ReclaimAfter: -1}, want: -1},
		{in: RunOptions{HeartbeatInterval: 100 * time.Millisecond, ReclaimAfter: 300 * time.Millisecond}, want: 300 * time.Millisecond},
		{in: RunOptions{HeartbeatInterval: time.Second, ReclaimAfter: 2 * time.Second}, invalid: true},
		{in: RunOptions{ReclaimAfter: 10 * time.Second}, invalid: true}, // default heartbeat 5s
	} {
		got, err := tc.in.withDefaults()
		switch {
		case tc.invalid:
			if !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("%+v: err = %v, want ErrInvalidArgument", tc.in, err)
			}
		case err != nil || got.ReclaimAfter != tc.want:
			t.Errorf("%+v: ReclaimAfter = %v, %v; want %v", tc.in, got.ReclaimAfter, err, tc.want)
		}
	}
}
