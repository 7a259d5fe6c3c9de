package pgqrs

import (
	"context"
	"fmt"
	"time"
)

// Repositories. Each table family has one unexported repository whose
// methods run exactly one statement of the dialect on the querier they are
// given (the pool, the caller's *sql.Tx, or a transaction of the Store),
// encode the backend's arguments, scan the rows into typed results and say
// in their error which statement failed. Callers choose the querier and the
// write serialisation (Store.read, Store.write, Store.inTx); repositories
// never do. A statement that finds no row returns sql.ErrNoRows for the
// caller to map to its sentinel.
//
// This file: pgqrs_queues, pgqrs_archive (a table on Postgres, a view of
// the archived rows of pgqrs_messages on SQLite) and the metrics over them.

// queueRepo runs the statements of pgqrs_queues.
type queueRepo struct{ d *dialect }

func scanQueue(sc interface{ Scan(...any) error }) (*Queue, error) {
	var q Queue
	var created, paused dbTime
	if err := sc.Scan(&q.ID, &q.Name, &created, &paused); err != nil {
		return nil, err
	}
	q.CreatedAt, q.PausedAt, q.Paused = created.t, paused.t, !paused.t.IsZero()
	return &q, nil
}

// insert creates queue name; a taken name is a unique violation.
func (r queueRepo) insert(ctx context.Context, q querier, name string) (*Queue, error) {
	return scanQueue(q.QueryRowContext(ctx, r.d.queue.insert, name))
}

// byName returns queue name, or sql.ErrNoRows.
func (r queueRepo) byName(ctx context.Context, q querier, name string) (*Queue, error) {
	return scanQueue(q.QueryRowContext(ctx, r.d.queue.byName, name))
}

// list returns every queue, ordered by name.
func (r queueRepo) list(ctx context.Context, q querier) ([]*Queue, error) {
	rows, err := q.QueryContext(ctx, r.d.queue.list)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	qs := []*Queue{}
	for rows.Next() {
		queue, err := scanQueue(rows)
		if err != nil {
			return nil, err
		}
		qs = append(qs, queue)
	}
	return qs, rows.Err()
}

// pause marks queue id paused and returns since when: the time of the
// first pause when it already was. No row: sql.ErrNoRows.
func (r queueRepo) pause(ctx context.Context, q querier, id int64) (time.Time, error) {
	var at dbTime
	err := q.QueryRowContext(ctx, r.d.queue.pause, id).Scan(&at)
	return at.t, err
}

// resume clears queue id's pause (a running queue stays running); on
// Postgres it also wakes the queue's Run loops in every process at commit.
// No row: sql.ErrNoRows.
func (r queueRepo) resume(ctx context.Context, q querier, id int64) error {
	return q.QueryRowContext(ctx, r.d.queue.resume, id).Scan(&id)
}

// usage counts what still references queue id: live messages, dead
// letters and live workers. On Postgres it also locks the queue row until
// the transaction ends, so no enqueue or registration slips in. No row:
// sql.ErrNoRows.
func (r queueRepo) usage(ctx context.Context, q querier, id int64) (live, dead, workers int64, err error) {
	err = q.QueryRowContext(ctx, r.d.queue.usage, id).Scan(&live, &dead, &workers)
	return live, dead, workers, err
}

// purgeMessages deletes the queue's live messages and returns how many.
func (r queueRepo) purgeMessages(ctx context.Context, q querier, id int64) (int64, error) {
	return execCount(ctx, q, "purge messages", r.d.queue.purgeMessages, id)
}

// purgeArchive deletes the queue's archive, dead letters included, and
// returns how many rows it deleted.
func (r queueRepo) purgeArchive(ctx context.Context, q querier, id int64) (int64, error) {
	return execCount(ctx, q, "purge archive", r.d.queue.purgeArchive, id)
}

// deleteStoppedWorkers deletes the queue's stopped workers.
func (r queueRepo) deleteStoppedWorkers(ctx context.Context, q querier, id int64) (int64, error) {
	return execCount(ctx, q, "delete stopped workers", r.d.queue.deleteStoppedWorkers, id)
}

// deleteByID deletes the queue row.
func (r queueRepo) deleteByID(ctx context.Context, q querier, id int64) (int64, error) {
	return execCount(ctx, q, "delete queue", r.d.queue.deleteByID, id)
}

// archiveRepo runs the statements that read pgqrs_archive.
type archiveRepo struct{ d *dialect }

func scanArchived(sc interface{ Scan(...any) error }, queue string) (*ArchivedMessage, error) {
	m := &ArchivedMessage{Queue: queue}
	var payload []byte
	var enq, arch dbTime
	var headers dbHeaders
	if err := sc.Scan(&m.ID, &payload, &m.ReadCount, &enq, &arch, &m.Dead, &m.LastError, &m.Priority, &headers, &m.Cancelled); err != nil {
		return nil, err
	}
	m.Payload, m.EnqueuedAt, m.ArchivedAt, m.Headers = payload, enq.t, arch.t, headers.h
	return m, nil
}

// get returns archived message id of queue q, or sql.ErrNoRows.
func (r archiveRepo) get(ctx context.Context, q querier, queue *Queue, id int64) (*ArchivedMessage, error) {
	return scanArchived(q.QueryRowContext(ctx, r.d.archive.get, queue.ID, id), queue.Name)
}

// list returns up to limit archived messages (dead letters when dead) of
// queue with IDs below before, newest ID first.
func (r archiveRepo) list(ctx context.Context, q querier, queue *Queue, dead bool, before int64, limit int) ([]*ArchivedMessage, error) {
	rows, err := q.QueryContext(ctx, r.d.archive.list, queue.ID, dead, before, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*ArchivedMessage{}
	for rows.Next() {
		m, err := scanArchived(rows, queue.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// count returns how many archived messages (dead letters when dead) queue
// id has.
func (r archiveRepo) count(ctx context.Context, q querier, id int64, dead bool) (n int64, err error) {
	err = q.QueryRowContext(ctx, r.d.archive.count, id, dead).Scan(&n)
	return n, err
}

// cancelled returns which of ids are archived in queue queueID as
// cancelled by an admin.
func (r archiveRepo) cancelled(ctx context.Context, q querier, queueID int64, ids []int64) ([]int64, error) {
	rows, err := q.QueryContext(ctx, r.d.archive.cancelled, r.d.idsArg(ids), queueID)
	if err != nil {
		return nil, err
	}
	return scanIDs(rows)
}

// replay makes dead letters of queue queueID (those of ids, or all) live
// messages again under their IDs, visible now with a fresh read count, in
// one statement, and returns how many.
func (r archiveRepo) replay(ctx context.Context, q querier, queueID int64, ids []int64, all bool) (int64, error) {
	return execCount(ctx, q, "replay dead letters", r.d.admin.replay, queueID, r.d.idsArg(ids), all)
}

// purgeDead deletes queue queueID's dead letters and returns how many.
func (r archiveRepo) purgeDead(ctx context.Context, q querier, queueID int64) (int64, error) {
	return execCount(ctx, q, "purge dead letters", r.d.admin.purgeDead, queueID)
}

// statsRepo runs the counting statements behind metrics: for admins and
// dashboards, never for hot paths.
type statsRepo struct{ d *dialect }

func scanMetrics(sc interface{ Scan(...any) error }) (QueueMetrics, error) {
	var m QueueMetrics
	var total int64
	var oldest, newest, now dbTime
	var paused dbTime
	if err := sc.Scan(&m.Queue, &total, &m.Visible, &m.Leased, &m.Archived, &m.Dead, &oldest, &newest, &now, &paused); err != nil {
		return m, err
	}
	m.PausedAt, m.Paused = paused.t, !paused.t.IsZero()
	m.Delayed = total - m.Visible - m.Leased
	m.Pending = m.Visible + m.Delayed
	m.OldestPending, m.NewestEnqueued = oldest.t, newest.t
	if !oldest.t.IsZero() {
		m.OldestPendingAge = max(0, now.t.Sub(oldest.t))
	}
	return m, nil
}

// queue returns the metrics of queue name, or sql.ErrNoRows.
func (r statsRepo) queue(ctx context.Context, q querier, name string) (QueueMetrics, error) {
	return scanMetrics(q.QueryRowContext(ctx, r.d.admin.queueMetrics, name))
}

// queues returns the metrics of every queue, by name.
func (r statsRepo) queues(ctx context.Context, q querier) ([]QueueMetrics, error) {
	rows, err := q.QueryContext(ctx, r.d.admin.allQueueMetrics)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []QueueMetrics
	for rows.Next() {
		m, err := scanMetrics(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// system returns the counts across all queues.
func (r statsRepo) system(ctx context.Context, q querier) (SystemStats, error) {
	var st SystemStats
	err := q.QueryRowContext(ctx, r.d.admin.systemStats).Scan(
		&st.Queues, &st.LiveMessages, &st.Archived, &st.Dead, &st.LiveWorkers, &st.Workers, &st.SchemaVersion)
	return st, err
}

// compact folds the counter rows of sessions that are gone, and every
// session's slots past the first, into their queues' totals (PostgreSQL)
// and returns how many it folded.
func (r statsRepo) compact(ctx context.Context, q querier) (n int64, err error) {
	err = q.QueryRowContext(ctx, r.d.admin.compactCounts).Scan(&n)
	return n, err
}

// recount replaces the counters with a fresh count (PostgreSQL).
func (r statsRepo) recount(ctx context.Context, q querier) error {
	_, err := q.ExecContext(ctx, r.d.admin.recount)
	return err
}

// execCount runs one statement and returns how many rows it changed.
func execCount(ctx context.Context, q querier, what, stmt string, args ...any) (int64, error) {
	res, err := q.ExecContext(ctx, stmt, args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return n, nil
}

// throughput returns, per minute since now minus window, how many of the
// newest limit archived messages of queue queueID (dead letters and
// cancelled ones left out) were archived in it and their average and
// longest wait from enqueue to first claim; minutes with none are absent.
func (r statsRepo) throughput(ctx context.Context, q querier, queueID int64, window time.Duration, limit int) ([]ThroughputPoint, error) {
	rows, err := q.QueryContext(ctx, r.d.admin.throughput, queueID, r.d.secondsArg(-window), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []ThroughputPoint{}
	for rows.Next() {
		var p ThroughputPoint
		var minute dbTime
		var avg, longest float64
		if err := rows.Scan(&minute, &p.Archived, &avg, &longest); err != nil {
			return nil, err
		}
		p.Minute = minute.t
		p.AvgLatency = time.Duration(avg * float64(time.Second))
		p.MaxLatency = time.Duration(longest * float64(time.Second))
		out = append(out, p)
	}
	return out, rows.Err()
}
