package pgqrs

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestInstallIsIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := openBackend(t, b)
			// Several stores (pools) install at once, as several processes
			// starting together would. sqld is given two pools: it can stall
			// with four or more connections writing at once (TURSO.md).
			stores := []*Store{s}
			extra := 3
			if strings.HasPrefix(b, "turso") {
				extra = 1
			}
			for range extra {
				other, err := New(s.DB(), s.Dialect(), schemaOpt(s)...)
				if err != nil {
					t.Fatal(err)
				}
				stores = append(stores, other)
			}
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				wg.Go(func() { errs[i] = stores[i%len(stores)].Admin().Install(ctx) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("concurrent install %d: %v", i, err)
				}
			}
			if err := s.Admin().Install(ctx); err != nil {
				t.Fatalf("second install: %v", err)
			}
			if err := s.Admin().Verify(ctx); err != nil {
				t.Fatalf("verify after install: %v", err)
			}
			st, err := s.Admin().SystemStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := latestMigration(t, s); st.SchemaVersion != want {
				t.Errorf("schema version = %d, want %d", st.SchemaVersion, want)
			}
		})
	}
}

// schemaOpt gives a second Store on s.DB() the options s was opened with
// that a Store of the same database needs: its schema and, through
// PgBouncer, no prepared statements and the direct DSN for LISTEN.
func schemaOpt(s *Store) []Option {
	var opts []Option
	if s.d.schema != "" {
		opts = append(opts, WithSchema(s.d.schema))
	}
	if s.cfg.unprepared { // through PgBouncer
		opts = append(opts, WithPreparedStatements(false), WithListenDSN(s.listenDSN))
	}
	return opts
}

// latestMigration is the version of the store's last migration (0002 on
// Postgres, 0003 on SQLite and Turso).
func latestMigration(t *testing.T, s *Store) int64 {
	t.Helper()
	ms, err := s.d.loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	return int64(ms[len(ms)-1].version)
}

func TestVerifyReportsDamage(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if err := s.Admin().Verify(ctx); err != nil {
			t.Fatalf("verify on a fresh install: %v", err)
		}
		if _, err := s.DB().ExecContext(ctx, "DROP INDEX "+s.d.relation("pgqrs_messages_claim")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DB().ExecContext(ctx, s.d.qualify("DELETE FROM pgqrs_schema_version")); err != nil {
			t.Fatal(err)
		}
		if s.d.name == Postgres { // the metrics' counts depend on it
			if _, err := s.DB().ExecContext(ctx, "DROP TRIGGER pgqrs_messages_count_in ON "+s.d.relation("pgqrs_messages")); err != nil {
				t.Fatal(err)
			}
			// A disabled trigger counts nothing either.
			if _, err := s.DB().ExecContext(ctx, "ALTER TABLE "+s.d.relation("pgqrs_archive")+" DISABLE TRIGGER pgqrs_archive_count_in"); err != nil {
				t.Fatal(err)
			}
		}
		err := s.Admin().Verify(ctx)
		var se *SchemaError
		if !errors.As(err, &se) || !errors.Is(err, ErrSchema) {
			t.Fatalf("verify = %v, want a *SchemaError", err)
		}
		want := []string{"missing index or trigger pgqrs_messages_claim"}
		if s.d.name == Postgres {
			want = append(want, "missing or disabled trigger pgqrs_messages_count_in on pgqrs_messages",
				"missing or disabled trigger pgqrs_archive_count_in on pgqrs_archive")
		}
		ms, err := s.d.loadMigrations()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms { // 0001_core.sql, 0002_workflows.sql, ...
			want = append(want, "migration "+m.name+" not applied")
		}
		if diff := cmp.Diff(want, se.Problems); diff != "" {
			t.Errorf("problems (-want +got):\n%s", diff)
		}
		// SQLite's archive is a view over pgqrs_messages (it archives in place).
		drop := "DROP TABLE pgqrs_archive"
		if s.d.name != Postgres {
			drop = "DROP VIEW pgqrs_archive"
		}
		if _, err := s.DB().ExecContext(ctx, s.d.qualify(drop)); err != nil {
			t.Fatal(err)
		}
		err = s.Admin().Verify(ctx)
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "missing table pgqrs_archive") {
			t.Fatalf("verify after dropping the archive = %v", err)
		}
	})
}

func TestQueueAdministration(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		a := s.Admin()
		q, err := a.CreateQueue(ctx, "jobs")
		if err != nil {
			t.Fatal(err)
		}
		if q.Name != "jobs" || q.ID == 0 || time.Since(q.CreatedAt) > time.Minute {
			t.Errorf("created queue = %+v", q)
		}
		_, err = a.CreateQueue(ctx, "jobs")
		wantErr(t, err, ErrQueueExists)
		_, err = a.GetQueue(ctx, "nope")
		wantErr(t, err, ErrQueueNotFound)
		_, err = s.Producer(ctx, "nope")
		wantErr(t, err, ErrQueueNotFound)
		_, err = s.Consumer(ctx, "nope")
		wantErr(t, err, ErrQueueNotFound)
		wantErr(t, a.DeleteQueue(ctx, "nope"), ErrQueueNotFound)
		for _, bad := range []string{"", "has space", "semi;colon", "quote'", strings.Repeat("x", 129)} {
			_, err := a.CreateQueue(ctx, bad)
			wantErr(t, err, ErrInvalidName)
		}
		if _, err := a.CreateQueue(ctx, "alpha"); err != nil {
			t.Fatal(err)
		}
		qs, err := a.ListQueues(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, q := range qs {
			names = append(names, q.Name)
		}
		if diff := cmp.Diff([]string{"alpha", "jobs"}, names); diff != "" {
			t.Errorf("queues (-want +got):\n%s", diff)
		}

		// Delete refuses while the queue has live workers, then live messages.
		p, err := s.Producer(ctx, "jobs")
		if err != nil {
			t.Fatal(err)
		}
		mustEnqueue(t, p, "one")
		mustEnqueue(t, p, "two")
		err = a.DeleteQueue(ctx, "jobs")
		wantErr(t, err, ErrQueueInUse)
		if !strings.Contains(err.Error(), "2 live messages") || !strings.Contains(err.Error(), "1 live workers") {
			t.Errorf("refusal does not say why: %v", err)
		}
		if err := p.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		wantErr(t, a.DeleteQueue(ctx, "jobs"), ErrQueueInUse)
		n, err := a.PurgeQueue(ctx, "jobs")
		if err != nil || n != 2 {
			t.Fatalf("purge = %d, %v; want 2", n, err)
		}
		if err := a.DeleteQueue(ctx, "jobs"); err != nil {
			t.Fatalf("delete emptied queue: %v", err)
		}
		_, err = a.GetQueue(ctx, "jobs")
		wantErr(t, err, ErrQueueNotFound)
		if _, err := a.CreateQueue(ctx, "jobs"); err != nil {
			t.Fatalf("re-create deleted queue: %v", err)
		}
	})
}

func TestMetricsFollowEachStep(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "m")
		check := func(step string, want QueueMetrics) {
			t.Helper()
			got := metrics(t, s, "m")
			want.Queue = "m"
			got.OldestPending, got.OldestPendingAge, got.NewestEnqueued = time.Time{}, 0, time.Time{}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: metrics (-want +got):\n%s", step, diff)
			}
		}
		check("empty", QueueMetrics{})
		a := mustEnqueue(t, p, 1)
		mustEnqueue(t, p, 2)
		mustEnqueue(t, p, 3, Delay(time.Hour))
		check("enqueued", QueueMetrics{Visible: 2, Delayed: 1, Pending: 3})
		m := metrics(t, s, "m")
		if m.OldestPending.IsZero() || m.NewestEnqueued.Before(m.OldestPending) || m.OldestPendingAge < 0 || m.OldestPendingAge > time.Minute {
			t.Errorf("times = oldest %v (age %v), newest %v", m.OldestPending, m.OldestPendingAge, m.NewestEnqueued)
		}
		mustDequeue(t, c, 1)
		check("one leased", QueueMetrics{Visible: 1, Leased: 1, Delayed: 1, Pending: 2})
		if err := c.Archive(ctx, a); err != nil {
			t.Fatal(err)
		}
		check("one archived", QueueMetrics{Visible: 1, Delayed: 1, Pending: 2, Archived: 1})
		all, err := s.Admin().AllQueueMetrics(ctx)
		if err != nil || len(all) != 1 || all[0].Archived != 1 {
			t.Fatalf("all queue metrics = %+v, %v", all, err)
		}
		st, err := s.Admin().SystemStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := SystemStats{Queues: 1, LiveMessages: 2, Archived: 1, LiveWorkers: 2, Workers: 2, SchemaVersion: latestMigration(t, s)}
		if diff := cmp.Diff(want, st); diff != "" {
			t.Errorf("system stats (-want +got):\n%s", diff)
		}
		_, err = s.Admin().QueueMetrics(ctx, "missing")
		wantErr(t, err, ErrQueueNotFound)
	})
}

func TestArchiveListing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "arch")
		var want []int64
		for i := range 5 {
			want = append(want, mustEnqueue(t, p, i))
		}
		// The oldest message is archived last: the listing is by message ID
		// (enqueue order), not archive time, as documented (issue 10, item 13).
		if _, err := c.ArchiveBatch(ctx, msgIDs(mustDequeue(t, c, 5))[1:]); err != nil {
			t.Fatal(err)
		}
		if err := c.Archive(ctx, want[0]); err != nil {
			t.Fatal(err)
		}
		a := s.Admin()
		var got []int64
		page := ArchivePage{Limit: 2}
		for {
			ms, err := a.ListArchived(ctx, "arch", page)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) == 0 {
				break
			}
			for _, m := range ms {
				got = append(got, m.ID)
			}
			page.BeforeID = ms[len(ms)-1].ID
		}
		newestFirst := []int64{want[4], want[3], want[2], want[1], want[0]}
		if diff := cmp.Diff(newestFirst, got); diff != "" {
			t.Errorf("archive pages (-want +got):\n%s", diff)
		}
		if n, err := a.CountArchived(ctx, "arch"); err != nil || n != 5 {
			t.Errorf("count archived = %d, %v; want 5", n, err)
		}
		_, err := a.GetArchived(ctx, "arch", 987654)
		wantErr(t, err, ErrMessageNotFound)
		_, err = a.ListArchived(ctx, "arch", ArchivePage{Limit: -1})
		wantErr(t, err, ErrInvalidArgument)
		_, err = a.ListArchived(ctx, "missing", ArchivePage{})
		wantErr(t, err, ErrQueueNotFound)
	})
}

func TestDeadLetterAdministration(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		a := s.Admin()
		p, c := fixture(t, s, "dlq")
		ids, err := p.EnqueueBatch(ctx, []any{"a", "b", "c"})
		if err != nil {
			t.Fatal(err)
		}
		// Dequeue with MaxAttempts(1) dead-letters messages whose one
		// delivery's lease expired.
		mustDequeue(t, c, 3, VisibilityTimeout(100*time.Millisecond))
		await(t, 10*time.Second, "leases to expire", func() bool { return metrics(t, s, "dlq").Visible == 3 })
		if got := mustDequeue(t, c, 3, MaxAttempts(1)); len(got) != 0 {
			t.Fatalf("exhausted messages delivered: %v", msgIDs(got))
		}
		if n, err := a.CountDeadLetters(ctx, "dlq"); err != nil || n != 3 {
			t.Fatalf("dead letters = %d, %v; want 3", n, err)
		}
		dead, err := a.ListDeadLetters(ctx, "dlq", ArchivePage{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dead {
			if !d.Dead || d.ReadCount != 1 || !strings.Contains(d.LastError, "no success in 1 attempt: the last one ended without a result (its lease expired") {
				t.Errorf("dead letter %+v", d)
			}
		}
		if n, _ := a.CountArchived(ctx, "dlq"); n != 0 {
			t.Errorf("dead letters counted as archived: %d", n)
		}

		n, err := a.ReplayDeadLetters(ctx, "dlq", []int64{ids[0], 999999})
		if err != nil || n != 1 {
			t.Fatalf("replay one = %d, %v", n, err)
		}
		got := mustDequeue(t, c, 10)
		if len(got) != 1 || got[0].ID != ids[0] || got[0].ReadCount != 1 {
			t.Fatalf("replayed message = %+v, want ID %d with a fresh read count", got, ids[0])
		}
		if n, err := a.ReplayAllDeadLetters(ctx, "dlq"); err != nil || n != 2 {
			t.Fatalf("replay all = %d, %v", n, err)
		}
		if m := metrics(t, s, "dlq"); m.Dead != 0 || m.Visible != 2 {
			t.Errorf("after replay: %+v", m)
		}

		// MoveToDLQ: for messages that exhausted attempts outside Run.
		mustDequeue(t, c, 10, VisibilityTimeout(100*time.Millisecond))
		await(t, 10*time.Second, "leases to expire", func() bool { return metrics(t, s, "dlq").Visible == 2 })
		if n, err := a.MoveToDLQ(ctx, 2); err != nil || n != 0 {
			t.Fatalf("MoveToDLQ(2) with read counts of 1 = %d, %v; want 0", n, err)
		}
		if n, err := a.MoveToDLQ(ctx, 1); err != nil || n != 2 {
			t.Fatalf("MoveToDLQ(1) = %d, %v; want 2", n, err)
		}
		d, err := a.GetArchived(ctx, "dlq", ids[1])
		if err != nil || !d.Dead || d.ReadCount != 1 || d.LastError != "no success in 1 attempt" {
			t.Errorf("moved dead letter = %+v, %v", d, err)
		}
		if n, err := a.PurgeDeadLetters(ctx, "dlq"); err != nil || n != 2 {
			t.Fatalf("purge dead letters = %d, %v; want 2", n, err)
		}
		_, err = a.MoveToDLQ(ctx, 0)
		wantErr(t, err, ErrInvalidArgument)
		_, err = a.ReplayDeadLetters(ctx, "missing", []int64{1})
		wantErr(t, err, ErrQueueNotFound)
	})
}

func TestReclaimStaleWorkers(t *testing.T) {
	forEachBackendSerial(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		a := s.Admin()
		p, stale := fixture(t, s, "reclaim")
		live, err := s.Consumer(ctx, "reclaim")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.EnqueueBatch(ctx, []any{1, 2, 3, 4}); err != nil {
			t.Fatal(err)
		}
		held := mustDequeue(t, stale, 3, VisibilityTimeout(time.Hour))
		mustDequeue(t, live, 1, VisibilityTimeout(time.Hour))
		// Age every heartbeat past staleAfter, then refresh all but one. The
		// refreshed workers must stay younger than staleAfter until both
		// reclaims below have run, so staleAfter is generous: under a loaded
		// CI machine 200 ms was not enough and live workers were reclaimed too.
		const staleAfter = time.Second
		time.Sleep(staleAfter + 200*time.Millisecond)
		for _, w := range []*worker{live.worker, p.worker} {
			if err := w.Heartbeat(ctx); err != nil {
				t.Fatal(err)
			}
		}
		h, err := a.WorkerHealth(ctx, "reclaim", staleAfter)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(WorkerHealth{Queue: "reclaim", Ready: 3, Stale: 1}, h); diff != "" {
			t.Errorf("health (-want +got):\n%s", diff)
		}
		// Two reclaimers at once: the stale worker is stopped once.
		other, err := New(s.DB(), s.Dialect(), schemaOpt(s)...)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var workers, msgs atomic.Int64
		for _, st := range []*Store{s, other} {
			wg.Go(func() {
				w, m, err := st.Admin().ReclaimStale(ctx, staleAfter)
				if err != nil {
					t.Error(err)
				}
				workers.Add(w)
				msgs.Add(m)
			})
		}
		wg.Wait()
		if workers.Load() != 1 || msgs.Load() != 3 {
			t.Errorf("reclaimed %d workers, %d messages; want 1 and 3", workers.Load(), msgs.Load())
		}
		// Released at once, despite hour-long leases.
		got := mustDequeue(t, live, 10)
		if diff := cmp.Diff(msgIDs(held), msgIDs(got)); diff != "" {
			t.Errorf("reclaimed messages (-want +got):\n%s", diff)
		}
		wantErr(t, stale.Archive(ctx, held[0].ID), ErrLeaseLost)
		wantErr(t, stale.Heartbeat(ctx), ErrWorkerStopped)
		if w, _ := a.GetWorker(ctx, stale.ID()); w.Status != WorkerStopped {
			t.Errorf("stale worker is %s, want stopped", w.Status)
		}
		if n, err := a.PurgeWorkers(ctx, 0); err != nil || n != 1 {
			t.Errorf("purge stopped workers = %d, %v; want 1", n, err)
		}
		_, err = a.GetWorker(ctx, stale.ID())
		wantErr(t, err, ErrWorkerNotFound)
		g, err := a.WorkerHealth(ctx, "", time.Hour)
		if err != nil || g.Ready != 2 || g.Stale != 0 {
			t.Errorf("global health = %+v, %v", g, err)
		}
		_, _, err = a.ReclaimStale(ctx, 0)
		wantErr(t, err, ErrInvalidArgument)
	})
}

// TestInstallRefusesANewerSchema: a database that a newer pgqrs upgraded
// (a migration this program does not know is recorded) is neither touched
// by Install nor passed by Verify; both say so with ErrSchemaNewer.
func TestInstallRefusesANewerSchema(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if err := s.schema.record(ctx, s.pool, 9999, "9999_from_the_future.sql"); err != nil {
			t.Fatal(err)
		}
		err := s.Admin().Install(ctx)
		wantErr(t, err, ErrSchemaNewer)
		if err != nil && !strings.Contains(err.Error(), "9999") {
			t.Errorf("install error %q does not name the unknown migration", err)
		}
		wantErr(t, s.Admin().Verify(ctx), ErrSchemaNewer)
	})
}
