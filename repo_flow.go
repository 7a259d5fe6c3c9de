package pgqrs

import (
	"context"
	"database/sql"
	"time"
)

// flowRepo runs the flow-control statements of pgqrs_queues and the
// limited claim (see flow.go and the flowSQL conventions in dialect.go).
type flowRepo struct{ d *dialect }

// flowState is a queue's flow settings and its rate window as stored, with
// the database's time when they were read.
type flowState struct {
	limits     Limits
	windowAt   time.Time // start of the window rateCount counts (zero: none yet)
	rateCount  int
	now        time.Time
	inFlight   int64 // settings only: unexpired leases taken by limited claims
	hasLimited bool  // max_in_flight or rate_limit set: claims take the limited path
}

func scanFlow(sc interface{ Scan(...any) error }, withInFlight bool) (flowState, error) {
	var st flowState
	var maxIn, perGroup, rate, periodMS sql.NullInt64
	var window, now dbTime
	dest := []any{&maxIn, &perGroup, &rate, &periodMS, &window, &st.rateCount, &now}
	if withInFlight {
		dest = append(dest, &st.inFlight)
	}
	if err := sc.Scan(dest...); err != nil {
		return st, err
	}
	st.limits = Limits{
		MaxInFlight: int(maxIn.Int64),
		PerGroup:    int(perGroup.Int64),
		Rate:        int(rate.Int64),
		RatePeriod:  time.Duration(periodMS.Int64) * time.Millisecond,
	}
	st.windowAt, st.now = window.t, now.t
	st.hasLimited = maxIn.Valid || rate.Valid
	return st, nil
}

// lock takes the queue's flow lock for the rest of the transaction q (on
// Postgres a row lock; on SQLite the transaction's write lock already is
// one) and returns its settings, read after the lock was granted. No row:
// sql.ErrNoRows.
func (r flowRepo) lock(ctx context.Context, q querier, queueID int64) (flowState, error) {
	return scanFlow(q.QueryRowContext(ctx, r.d.flow.lock, queueID), false)
}

// settings returns the queue's flow settings and its unexpired limited
// leases, without locking. No row: sql.ErrNoRows.
func (r flowRepo) settings(ctx context.Context, q querier, queueID int64) (flowState, error) {
	return scanFlow(q.QueryRowContext(ctx, r.d.flow.settings, queueID), true)
}

// claim leases up to n visible messages of queue at time now (lock's),
// no more than maxInFlight (0: no bound) minus the unexpired limited leases,
// for consumer, in one statement. Run it after lock in the same
// transaction.
func (r flowRepo) claim(ctx context.Context, q querier, queue *Queue, n int, vt time.Duration, consumer int64, maxInFlight int, now time.Time) ([]*Message, error) {
	var bound any
	if maxInFlight > 0 {
		bound = maxInFlight
	}
	rows, err := q.QueryContext(ctx, r.d.flow.claim, queue.ID, n, r.d.secondsArg(vt), consumer, bound, r.d.timeArg(now))
	if err != nil {
		return nil, err
	}
	return scanClaimed(rows, queue, n, nil)
}

// count records that the rate window starting at window holds n claims.
func (r flowRepo) count(ctx context.Context, q querier, queueID int64, window time.Time, n int) error {
	_, err := q.ExecContext(ctx, r.d.flow.count, queueID, r.d.timeArg(window), n)
	return err
}

// set stores the queue's limits (zero fields: none). No row: sql.ErrNoRows.
func (r flowRepo) set(ctx context.Context, q querier, queueID int64, l Limits) error {
	null := func(v int64) any {
		if v <= 0 {
			return nil
		}
		return v
	}
	var id int64
	return q.QueryRowContext(ctx, r.d.flow.set, queueID, null(int64(l.MaxInFlight)), null(int64(l.PerGroup)),
		null(int64(l.Rate)), null(l.RatePeriod.Milliseconds())).Scan(&id)
}

// lockGroups takes, on Postgres, the lock the group triggers take for the
// queue, until the transaction ends (nothing on SQLite, whose write lock
// already serialises them).
func (r flowRepo) lockGroups(ctx context.Context, q querier, queueID int64) error {
	rows, err := q.QueryContext(ctx, r.d.flow.lockGroups, queueID)
	if err != nil {
		return err
	}
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return err
	}
	return rows.Close()
}

// promote makes parked group messages of the queue visible up to each
// group's limit, and returns how many.
func (r flowRepo) promote(ctx context.Context, q querier, queueID int64) (int64, error) {
	return execCount(ctx, q, "promote group messages", r.d.flow.promote, queueID)
}
