package pgqrs

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// rowCounts counts queue's rows straight from the tables: what the metrics
// must agree with, however they get their figures.
type rowCounts struct{ live, delayed, archived, dead int64 }

// liveRows is the condition for the rows of pgqrs_messages that are live:
// on SQLite the table holds the archive too (migration 0003).
func liveRows(s *Store) string {
	if s.d.migrations == "postgres" {
		return "true"
	}
	return "archived_at IS NULL"
}

func countRows(t *testing.T, s *Store, queue string) rowCounts {
	t.Helper()
	q, err := s.Admin().GetQueue(t.Context(), queue)
	if err != nil {
		t.Fatal(err)
	}
	var c rowCounts
	// The delayed ones: released or enqueued an hour or more ahead.
	live, ahead := liveRows(s), "vt > now() + interval '30 minutes'"
	if s.d.migrations != "postgres" {
		ahead = "vt > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+30 minutes')"
	}
	err = s.DB().QueryRowContext(t.Context(), s.d.qualify(fmt.Sprintf(`
SELECT (SELECT count(*) FROM pgqrs_messages WHERE queue_id = %[1]d AND %[3]s),
       (SELECT count(*) FROM pgqrs_messages WHERE queue_id = %[1]d AND %[3]s AND %[2]s),
       (SELECT count(*) FROM pgqrs_archive WHERE queue_id = %[1]d AND NOT dead),
       (SELECT count(*) FROM pgqrs_archive WHERE queue_id = %[1]d AND dead)`, q.ID, ahead, live))).Scan(&c.live, &c.delayed, &c.archived, &c.dead)
	if err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return c
}

// checkCounts compares the metrics, SystemStats and the archive counts of
// queue, which has no leased messages, with its rows.
func checkCounts(t *testing.T, s *Store, queue string) {
	t.Helper()
	ctx := t.Context()
	rows := countRows(t, s, queue)
	m := metrics(t, s, queue)
	got := rowCounts{m.Pending + m.Leased, m.Delayed, m.Archived, m.Dead}
	if diff := cmp.Diff(rows, got, cmp.AllowUnexported(rowCounts{})); diff != "" {
		t.Errorf("metrics of %q (-rows +metrics):\n%s", queue, diff)
	}
	if m.Leased != 0 || m.Visible != rows.live-rows.delayed {
		t.Errorf("metrics of %q: %d visible, %d leased; want %d, 0", queue, m.Visible, m.Leased, rows.live-rows.delayed)
	}
	if n, err := s.Admin().CountArchived(ctx, queue); err != nil || n != rows.archived {
		t.Errorf("CountArchived(%q) = %d, %v; want %d", queue, n, err, rows.archived)
	}
	if n, err := s.Admin().CountDeadLetters(ctx, queue); err != nil || n != rows.dead {
		t.Errorf("CountDeadLetters(%q) = %d, %v; want %d", queue, n, err, rows.dead)
	}
	st, err := s.Admin().SystemStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var live, archived, dead int64
	err = s.DB().QueryRowContext(ctx, s.d.qualify(`
SELECT (SELECT count(*) FROM pgqrs_messages WHERE `+liveRows(s)+`),
       (SELECT count(*) FROM pgqrs_archive WHERE NOT dead),
       (SELECT count(*) FROM pgqrs_archive WHERE dead)`)).Scan(&live, &archived, &dead)
	if err != nil {
		t.Fatal(err)
	}
	if st.LiveMessages != live || st.Archived != archived || st.Dead != dead {
		t.Errorf("system stats %d live, %d archived, %d dead; rows %d, %d, %d", st.LiveMessages, st.Archived, st.Dead, live, archived, dead)
	}
}

// TestMetricsMatchTheRows drives every statement that adds or removes
// messages or archive rows, from several pools at once (on PostgreSQL each
// session keeps counter rows of its own), and checks after each round that
// the metrics agree with the rows.
func TestMetricsMatchTheRows(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			n := 3
			if strings.HasPrefix(b, "turso") {
				n = 2 // sqld stalls with many writing connections (TURSO.md)
			}
			stores := separateStores(t, b, n)
			s := stores[0]
			for _, q := range []string{"counted", "other"} {
				if _, err := s.Admin().CreateQueue(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i, st := range stores {
				wg.Go(func() {
					errs <- countedTraffic(t, st, i)
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			checkCounts(t, s, "counted")
			checkCounts(t, s, "other")

			// A rolled-back enqueue leaves no count behind.
			p, err := s.Producer(ctx, "counted")
			if err != nil {
				t.Fatal(err)
			}
			tx, err := s.DB().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.EnqueueBatchTx(ctx, tx, []any{1, 2, 3}); err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, s, "counted")

			// Many statements in one transaction (on PostgreSQL they spread
			// over several counter slots).
			tx, err = s.DB().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 70 {
				if _, err := p.EnqueueTx(ctx, tx, i); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, s, "counted")

			// The admin's paths: dead letters, replay, cancel, purges.
			a := s.Admin()
			c, err := s.Consumer(ctx, "counted")
			if err != nil {
				t.Fatal(err)
			}
			msgs := mustDequeue(t, c, 5)
			if _, err := c.ReleaseBatch(ctx, msgIDs(msgs), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := a.MoveToDLQ(ctx, 1); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, s, "counted")
			if _, err := a.ReplayAllDeadLetters(ctx, "counted"); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, s, "counted")
			ids, err := p.EnqueueBatch(ctx, []any{1, 2})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.CancelMessages(ctx, "counted", ids); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, s, "counted")
			if _, _, err := a.ExpireArchive(ctx, "counted", Retention{Archived: time.Nanosecond}); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, s, "counted")
			if _, err := a.PurgeDeadLetters(ctx, "counted"); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, s, "counted")
			if _, err := a.PurgeQueue(ctx, "other"); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, s, "other")
			if m := metrics(t, s, "other"); m != (QueueMetrics{Queue: "other"}) {
				t.Errorf("metrics of a purged queue = %+v", m)
			}
			if err := a.DeleteQueue(ctx, "other"); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, s, "counted")
		})
	}
}

// countedTraffic is one pool's share of TestMetricsMatchTheRows: single,
// batch, delayed and prioritised enqueues on two queues, claims that
// archive, delete, release now and release an hour ahead, and a few
// dead-lettered; it leaves no lease held.
func countedTraffic(t *testing.T, s *Store, i int) error {
	ctx := t.Context()
	for _, queue := range []string{"counted", "other"} {
		p, err := s.Producer(ctx, queue)
		if err != nil {
			return err
		}
		c, err := s.Consumer(ctx, queue)
		if err != nil {
			return err
		}
		for round := range 4 {
			if _, err := p.Enqueue(ctx, map[string]int{"pool": i, "round": round}, Priority(round%3)); err != nil {
				return err
			}
			if _, err := p.EnqueueBatch(ctx, []any{1, 2, 3, 4, 5, 6, 7, 8}, Priority(9-round)); err != nil {
				return err
			}
			if _, err := p.Enqueue(ctx, "later", Delay(time.Hour)); err != nil {
				return err
			}
			msgs, err := c.Dequeue(ctx, 6)
			if err != nil {
				return err
			}
			ids := msgIDs(msgs)
			for k, id := range ids {
				switch k % 4 {
				case 0, 1:
					err = c.Archive(ctx, id)
				case 2:
					err = c.Delete(ctx, id)
				case 3:
					delay := time.Duration(0)
					if round%2 == 1 {
						delay = time.Hour
					}
					err = c.Release(ctx, id, delay)
				}
				if err != nil {
					return err
				}
			}
		}
		if err := c.Shutdown(ctx); err != nil {
			return err
		}
		if err := p.Shutdown(ctx); err != nil {
			return err
		}
	}
	return nil
}

// TestPostgresCountersFoldAndRecount: the counter rows of sessions that
// have ended fold into one row per queue without changing a count, and
// Recount repairs counts a TRUNCATE (which fires no trigger) left wrong.
func TestPostgresCountersFoldAndRecount(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	stores := separateStores(t, "postgres", 3)
	s := stores[0]
	if _, err := s.Admin().CreateQueue(ctx, "fold"); err != nil {
		t.Fatal(err)
	}
	for _, st := range stores[1:] {
		p, c := fixtureFor(t, st, "fold")
		archiveN(t, p, c, 5)
		if _, err := p.EnqueueBatch(ctx, []any{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
	}
	counterRows := func() (live, archive int64) {
		t.Helper()
		err := s.DB().QueryRowContext(ctx, s.d.qualify(`
SELECT (SELECT count(*) FROM pgqrs_live_counts), (SELECT count(*) FROM pgqrs_archive_counts)`)).Scan(&live, &archive)
		if err != nil {
			t.Fatal(err)
		}
		return live, archive
	}
	if live, archive := counterRows(); live < 2 || archive < 2 {
		t.Fatalf("counter rows before the fold: %d live, %d archive; want one per writing session", live, archive)
	}
	before := metrics(t, s, "fold")
	// The writing sessions end; their server backends leave
	// pg_stat_activity soon after.
	for _, st := range stores[1:] {
		st.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := s.stats.compact(ctx, s.DB()); err != nil {
			t.Fatal(err)
		}
		if live, archive := counterRows(); live == 1 && archive == 1 {
			break
		}
		if time.Now().After(deadline) {
			live, archive := counterRows()
			t.Fatalf("counter rows after folding: %d live, %d archive; want 1 and 1 (one queue, one day)", live, archive)
		}
		time.Sleep(50 * time.Millisecond) // polling the server for its backends to exit
	}
	if after := metrics(t, s, "fold"); after.Pending != 6 || after.Archived != 10 ||
		!cmp.Equal(before, after, cmp.Comparer(func(a, b time.Duration) bool { return true })) {
		t.Errorf("metrics changed by the fold:\nbefore %+v\nafter  %+v", before, after)
	}
	checkCounts(t, s, "fold")

	if _, err := s.DB().ExecContext(ctx, s.d.qualify(`TRUNCATE pgqrs_archive`)); err != nil {
		t.Fatal(err)
	}
	if m := metrics(t, s, "fold"); m.Archived != 10 {
		t.Fatalf("after a TRUNCATE the counters still say %d archived; the test expects them stale (10)", m.Archived)
	}
	if err := s.Admin().Recount(ctx); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, s, "fold")
	if live, archive := counterRows(); live != 1 || archive != 0 {
		t.Errorf("counter rows after Recount: %d live, %d archive; want 1, 0", live, archive)
	}
}
