package pgqrs

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// scheduleRepo runs the statements of pgqrs_schedules (see repo_queues.go
// for what a repository is). Its times are Go's clock (see scheduleSQL).
type scheduleRepo struct{ d *dialect }

// scheduleDef is a schedule as put stores it: its target resolved to IDs
// (workflowID 0: a plain queue), payload and headers as JSON text (headers
// nil: none), and the next run time for a new or retimed schedule.
type scheduleDef struct {
	name, cron, timezone string
	queueID, workflowID  int64
	payload, headers     []byte
	priority             int
	next                 time.Time
}

// dueSchedule is a schedule whose next occurrence is due: what a scheduler
// needs to compute the one after and claim this one.
type dueSchedule struct {
	name, cron, timezone string
	next                 time.Time
}

// scheduleTarget is what one occurrence of a schedule enqueues.
type scheduleTarget struct {
	queueID, workflowID int64 // workflowID 0: a plain queue message
	payload             []byte
	priority            int
	headers             map[string]string
}

func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func scanSchedule(sc interface{ Scan(...any) error }) (*ScheduleInfo, error) {
	var s ScheduleInfo
	var workflow sql.NullString
	var payload []byte
	var headers dbHeaders
	var next, last, created, updated dbTime
	if err := sc.Scan(&s.Name, &s.Cron, &s.TimeZone, &s.Queue, &workflow, &payload, &s.Priority, &headers, &s.Paused,
		&next, &last, &created, &updated); err != nil {
		return nil, err
	}
	if workflow.Valid {
		s.Workflow, s.Queue = workflow.String, ""
	}
	s.Payload, s.Headers = payload, headers.h
	s.NextRunAt, s.LastRunAt, s.CreatedAt, s.UpdatedAt = next.t, last.t, created.t, updated.t
	return &s, nil
}

func scanTarget(row *sql.Row) (scheduleTarget, error) {
	var t scheduleTarget
	var workflow sql.NullInt64
	var headers dbHeaders
	err := row.Scan(&t.queueID, &workflow, &t.payload, &t.priority, &headers)
	t.workflowID, t.headers = workflow.Int64, headers.h
	return t, err
}

// put creates the schedule, or redefines the one of that name (keeping its
// paused state, its last run and, when cron and time zone are unchanged,
// its next run time), and returns it as stored.
func (r scheduleRepo) put(ctx context.Context, q querier, d scheduleDef) (*ScheduleInfo, error) {
	return scanSchedule(q.QueryRowContext(ctx, r.d.schedule.put, d.name, d.cron, d.timezone, d.queueID, nullID(d.workflowID),
		string(d.payload), d.priority, headersArg(d.headers), r.d.timeArg(d.next)))
}

// get returns the schedule name, or sql.ErrNoRows.
func (r scheduleRepo) get(ctx context.Context, q querier, name string) (*ScheduleInfo, error) {
	return scanSchedule(q.QueryRowContext(ctx, r.d.schedule.get, name))
}

// list returns every schedule, by name.
func (r scheduleRepo) list(ctx context.Context, q querier) ([]ScheduleInfo, error) {
	rows, err := q.QueryContext(ctx, r.d.schedule.list)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []ScheduleInfo{}
	for rows.Next() {
		s, err := scanSchedule(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *s)
	}
	return out, rows.Err()
}

// due returns up to limit unpaused schedules whose next run is at or
// before before, earliest first.
func (r scheduleRepo) due(ctx context.Context, q querier, before time.Time, limit int) ([]dueSchedule, error) {
	rows, err := q.QueryContext(ctx, r.d.schedule.due, r.d.timeArg(before), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []dueSchedule
	for rows.Next() {
		var d dueSchedule
		var next dbTime
		if err := rows.Scan(&d.name, &d.cron, &d.timezone, &next); err != nil {
			return nil, err
		}
		d.next = next.t
		out = append(out, d)
	}
	return out, rows.Err()
}

// claim takes the occurrence at d.next for the caller, moving the
// schedule's next run to next and its last run to last, and returns what
// the occurrence enqueues. ok is false when another scheduler took it
// first, or the schedule was paused, retimed or deleted since d was read.
func (r scheduleRepo) claim(ctx context.Context, q querier, d dueSchedule, next, last time.Time) (t scheduleTarget, ok bool, err error) {
	t, err = scanTarget(q.QueryRowContext(ctx, r.d.schedule.claim, d.name, r.d.timeArg(d.next), r.d.timeArg(next),
		r.d.timeArg(last), d.cron, d.timezone))
	if errors.Is(err, sql.ErrNoRows) {
		return t, false, nil
	}
	return t, err == nil, err
}

// ran records a run triggered by hand at at and returns what it enqueues,
// or sql.ErrNoRows.
func (r scheduleRepo) ran(ctx context.Context, q querier, name string, at time.Time) (scheduleTarget, error) {
	return scanTarget(q.QueryRowContext(ctx, r.d.schedule.ran, name, r.d.timeArg(at)))
}

// pause pauses the schedule; false when there is none of that name.
func (r scheduleRepo) pause(ctx context.Context, q querier, name string) (bool, error) {
	n, err := execCount(ctx, q, "pause schedule", r.d.schedule.pause, name)
	return n > 0, err
}

// resume unpauses the schedule, whose next run becomes next if it was
// paused. false when there is none of that name with that cron and zone.
func (r scheduleRepo) resume(ctx context.Context, q querier, name, cron, timezone string, next time.Time) (bool, error) {
	n, err := execCount(ctx, q, "resume schedule", r.d.schedule.resume, name, r.d.timeArg(next), cron, timezone)
	return n > 0, err
}

// delete removes the schedule; false when there is none of that name.
func (r scheduleRepo) delete(ctx context.Context, q querier, name string) (bool, error) {
	n, err := execCount(ctx, q, "delete schedule", r.d.schedule.delete, name)
	return n > 0, err
}
