package pgqrs

import (
	"context"
	"database/sql"
	"time"
)

// retentionRepo runs the statements of pgqrs_retention and the bounded
// deletes that apply a policy (see repo_queues.go for what a repository
// is, and retentionSQL).
type retentionRepo struct{ d *dialect }

// secondsOrNull stores a kept-for duration as seconds, NULL for zero (kept
// forever).
func secondsOrNull(d time.Duration) any {
	if d == 0 {
		return nil
	}
	return d.Seconds()
}

func fromSeconds(s sql.NullFloat64) time.Duration {
	if !s.Valid {
		return 0
	}
	return time.Duration(s.Float64 * float64(time.Second))
}

// get returns queue queueID's policy; the zero Retention when it has none.
func (r retentionRepo) get(ctx context.Context, q querier, queueID int64) (Retention, error) {
	var archived, dead sql.NullFloat64
	err := q.QueryRowContext(ctx, r.d.retention.get, queueID).Scan(&archived, &dead)
	if err == sql.ErrNoRows {
		return Retention{}, nil
	}
	if err != nil {
		return Retention{}, err
	}
	return Retention{Archived: fromSeconds(archived), DeadLetters: fromSeconds(dead)}, nil
}

// put sets queue queueID's policy, replacing any.
func (r retentionRepo) put(ctx context.Context, q querier, queueID int64, p Retention) error {
	_, err := q.ExecContext(ctx, r.d.retention.put, queueID, secondsOrNull(p.Archived), secondsOrNull(p.DeadLetters))
	return err
}

// clear removes queue queueID's policy and returns whether it had one.
func (r retentionRepo) clear(ctx context.Context, q querier, queueID int64) (int64, error) {
	return execCount(ctx, q, "clear retention", r.d.retention.clear, queueID)
}

// expire deletes at most limit archived rows of queue queueID older than
// age: dead letters when dead, else the other archived
// messages (done or cancelled). It returns how many.
func (r retentionRepo) expire(ctx context.Context, q querier, queueID int64, dead bool, age time.Duration, limit int) (int64, error) {
	stmt := r.d.retention.expireArchived
	if dead {
		stmt = r.d.retention.expireDead
	}
	return execCount(ctx, q, "expire archive", stmt, queueID, r.d.secondsArg(-age), limit)
}

// addPartitions creates the archive's partitions of the UTC days from the
// day of from to the day of to (Postgres; nothing elsewhere) and returns
// how many it created.
func (r retentionRepo) addPartitions(ctx context.Context, q querier, from, to time.Time) (n int64, err error) {
	err = q.QueryRowContext(ctx, r.d.retention.addPartitions, r.d.timeArg(from), r.d.timeArg(to)).Scan(&n)
	return n, err
}

// partitions lists the archive's partitions, oldest first, the default
// partition (no bounds) first of all; none where the archive is not
// partitioned.
func (r retentionRepo) partitions(ctx context.Context, q querier) ([]ArchivePartition, error) {
	rows, err := q.QueryContext(ctx, r.d.retention.partitions)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []ArchivePartition{}
	for rows.Next() {
		var p ArchivePartition
		var from, to dbTime
		if err := rows.Scan(&p.Name, &from, &to, &p.EstimatedRows); err != nil {
			return nil, err
		}
		p.From, p.To, p.Default = from.t, to.t, from.t.IsZero()
		out = append(out, p)
	}
	return out, rows.Err()
}

// dropPartition drops the oldest day partition of the archive whose rows
// are all past their retention: with policy, each queue's policy; else
// ret for queue queueID (0: every queue), other queues' rows being kept.
// It returns what the partition held; ok is false when none could go.
func (r retentionRepo) dropPartition(ctx context.Context, q querier, policy bool, queueID int64, ret Retention) (name string, archived, dead int64, ok bool, err error) {
	err = q.QueryRowContext(ctx, r.d.retention.dropPartition, policy, queueID, secondsOrNull(ret.Archived), secondsOrNull(ret.DeadLetters)).
		Scan(&name, &archived, &dead)
	if err == sql.ErrNoRows {
		return "", 0, 0, false, nil
	}
	return name, archived, dead, err == nil, err
}
