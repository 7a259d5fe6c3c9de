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
	deadline time.Time // when the run is cancelled if not finished; zero: never
	parent   int64     // the run that started it as a child; 0: none
}

// byMessage loads the run driven by message msgID, or sql.ErrNoRows.
func (r runRepo) byMessage(ctx context.Context, q querier, msgID int64) (runRow, error) {
	var row runRow
	var resume, now, deadline dbTime
	err := q.QueryRowContext(ctx, r.d.workflow.runByMessage, msgID).Scan(&row.id, &row.status, &row.input, &resume, &row.started, &now, &deadline, &row.parent)
	row.resumeAt, row.dbNow, row.deadline = resume.t, now.t, deadline.t
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

// workflowByName returns workflow name's IDs, or sql.ErrNoRows.
func (r runRepo) workflowByName(ctx context.Context, q querier, name string) (workflowRef, error) {
	var ref workflowRef
	err := q.QueryRowContext(ctx, r.d.workflow.byName, name).Scan(&ref.id, &ref.queueID)
	return ref, err
}

// workflowByQueue returns the name of the workflow owning queue queueID,
// or sql.ErrNoRows.
func (r runRepo) workflowByQueue(ctx context.Context, q querier, queueID int64) (name string, err error) {
	err = q.QueryRowContext(ctx, r.d.workflow.byQueue, queueID).Scan(&name)
	return name, err
}

// insertWorkflow registers workflow name on its queue and returns its ID.
func (r runRepo) insertWorkflow(ctx context.Context, q querier, name string, queueID int64) (id int64, err error) {
	err = q.QueryRowContext(ctx, r.d.workflow.insert, name, queueID).Scan(&id)
	return id, err
}

// insert creates a QUEUED run of workflowID driven by message msgID and
// returns its ID.
// insert records a run driven by message msgID; a positive timeout sets
// its deadline that long after now (the database's clock), and a key
// ("" for none) names it. It returns sql.ErrNoRows, inserting nothing, when
// the workflow has a run with the key.
func (r runRepo) insert(ctx context.Context, q querier, workflowID, msgID int64, input []byte, timeout time.Duration, key string, parent int64) (id int64, err error) {
	var secs, k, p any
	if timeout > 0 {
		secs = r.d.secondsArg(timeout)
	}
	if key != "" {
		k = key
	}
	if parent != 0 {
		p = parent
	}
	err = q.QueryRowContext(ctx, r.d.workflow.insertRun, workflowID, msgID, string(input), secs, k, p).Scan(&id)
	return id, err
}

// wakeParent makes the waiting message of child's parent visible now and
// returns its queue; sql.ErrNoRows when the parent is not waiting.
func (r runRepo) wakeParent(ctx context.Context, q querier, child int64) (queueID int64, err error) {
	err = q.QueryRowContext(ctx, r.d.workflow.wakeParent, child).Scan(&queueID)
	return queueID, err
}

// childOutcome is how a child run stands: its status and, once it ended,
// its output or error.
type childOutcome struct {
	ID     int64           `json:"id"`
	Status RunStatus       `json:"status"`
	Output json.RawMessage `json:"output,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// children returns the outcomes of those of ids that are parent's
// children, in no particular order.
func (r runRepo) children(ctx context.Context, q querier, ids []int64, parent int64) ([]childOutcome, error) {
	rows, err := q.QueryContext(ctx, r.d.workflow.children, r.d.idsArg(ids), parent)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []childOutcome
	for rows.Next() {
		var c childOutcome
		var output []byte
		if err := rows.Scan(&c.ID, &c.Status, &output, &c.Error); err != nil {
			return nil, err
		}
		if output != nil {
			c.Output = output
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// unfinishedChildren returns the IDs of parent's children that have not
// ended.
func (r runRepo) unfinishedChildren(ctx context.Context, q querier, parent int64) ([]int64, error) {
	rows, err := q.QueryContext(ctx, r.d.workflow.unfinishedChildren, parent)
	if err != nil {
		return nil, err
	}
	return scanIDs(rows)
}

// byKey returns the ID of the workflow's run with key, or sql.ErrNoRows.
func (r runRepo) byKey(ctx context.Context, q querier, workflowID int64, key string) (id int64, err error) {
	err = q.QueryRowContext(ctx, r.d.workflow.runByKey, workflowID, key).Scan(&id)
	return id, err
}

// insertMany records one run per message of msgIDs, with the input of
// the same index, in one statement, and returns the run IDs in that order.
func (r runRepo) insertMany(ctx context.Context, q querier, workflowID int64, msgIDs []int64, inputs []json.RawMessage, timeout time.Duration) ([]int64, error) {
	pairs := make([][2]any, len(msgIDs))
	for i := range msgIDs {
		pairs[i] = [2]any{msgIDs[i], inputs[i]}
	}
	array, err := json.Marshal(pairs)
	if err != nil {
		return nil, err
	}
	var secs any
	if timeout > 0 {
		secs = r.d.secondsArg(timeout)
	}
	rows, err := q.QueryContext(ctx, r.d.workflow.insertRuns, workflowID, string(array), secs)
	if err != nil {
		return nil, err
	}
	return scanIDs(rows)
}

func scanRun(sc interface{ Scan(...any) error }) (*RunInfo, error) {
	var r RunInfo
	var input, output []byte
	var resume, created, started, finished, updated, deadline dbTime
	if err := sc.Scan(&r.ID, &r.Workflow, &r.Status, &input, &output, &r.Error, &resume,
		&created, &started, &finished, &updated, &deadline, &r.Key, &r.Parent); err != nil {
		return nil, err
	}
	r.Input, r.ResumeAt, r.CreatedAt, r.StartedAt, r.FinishedAt, r.UpdatedAt, r.Deadline =
		input, resume.t, created.t, started.t, finished.t, updated.t, deadline.t
	if output != nil {
		r.Output = output
	}
	return &r, nil
}

// get returns run id without its steps, or sql.ErrNoRows.
func (r runRepo) get(ctx context.Context, q querier, id int64) (*RunInfo, error) {
	return scanRun(q.QueryRowContext(ctx, r.d.workflow.get, id))
}

// list returns up to limit runs with IDs below before, newest first, of
// workflow (""; all) in status ("": any).
func (r runRepo) list(ctx context.Context, q querier, workflow string, status RunStatus, before int64, limit int, parent int64) ([]RunInfo, error) {
	rows, err := q.QueryContext(ctx, r.d.workflow.list, workflow, string(status), before, limit, parent)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []RunInfo{}
	for rows.Next() {
		run, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *run)
	}
	return out, rows.Err()
}

// steps returns run id's recorded steps in the order it reached them.
func (r runRepo) steps(ctx context.Context, q querier, id int64) ([]StepInfo, error) {
	rows, err := q.QueryContext(ctx, r.d.workflow.steps, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	steps := []StepInfo{}
	for rows.Next() {
		var st StepInfo
		var output []byte
		var retry, updated dbTime
		if err := rows.Scan(&st.Name, &st.Position, &st.Status, &output, &st.Error, &st.Attempts, &retry, &updated); err != nil {
			return nil, err
		}
		if output != nil {
			st.Output = output
		}
		st.RetryAt, st.UpdatedAt = retry.t, updated.t
		steps = append(steps, st)
	}
	return steps, rows.Err()
}

// markWaited asks for run id's end to be announced (NOTIFY) to waiters in
// other processes.
func (r runRepo) markWaited(ctx context.Context, q querier, id int64) error {
	_, err := q.ExecContext(ctx, r.d.workflow.markWaited, id)
	return err
}

// setStatus sets run id's status (CANCELLED also ends it) and announces
// it to waiters.
func (r runRepo) setStatus(ctx context.Context, q querier, id int64, to RunStatus) error {
	_, err := scanRunStatus(q.QueryRowContext(ctx, r.d.workflow.setStatus, id, string(to)))
	return err
}

// lock reads run id's status and message, locking the row where the
// backend has row locks; sql.ErrNoRows for an unknown run.
func (r runRepo) lock(ctx context.Context, q querier, id int64) (status RunStatus, msgID int64, err error) {
	err = q.QueryRowContext(ctx, r.d.workflow.lock, id).Scan(&status, &msgID)
	return status, msgID, err
}

// messageHeld reports whether a worker holds message msgID now, waiting
// for a give-back in flight where the backend has row locks;
// sql.ErrNoRows when the message is gone (archived).
func (r runRepo) messageHeld(ctx context.Context, q querier, msgID int64) (held bool, err error) {
	err = q.QueryRowContext(ctx, r.d.workflow.lockMessage, msgID).Scan(&held)
	return held, err
}

// deleteFailedSteps forgets run id's failed steps (a retry starts them
// afresh).
func (r runRepo) deleteFailedSteps(ctx context.Context, q querier, id int64) error {
	_, err := q.ExecContext(ctx, r.d.workflow.deleteFailedSteps, id)
	return err
}

// requeue makes failed run id QUEUED again, driven by message msgID.
func (r runRepo) requeue(ctx context.Context, q querier, id, msgID int64) error {
	_, err := q.ExecContext(ctx, r.d.workflow.requeue, id, msgID)
	return err
}

// unfinished counts workflowID's runs that have not ended.
func (r runRepo) unfinished(ctx context.Context, q querier, workflowID int64) (n int64, err error) {
	err = q.QueryRowContext(ctx, r.d.workflow.unfinished, workflowID).Scan(&n)
	return n, err
}

// deleteWorkflow deletes workflowID's runs (their steps go with them), then
// the workflow.
func (r runRepo) deleteWorkflow(ctx context.Context, q querier, workflowID int64) error {
	if _, err := execCount(ctx, q, "delete runs", r.d.workflow.deleteRuns, workflowID); err != nil {
		return err
	}
	_, err := execCount(ctx, q, "delete workflow", r.d.workflow.deleteByID, workflowID)
	return err
}

// purge deletes workflowID's runs that ended before t and returns how many.
func (r runRepo) purge(ctx context.Context, q querier, workflowID int64, t time.Time) (int64, error) {
	return execCount(ctx, q, "purge runs", r.d.workflow.purgeRuns, workflowID, r.d.timeArg(t))
}

// workflows returns every workflow with its run counts per status, by name.
func (r runRepo) workflows(ctx context.Context, q querier) ([]WorkflowInfo, error) {
	rows, err := q.QueryContext(ctx, r.d.workflow.listWorkflows)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []WorkflowInfo{}
	for rows.Next() {
		w := WorkflowInfo{Runs: map[RunStatus]int64{}}
		var created dbTime
		counts := make([]int64, len(runStatuses))
		dest := []any{&w.Name, &created}
		for i := range counts {
			dest = append(dest, &counts[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		w.CreatedAt = created.t
		for i, st := range runStatuses {
			w.Runs[st] = counts[i]
		}
		out = append(out, w)
	}
	return out, rows.Err()
}
