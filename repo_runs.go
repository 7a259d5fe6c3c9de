package pgqrs

import (
	"context"
	"encoding/json"
	"time"
)

// runRepo runs the statements the workflow engine executes a run with (see
// repo_queues.go for what a repository is): loading a run by its message,
// recording steps, pausing, continuing and ending it. Statements that end a
// run also announce it to result waiters (NOTIFY on Postgres).
type runRepo struct{ d *dialect }

// runRow is a run as the engine loads it.
type runRow struct {
	id       int64
	status   RunStatus
	input    []byte
	resumeAt time.Time // a PAUSED run's own wake-up time
	started  bool      // it ever started (then it may have recorded steps)
	dbNow    time.Time // the database clock, read with the row
}

// byMessage loads the run driven by message msgID, or sql.ErrNoRows.
func (r runRepo) byMessage(ctx context.Context, q querier, msgID int64) (runRow, error) {
	var row runRow
	var resume, now dbTime
	err := q.QueryRowContext(ctx, r.d.workflow.runByMessage, msgID).Scan(&row.id, &row.status, &row.input, &resume, &row.started, &now)
	row.resumeAt, row.dbNow = resume.t, now.t
	return row, err
}

// start continues a PAUSED run (RUNNING now) and returns its status;
// sql.ErrNoRows when it is not paused.
func (r runRepo) start(ctx context.Context, q querier, id int64) (RunStatus, error) {
	return scanRunStatus(q.QueryRowContext(ctx, r.d.workflow.start, id))
}

// pause pauses a queued or running run until until (zero: until resumed)
// and returns its status; sql.ErrNoRows when it was neither.
func (r runRepo) pause(ctx context.Context, q querier, id int64, until time.Time) (RunStatus, error) {
	var resume any
	if !until.IsZero() {
		resume = r.d.timeArg(until)
	}
	return scanRunStatus(q.QueryRowContext(ctx, r.d.workflow.pause, id, resume))
}

// stepDone records step p's success, unless a success is recorded already,
// while the run may still take steps, and returns the run's status (a
// requested cancel shows at once); sql.ErrNoRows when nothing was recorded.
func (r runRepo) stepDone(ctx context.Context, q querier, id int64, p pendingStep) (RunStatus, error) {
	return scanRunStatus(q.QueryRowContext(ctx, r.d.workflow.stepDone, id, p.name, p.position, string(p.output), p.attempts))
}

// stepFailed records a failed attempt of step name, with the time of its
// next attempt (zero: none), as stepDone does.
func (r runRepo) stepFailed(ctx context.Context, q querier, id int64, name string, position int, errText string, attempts int, retryAt time.Time) (RunStatus, error) {
	var at any // NULL: no more attempts
	if !retryAt.IsZero() {
		at = r.d.timeArg(retryAt)
	}
	return scanRunStatus(q.QueryRowContext(ctx, r.d.workflow.stepFailed, id, name, position, errText, attempts, at))
}

// runEnd is how a run ends: its status, its output (SUCCESS) or error text
// (ERROR), and the last completed step if it is not recorded yet.
type runEnd struct {
	status  RunStatus
	output  json.RawMessage
	errText *string
	last    *pendingStep
}

// finish ends run id as end says (a requested cancel turns any end into
// CANCELLED) and records end.last in the same statement. A run that had
// already ended, or whose last step another execution recorded first, is
// left alone.
func (r runRepo) finish(ctx context.Context, q querier, id int64, end runEnd) error {
	var output, stepName, stepOutput any
	var position, attempts int
	if end.output != nil {
		output = string(end.output)
	}
	if p := end.last; p != nil {
		stepName, position, stepOutput, attempts = p.name, p.position, string(p.output), p.attempts
	}
	_, err := q.ExecContext(ctx, r.d.workflow.finish, id, string(end.status), output, end.errText, stepName, position, stepOutput, attempts)
	return err
}

// wakeMessage makes the run's waiting (delayed, unleased) message msgID
// visible now.
func (r runRepo) wakeMessage(ctx context.Context, q querier, msgID int64) error {
	_, err := q.ExecContext(ctx, r.d.workflow.wakeMessage, msgID)
	return err
}

func scanRunStatus(row interface{ Scan(...any) error }) (RunStatus, error) {
	var st string
	err := row.Scan(&st)
	return RunStatus(st), err
}
