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

// TestArchivePartitions: on PostgreSQL the archive is partitioned by UTC
// day; Install creates today's and the next days' partitions, expiry drops
// a day whose rows are all expired and leaves one holding rows another
// queue keeps (deleting only the expired queue's rows there). SQLite and
// Turso have no partitions.
func TestArchivePartitions(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		a := s.Admin()
		parts, err := a.ArchivePartitions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.d.name != Postgres {
			if n, err := a.CreateArchivePartitions(ctx, time.Now().Add(-72*time.Hour), time.Now()); err != nil || n != 0 || len(parts) != 0 {
				t.Fatalf("partitions on %s: %d created, %v, listed %v", s.d.name, n, err, parts)
			}
			return
		}
		_, err = a.CreateArchivePartitions(ctx, time.Now(), time.Now().Add(-time.Hour*48))
		wantErr(t, err, ErrInvalidArgument)
		today := time.Now().UTC().Truncate(24 * time.Hour)
		days := map[time.Time]bool{}
		for _, p := range parts {
			days[p.From] = true
		}
		for k := range ArchivePartitionsAhead + 1 {
			if d := today.AddDate(0, 0, k); !days[d] {
				t.Errorf("no partition for %v after Install: %+v", d, parts)
			}
		}
		if len(parts) == 0 || !parts[0].Default {
			t.Errorf("no default partition first: %+v", parts)
		}
		if n, err := a.CreateArchivePartitions(ctx, today.AddDate(0, 0, -5), today); err != nil || n != 5 {
			t.Fatalf("create 5 past days = %d, %v", n, err)
		}
		p, c := fixture(t, s, "short")
		op, oc := fixture(t, s, "kept")
		archiveN(t, p, c, 30)
		archiveN(t, op, oc, 1)
		// Back-date: 10 rows of "short" to 4 days ago, 10 to 3 days ago with
		// the one of "kept" (which keeps everything).
		move := func(queue string, days int, limit int) {
			t.Helper()
			q, err := a.GetQueue(ctx, queue)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.DB().ExecContext(ctx, s.d.qualify(`UPDATE pgqrs_archive SET archived_at = now() - make_interval(days => $2)
WHERE (id, archived_at) IN (SELECT id, archived_at FROM pgqrs_archive WHERE queue_id = $1 AND archived_at > now() - interval '1 day' ORDER BY id LIMIT $3)`), q.ID, days, limit)
			if err != nil {
				t.Fatal(err)
			}
		}
		move("short", 4, 10)
		move("short", 3, 10)
		move("kept", 3, 1)
		count := func(day time.Time) int64 {
			t.Helper()
			parts, err := a.ArchivePartitions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range parts {
				if p.From.Equal(day) {
					var n int64
					if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM `+s.d.relation(p.Name)).Scan(&n); err != nil {
						t.Fatal(err)
					}
					return n
				}
			}
			return -1 // no such partition
		}
		d4, d3 := today.AddDate(0, 0, -4), today.AddDate(0, 0, -3)
		if count(d4) != 10 || count(d3) != 11 {
			t.Fatalf("back-dated rows: %d four days ago, %d three days ago; want 10, 11", count(d4), count(d3))
		}
		// A policy of two days, applied the way a Run loop does.
		if err := a.SetRetention(ctx, "short", Retention{Archived: 48 * time.Hour}); err != nil {
			t.Fatal(err)
		}
		n, d, err := s.dropPartitions(ctx, true, 0, Retention{}, -1)
		if err != nil || n != 10 || d != 0 {
			t.Fatalf("policy drop = %d, %d, %v; want the 10 rows of four days ago", n, d, err)
		}
		if count(d4) != -1 || count(d3) != 11 {
			t.Fatalf("after the drop: partition of four days ago %d rows (-1: gone), three days ago %d; want gone, 11", count(d4), count(d3))
		}
		q, _ := a.GetQueue(ctx, "short")
		n, _, err = s.expire(ctx, q.ID, Retention{Archived: 48 * time.Hour}, -1)
		if err != nil || n != 10 {
			t.Fatalf("row expiry = %d, %v; want the 10 rows of three days ago", n, err)
		}
		if count(d3) != 1 {
			t.Errorf("partition of three days ago keeps %d rows; want the kept queue's 1", count(d3))
		}
		if m := metrics(t, s, "short"); m.Archived != 10 {
			t.Errorf("short keeps %d archived; want today's 10", m.Archived)
		}
		if m := metrics(t, s, "kept"); m.Archived != 1 {
			t.Errorf("kept keeps %d archived; want 1", m.Archived)
		}
		// Explicit expiry of every queue drops the rest of three days ago.
		if n, _, err := a.ExpireArchive(ctx, "", Retention{Archived: 48 * time.Hour}); err != nil || n != 1 {
			t.Fatalf("expire every queue = %d, %v; want 1", n, err)
		}
		if count(d3) != -1 {
			t.Errorf("the partition of three days ago is still there")
		}
	})
}
