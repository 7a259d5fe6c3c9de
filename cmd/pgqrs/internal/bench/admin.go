package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// The admin-reads scenario (PostgreSQL only, never part of "all"): what the
// reads of dashboards, the CLI and Prometheus scrapes cost on a large
// history. It builds, in bulk SQL (INSERT … SELECT generate_series, a
// minute or two for ten million rows), an archive of --history rows of one
// queue, 1 % of them dead letters, archived over the last historyDays days
// in ID order, and a hot table of --backlog visible messages of the same
// queue, analyzes both (as autovacuum would have), then times each admin
// read adminReadRuns times. Each read is one result row (mode: the read),
// with its call's p50/p95/p99 and the worst call as Seconds.
//
// It writes rows straight into pgqrs's tables (the only scenario that
// does), with IDs reserved from the messages' identity, so run it in a
// schema of its own and drop that schema afterwards:
//
//	pgqrs bench --backend postgres --dsn … --schema pgqrs_history --scenario admin-reads --history 10000000 --backlog 1000000
const (
	historyDays   = 10
	adminReadRuns = 7
)

// adminReads runs the admin-reads rows.
func (b *bencher) adminReads(ctx context.Context) ([]*Result, error) {
	if b.s.Dialect() != pgqrs.Postgres {
		return nil, usagef("--scenario admin-reads runs on PostgreSQL only")
	}
	queue, err := b.queue(ctx, "history")
	if err != nil {
		return nil, err
	}
	a := b.s.Admin()
	q, err := a.GetQueue(ctx, queue)
	if err != nil {
		return nil, err
	}
	if err := b.prepareHistory(ctx); err != nil {
		return nil, err
	}
	db := b.s.DB()
	n, hot := b.flags.history, b.flags.backlog
	start := time.Now()
	b.logf("admin-reads: building an archive of %d rows and %d live messages", n, hot)
	var base int64
	seq := fmt.Sprintf(`pg_get_serial_sequence('%s', 'id')`, b.pgTable("pgqrs_messages"))
	if err := db.QueryRowContext(ctx, `SELECT setval(`+seq+`, nextval(`+seq+`) + $1)`, n).Scan(&base); err != nil {
		return nil, fmt.Errorf("reserve IDs: %w", err)
	}
	base -= int64(n)
	// Chunks of a million rows keep each statement's memory and WAL bounded.
	const chunk = 1_000_000
	for lo := 1; lo <= n; lo += chunk {
		hi := min(lo+chunk-1, n)
		_, err := db.ExecContext(ctx, `
INSERT INTO `+b.pgTable("pgqrs_archive")+` (id, queue_id, payload, enqueued_at, read_ct, dequeued_at, archived_at, dead, last_error)
SELECT $1::bigint + g, $2::bigint, jsonb_build_object('id', g, 'kind', 'email'), t - interval '2 seconds', 1, t - interval '1 second', t,
       g % 100 = 0, CASE WHEN g % 100 = 0 THEN 'boom' END
FROM generate_series($3::bigint, $4::bigint) AS g,
     LATERAL (SELECT now() - make_interval(days => $5) * (1 - g::float8 / $6::float8) AS t) AS at`,
			base, q.ID, lo, hi, historyDays, n)
		if err != nil {
			return nil, fmt.Errorf("fill the archive: %w", err)
		}
		b.logf("admin-reads: %d archived rows", hi)
	}
	if _, err := db.ExecContext(ctx, `
INSERT INTO `+b.pgTable("pgqrs_messages")+` (queue_id, payload, vt)
SELECT $1::bigint, jsonb_build_object('id', g, 'kind', 'email'), now() FROM generate_series(1, $2::bigint) AS g`, q.ID, hot); err != nil {
		return nil, fmt.Errorf("fill the queue: %w", err)
	}
	for _, t := range []string{"pgqrs_archive", "pgqrs_messages"} {
		if _, err := db.ExecContext(ctx, "VACUUM ANALYZE "+b.pgTable(t)); err != nil {
			return nil, fmt.Errorf("analyze %s: %w", t, err)
		}
	}
	fill := time.Since(start)
	b.logf("admin-reads: built in %s", fill.Round(time.Second))
	some := base + int64(n/2) // an archived message in the middle
	dead := base + 100        // the oldest dead letter
	reads := []struct {
		name string
		call func() error
	}{
		{"QueueMetrics", func() error { _, err := a.QueueMetrics(ctx, queue); return err }},
		{"AllQueueMetrics", func() error { _, err := a.AllQueueMetrics(ctx); return err }},
		{"SystemStats", func() error { _, err := a.SystemStats(ctx); return err }},
		{"WritePrometheus", func() error { return a.WritePrometheus(ctx, io.Discard) }},
		{"Throughput60", func() error { _, err := a.Throughput(ctx, queue, 60); return err }},
		{"CountArchived", func() error { _, err := a.CountArchived(ctx, queue); return err }},
		{"CountDeadLetters", func() error { _, err := a.CountDeadLetters(ctx, queue); return err }},
		{"ListArchived", func() error { _, err := a.ListArchived(ctx, queue, pgqrs.ArchivePage{}); return err }},
		{"ListArchivedMiddle", func() error {
			_, err := a.ListArchived(ctx, queue, pgqrs.ArchivePage{BeforeID: some})
			return err
		}},
		{"ListDeadLetters", func() error { _, err := a.ListDeadLetters(ctx, queue, pgqrs.ArchivePage{}); return err }},
		{"GetArchived", func() error { _, err := a.GetArchived(ctx, queue, some); return err }},
		{"GetDeadLetter", func() error { _, err := a.GetArchived(ctx, queue, dead); return err }},
		{"ListMessages", func() error { _, err := a.ListMessages(ctx, queue, pgqrs.MessagePage{}); return err }},
	}
	var out []*Result
	for _, rd := range reads {
		var took []time.Duration
		var worst time.Duration
		for range adminReadRuns {
			t0 := time.Now()
			if err := rd.call(); err != nil {
				return nil, fmt.Errorf("admin-reads %s: %w", rd.name, err)
			}
			d := time.Since(t0)
			took = append(took, d)
			worst = max(worst, d)
		}
		r := b.result("admin-reads")
		r.Mode, r.Backlog, r.Messages, r.FillSeconds = rd.name, hot, int64(n), fill.Seconds()
		r.Seconds, r.LatencyMs = worst.Seconds(), percentilesOf(took)
		b.logf("admin-reads %-20s p50 %7.1f ms, worst %7.1f ms", rd.name, r.LatencyMs.P50, worst.Seconds()*1000)
		out = append(out, r)
	}
	return out, nil
}

// prepareHistory creates the archive's partitions (PostgreSQL: one per
// day) for the rows archived over the last historyDays days, so they are
// not all in the default partition.
func (b *bencher) prepareHistory(ctx context.Context) error {
	now := time.Now()
	_, err := b.s.Admin().CreateArchivePartitions(ctx, now.AddDate(0, 0, -historyDays-1), now)
	return err
}
