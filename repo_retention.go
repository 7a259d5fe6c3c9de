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
