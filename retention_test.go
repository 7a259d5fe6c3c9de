package pgqrs

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// payloads returns n small JSON payloads.
func payloads(n int) []any {
	ps := make([]any, n)
	for i := range ps {
		ps[i] = i
	}
	return ps
}

// archiveN enqueues n messages on p's queue and archives them through c, in
// batches of at most 500.
func archiveN(t *testing.T, p *Producer, c *Consumer, n int) {
	t.Helper()
	ctx := t.Context()
	for n > 0 {
		k := min(n, 500)
		if _, err := p.EnqueueBatch(ctx, payloads(k)); err != nil {
			t.Fatal(err)
		}
		msgs := mustDequeue(t, c, k)
		if len(msgs) != k {
			t.Fatalf("dequeued %d of %d", len(msgs), k)
		}
		if _, err := c.ArchiveBatch(ctx, msgIDs(msgs)); err != nil {
			t.Fatal(err)
		}
		n -= k
	}
}

func TestRetentionPolicy(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		a := s.Admin()
		fixture(t, s, "kept")
		if got, err := a.GetRetention(ctx, "kept"); err != nil || got != (Retention{}) {
			t.Fatalf("retention of a new queue = %+v, %v; want none", got, err)
		}
		want := Retention{Archived: 7 * 24 * time.Hour, DeadLetters: 90 * time.Second}
		if err := a.SetRetention(ctx, "kept", want); err != nil {
			t.Fatal(err)
		}
		if got, err := a.GetRetention(ctx, "kept"); err != nil || got != want {
			t.Fatalf("retention = %+v, %v; want %+v", got, err, want)
		}
		if err := a.SetRetention(ctx, "kept", Retention{DeadLetters: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if got, _ := a.GetRetention(ctx, "kept"); got != (Retention{DeadLetters: time.Hour}) {
			t.Fatalf("replaced retention = %+v", got)
		}
		if err := a.SetRetention(ctx, "kept", Retention{}); err != nil {
			t.Fatal(err)
		}
		if got, _ := a.GetRetention(ctx, "kept"); got != (Retention{}) {
			t.Fatalf("cleared retention = %+v", got)
		}

		wantErr(t, a.SetRetention(ctx, "kept", Retention{Archived: -time.Second}), ErrInvalidArgument)
		wantErr(t, a.SetRetention(ctx, "missing", Retention{Archived: time.Second}), ErrQueueNotFound)
		_, err := a.GetRetention(ctx, "missing")
		wantErr(t, err, ErrQueueNotFound)
		_, _, err = a.ExpireArchive(ctx, "kept", Retention{DeadLetters: -time.Second})
		wantErr(t, err, ErrInvalidArgument)
		_, _, err = a.ExpireArchive(ctx, "missing", Retention{Archived: time.Second})
		wantErr(t, err, ErrQueueNotFound)

		// A queue with a policy can still be deleted; the policy goes with it.
		if _, err := a.CreateQueue(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		if err := a.SetRetention(ctx, "gone", Retention{Archived: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if err := a.DeleteQueue(ctx, "gone"); err != nil {
			t.Fatalf("delete a queue with a retention policy: %v", err)
		}
		if _, err := a.CreateQueue(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		if got, _ := a.GetRetention(ctx, "gone"); got != (Retention{}) {
			t.Errorf("a new queue of a deleted one's name has its policy %+v", got)
		}
	})
}

// TestExpireArchive: expiry deletes exactly the archived rows older than the
// age, of the kind asked for, of the queue asked for, across several
// batches.
func TestExpireArchive(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		a := s.Admin()
		p, c := fixture(t, s, "old")
		op, oc := fixture(t, s, "other")
		const old = expireBatch + 205 // more than one batch
		archiveN(t, p, c, old)
		archiveN(t, op, oc, 1)
		// Three dead letters: claimed once, then moved for having had one attempt.
		if _, err := p.EnqueueBatch(ctx, []any{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		mustDequeue(t, c, 3, VisibilityTimeout(MinVisibilityTimeout))
		await(t, 10*time.Second, "leases to expire", func() bool { return metrics(t, s, "old").Visible == 3 })
		if n, err := a.MoveToDLQ(ctx, 1); err != nil || n != 3 {
			t.Fatalf("MoveToDLQ = %d, %v", n, err)
		}
		// Three seconds later, five more. The cutoff below lies in the
		// middle of that gap whatever the time the steps take (a loaded
		// machine stretches them), as long as the statement starts within
		// 1.5 s of computing its age.
		oldEnd := time.Now()
		time.Sleep(3 * time.Second)
		freshStart := time.Now()
		archiveN(t, p, c, 5)
		cutoff := oldEnd.Add(freshStart.Sub(oldEnd) / 2)

		if n, d, err := a.ExpireArchive(ctx, "old", Retention{Archived: time.Hour, DeadLetters: time.Hour}); err != nil || n+d != 0 {
			t.Fatalf("expire older than an hour = %d, %d, %v; want nothing", n, d, err)
		}
		n, d, err := a.ExpireArchive(ctx, "old", Retention{Archived: time.Since(cutoff)})
		if err != nil || n != old || d != 0 {
			t.Fatalf("expire archived older than the gap = %d, %d, %v; want %d, 0", n, d, err, old)
		}
		m := metrics(t, s, "old")
		if m.Archived != 5 || m.Dead != 3 {
			t.Errorf("after the expiry the queue has %d archived, %d dead; want the 5 recent and the 3 dead", m.Archived, m.Dead)
		}
		if m := metrics(t, s, "other"); m.Archived != 1 {
			t.Errorf("another queue's archive lost %d", 1-m.Archived)
		}
		// Every queue: the dead letters and the other queue's old archive.
		n, d, err = a.ExpireArchive(ctx, "", Retention{DeadLetters: time.Since(cutoff)})
		if err != nil || n != 0 || d != 3 {
			t.Fatalf("expire dead letters of every queue = %d, %d, %v; want 0, 3", n, d, err)
		}
		if n, _, err := a.ExpireArchive(ctx, "", Retention{Archived: time.Since(cutoff)}); err != nil || n != 1 {
			t.Fatalf("expire archived of every queue = %d, %v; want the other queue's 1", n, err)
		}
		if m := metrics(t, s, "other"); m.Archived != 0 {
			t.Errorf("the other queue keeps %d archived after an expiry of every queue", m.Archived)
		}
	})
}

// TestRunAppliesRetention: a Run loop of the queue applies its policy by
// itself; a loop with RetentionInterval < 0 does not.
func TestRunAppliesRetention(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "retained")
		if err := s.Admin().SetRetention(ctx, "retained", Retention{Archived: 300 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		var handled atomic.Int64
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		opts := &RunOptions{HeartbeatInterval: 50 * time.Millisecond, RetentionInterval: 100 * time.Millisecond, PollInterval: 50 * time.Millisecond}
		go func() {
			done <- c.Run(runCtx, func(context.Context, *Message) error { handled.Add(1); return nil }, opts)
		}()
		defer func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
		if _, err := p.EnqueueBatch(ctx, payloads(20)); err != nil {
			t.Fatal(err)
		}
		await(t, 10*time.Second, "20 handled", func() bool { return handled.Load() == 20 })
		await(t, 10*time.Second, "the archive expired by the Run loop", func() bool { return metrics(t, s, "retained").Archived == 0 })

		// A loop with retention off leaves the archive alone (checked after
		// the expired rows' age has passed several times over).
		q2p, q2c := fixture(t, s, "unretained")
		if err := s.Admin().SetRetention(ctx, "unretained", Retention{Archived: time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		off := *opts
		off.RetentionInterval = -1
		var handled2 atomic.Int64
		ctx2, stop2 := context.WithCancel(ctx)
		done2 := make(chan error, 1)
		go func() {
			done2 <- q2c.Run(ctx2, func(context.Context, *Message) error { handled2.Add(1); return nil }, &off)
		}()
		if _, err := q2p.EnqueueBatch(ctx, payloads(4)); err != nil {
			t.Fatal(err)
		}
		await(t, 10*time.Second, "4 handled", func() bool { return handled2.Load() == 4 })
		beats := func() int64 {
			w, err := s.Admin().GetWorker(ctx, q2c.ID())
			if err != nil {
				t.Fatal(err)
			}
			return w.HeartbeatAt.UnixNano()
		}
		first := beats()
		await(t, 10*time.Second, "several heartbeats", func() bool { return beats()-first > int64(5*opts.HeartbeatInterval) })
		stop2()
		if err := <-done2; err != nil {
			t.Errorf("Run: %v", err)
		}
		if diff := cmp.Diff(int64(4), metrics(t, s, "unretained").Archived); diff != "" {
			t.Errorf("archive of a loop with retention off (-want +got):\n%s", diff)
		}
	})
}
