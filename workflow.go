package pgqrs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

// RunStatus is the state of a workflow run.
type RunStatus string

// The states of a run. A run is QUEUED until a worker starts it, RUNNING
// from then on (also while it sleeps or waits for a step's retry, holding no
// worker), PAUSED when a step paused it, CANCELLING between a cancel request
// and the run's next step boundary, and finally SUCCESS, ERROR or CANCELLED.
const (
	RunQueued     RunStatus = "QUEUED"
	RunRunning    RunStatus = "RUNNING"
	RunPaused     RunStatus = "PAUSED"
	RunCancelling RunStatus = "CANCELLING"
	RunCancelled  RunStatus = "CANCELLED"
	RunSucceeded  RunStatus = "SUCCESS"
	RunFailed     RunStatus = "ERROR"
)

// Finished reports whether s is a final state: SUCCESS, ERROR or CANCELLED.
func (s RunStatus) Finished() bool {
	return s == RunSucceeded || s == RunFailed || s == RunCancelled
}

// Workflow is a named, durable function of typed input and output, made of
// [Step]s whose results are persisted. Build one with [NewWorkflow], usually
// as a package-level variable; it holds no state of its own and is safe for
// concurrent use.
//
// The function is ordinary Go code, run by [Workflow.Serve]. After a crash
// or a suspension (a [Sleep], a step retry, a pause) it runs again from the
// top and every step that already completed returns its recorded result
// instead of running again, so the function must reach the same steps in
// the same order given the same input and step results: anything with a
// side effect or a nondeterministic result (I/O, clocks, random numbers)
// belongs inside a step.
type Workflow[In, Out any] struct {
	name  string
	fn    func(ctx context.Context, run *Run, in In) (Out, error)
	retry RetryPolicy
}

// NewWorkflow returns the workflow name running fn. Its name must follow the
// rules for queue names (letters and digits of any script and "_-.:@/", at
// most 128 characters); the workflow owns the queue of that name. Invalid
// names and a nil fn are reported by the methods that use them.
func NewWorkflow[In, Out any](name string, fn func(ctx context.Context, run *Run, in In) (Out, error)) *Workflow[In, Out] {
	return &Workflow[In, Out]{name: name, fn: fn}
}

// Name returns the workflow's name.
func (w *Workflow[In, Out]) Name() string { return w.name }

// WithRetry returns a copy of w whose steps retry by p unless a step sets its
// own policy with [StepRetry]. The default is the zero RetryPolicy: errors
// marked [Transient] are retried 3 times, 1 s to 60 s apart.
func (w *Workflow[In, Out]) WithRetry(p RetryPolicy) *Workflow[In, Out] {
	c := *w
	c.retry = p
	return &c
}

func (w *Workflow[In, Out]) valid() error {
	if w == nil || w.fn == nil {
		return fmt.Errorf("%w: workflow without a function", ErrInvalidArgument)
	}
	return validateName("workflow", w.name)
}

// Register records the workflow in s and creates its queue. It is
// idempotent and safe to call concurrently from any number of processes;
// [Workflow.Serve] calls it too. A queue of the same name that is not a
// workflow's returns [ErrQueueExists].
func (w *Workflow[In, Out]) Register(ctx context.Context, s *Store) error {
	if err := w.valid(); err != nil {
		return err
	}
	_, err := s.registerWorkflow(ctx, w.name)
	return err
}

// Trigger starts a run of the workflow with input in and returns the run's
// ID. The run starts when a worker ([Workflow.Serve]) picks it up; [Delay]
// and [At] postpone that. Trigger registers the workflow if this Store has
// not seen it registered yet. Input that does not encode as JSON, or is too
// large, returns [ErrInvalidPayload] or [ErrPayloadTooLarge].
func (w *Workflow[In, Out]) Trigger(ctx context.Context, s *Store, in In, opts ...EnqueueOption) (int64, error) {
	return w.triggerHooked(ctx, s, nil, in, opts)
}

// TriggerTx is like [Workflow.Trigger] but inside tx: the run exists only if
// tx commits. Committing or rolling back tx is the caller's job. It does not
// register the workflow: register it first ([Workflow.Register]), or it
// returns [ErrWorkflowNotFound].
func (w *Workflow[In, Out]) TriggerTx(ctx context.Context, tx *sql.Tx, s *Store, in In, opts ...EnqueueOption) (int64, error) {
	if err := needTx(tx); err != nil {
		return 0, err
	}
	return w.triggerHooked(ctx, s, tx, in, opts)
}

func (w *Workflow[In, Out]) trigger(ctx context.Context, s *Store, tx *sql.Tx, in In, opts []EnqueueOption) (int64, error) {
	if err := w.valid(); err != nil {
		return 0, err
	}
	b, err := json.Marshal(in)
	if err != nil {
		return 0, fmt.Errorf("trigger %q: %w: %v", w.name, ErrInvalidPayload, err)
	}
	if err := checkJSON(b); err != nil {
		return 0, fmt.Errorf("trigger %q: input: %w", w.name, err)
	}
	if tx != nil {
		return s.triggerRun(ctx, tx, w.name, b, opts)
	}
	if _, err := s.registerWorkflow(ctx, w.name); err != nil {
		return 0, err
	}
	id, err := s.triggerRun(ctx, nil, w.name, b, opts)
	if errors.Is(err, errForeignKey) {
		// Deleted (Admin.DeleteWorkflow) since this Store cached it: register
		// it afresh and try once more.
		s.workflows.Delete(w.name)
		if _, err := s.registerWorkflow(ctx, w.name); err != nil {
			return 0, err
		}
		id, err = s.triggerRun(ctx, nil, w.name, b, opts)
	}
	return id, err
}

// TriggerBatch starts one run per input, all or none, in one transaction
// of two statements (the runs' messages, then the runs), and returns their
// IDs in the order of ins; opts apply to every run. An empty batch starts
// nothing. More inputs than the store's batch limit return
// [ErrBatchTooLarge]; other errors are as for [Workflow.Trigger] and name
// the index of a bad input.
func (w *Workflow[In, Out]) TriggerBatch(ctx context.Context, s *Store, ins []In, opts ...EnqueueOption) ([]int64, error) {
	return w.triggerBatchHooked(ctx, s, nil, ins, opts)
}

// TriggerBatchTx is like [Workflow.TriggerBatch] but inside tx, as
// [Workflow.TriggerTx]: the runs exist only if tx commits, and the workflow
// must be registered first.
func (w *Workflow[In, Out]) TriggerBatchTx(ctx context.Context, tx *sql.Tx, s *Store, ins []In, opts ...EnqueueOption) ([]int64, error) {
	if err := needTx(tx); err != nil {
		return nil, err
	}
	return w.triggerBatchHooked(ctx, s, tx, ins, opts)
}

func (w *Workflow[In, Out]) triggerBatch(ctx context.Context, s *Store, tx *sql.Tx, ins []In, opts []EnqueueOption) ([]int64, error) {
	if err := w.valid(); err != nil {
		return nil, err
	}
	inputs := make([]json.RawMessage, len(ins))
	for i, in := range ins {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("trigger %q: input %d: %w: %v", w.name, i, ErrInvalidPayload, err)
		}
		if err := checkJSON(b); err != nil {
			return nil, fmt.Errorf("trigger %q: input %d: %w", w.name, i, err)
		}
		if len(b) > s.cfg.maxPayloadBytes {
			return nil, fmt.Errorf("trigger %q: input %d: %w: %d bytes, limit %d", w.name, i, ErrPayloadTooLarge, len(b), s.cfg.maxPayloadBytes)
		}
		inputs[i] = b
	}
	if tx != nil {
		return s.triggerRuns(ctx, tx, w.name, inputs, opts)
	}
	if _, err := s.registerWorkflow(ctx, w.name); err != nil {
		return nil, err
	}
	ids, err := s.triggerRuns(ctx, nil, w.name, inputs, opts)
	if errors.Is(err, errForeignKey) {
		s.workflows.Delete(w.name) // deleted since this Store cached it
		if _, err := s.registerWorkflow(ctx, w.name); err != nil {
			return nil, err
		}
		ids, err = s.triggerRuns(ctx, nil, w.name, inputs, opts)
	}
	return ids, err
}

// Serve runs the workflow's triggered runs until ctx is cancelled, as
// [Consumer.Run] runs handlers: opts sets the concurrency (runs at once),
// batch size, poll interval, visibility timeout (extended while a run
// executes), heartbeat, shutdown grace period and logger, with the same
// defaults. MaxAttempts is how many deliveries of a run may end without the
// run finishing or suspending (its worker crashed or lost the lease) before
// the run is failed as abandoned; Backoff applies only to infrastructure
// failures (the database unreachable while a result is recorded). Step
// retries follow the workflow's [RetryPolicy] instead. wopts name the worker.
//
// Serve registers the workflow first. On ctx cancel it returns nil once
// running runs have reached their next suspension or finished, within the
// shutdown grace period; a run cut off there runs again, replaying its
// completed steps, on the next delivery.
func (w *Workflow[In, Out]) Serve(ctx context.Context, s *Store, opts *RunOptions, wopts ...WorkerOption) error {
	if err := w.valid(); err != nil {
		return err
	}
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	if _, err := s.registerWorkflow(ctx, w.name); err != nil {
		return err
	}
	c, err := s.Consumer(ctx, w.name, wopts...)
	if err != nil {
		return err
	}
	e := &engine{s: s, name: w.name, retry: w.retry, maxDeliveries: o.MaxAttempts, call: w.call}
	// The handler sees one delivery past the limit and fails the run; Run
	// dead-letters the message only if even that cannot be recorded.
	o.MaxAttempts++
	o.workflow = w.name
	return c.Run(ctx, func(ctx context.Context, m *Message) error { return e.execute(ctx, c, m) }, &o)
}

// call decodes the input, runs the function and encodes its output.
func (w *Workflow[In, Out]) call(ctx context.Context, run *Run, input json.RawMessage) (json.RawMessage, error) {
	var in In
	if err := json.Unmarshal(input, &in); err != nil {
		return nil, fmt.Errorf("decode input of workflow %q: %w", w.name, err)
	}
	out, err := w.fn(ctx, run, in)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(out)
	if err == nil {
		err = checkJSON(b)
	}
	if err != nil {
		return nil, fmt.Errorf("encode output of workflow %q: %w", w.name, err)
	}
	return b, nil
}

// Result waits for run id to finish and returns its output: at once if it
// has, otherwise as soon as it does (see [Runs.Wait]) or ctx ends. A run
// that failed returns a [*RunError]; a cancelled one [ErrRunCancelled]; an
// unknown ID [ErrRunNotFound]; a run of another workflow [ErrInvalidArgument].
func (w *Workflow[In, Out]) Result(ctx context.Context, s *Store, id int64) (Out, error) {
	var out Out
	info, err := s.getRun(ctx, id)
	if err != nil {
		return out, err
	}
	if info.Workflow != w.name {
		return out, fmt.Errorf("%w: run %d belongs to workflow %q, not %q", ErrInvalidArgument, id, info.Workflow, w.name)
	}
	if info, err = s.Runs().Wait(ctx, id); err != nil {
		return out, err
	}
	switch info.Status {
	case RunFailed:
		return out, &RunError{RunID: id, Workflow: info.Workflow, Message: info.Error}
	case RunCancelled:
		if info.Error != "" { // the deadline passed
			return out, fmt.Errorf("run %d of %q: %w: %s", id, info.Workflow, ErrRunCancelled, info.Error)
		}
		return out, fmt.Errorf("run %d of %q: %w", id, info.Workflow, ErrRunCancelled)
	}
	if err := json.Unmarshal(info.Output, &out); err != nil {
		return out, fmt.Errorf("decode output of run %d: %w", id, err)
	}
	return out, nil
}

// RunError is a finished run's failure, as returned by [Workflow.Result].
type RunError struct {
	RunID    int64
	Workflow string
	Message  string // the recorded error text
}

func (e *RunError) Error() string {
	return fmt.Sprintf("pgqrs: run %d of %q failed: %s", e.RunID, e.Workflow, e.Message)
}

// Unwrap returns [ErrRunFailed].
func (e *RunError) Unwrap() error { return ErrRunFailed }

// engine executes the runs of one workflow for Serve.
type engine struct {
	s             *Store
	name          string
	retry         RetryPolicy
	maxDeliveries int
	call          func(ctx context.Context, run *Run, input json.RawMessage) (json.RawMessage, error)
}

// execute is the handler of a workflow's messages. A delivery goes through
// three phases: admit (is there a run to execute, and may it execute now),
// attempt (run the workflow function from the top; each [Step] replays its
// recorded result or attempts its body, see [Run.step]) and conclude (record
// how the run ended, or give its message back until it continues). It
// returns nil when the message is done with (archive), a *rescheduleError
// when the run waits, and other errors only when the outcome could not be
// recorded.
func (e *engine) execute(ctx context.Context, c *Consumer, m *Message) error {
	run, input, err := e.admit(ctx, c, m)
	if run == nil {
		return err
	}
	actx := ctx
	if !run.deadline.IsZero() {
		var cancel context.CancelFunc
		actx, cancel = context.WithDeadline(ctx, run.deadline.Add(-run.offset)) // on the local clock
		defer cancel()
	}
	out, err := e.attempt(actx, run, input)
	if err != nil && ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
		// The deadline cut the run off: it ends CANCELLED, keeping its last
		// completed step's record.
		run.mu.Lock()
		pending := run.pending
		run.mu.Unlock()
		return e.end(ctx, m, run, pending, RunCancelled, nil, run.pastDeadline())
	}
	return e.conclude(ctx, c, m, run, out, err)
}

// admit decides whether this delivery of message m executes a run. It reads
// the run m drives with its recorded steps (load) and then lets only a
// QUEUED or RUNNING run through: a run whose deliveries are used up is failed
// as abandoned, a finished one is done with, a cancel request ends the run
// CANCELLED, a pause not yet due gives the message back, and a pause that is
// due is claimed back to RUNNING (runRepo.start). It returns the run to
// execute and its input, or a nil run and the delivery's result.
func (e *engine) admit(ctx context.Context, c *Consumer, m *Message) (*Run, json.RawMessage, error) {
	run, loaded, err := e.load(ctx, m.ID)
	if d := deliveryOf(ctx); d != nil && run != nil {
		d.RunID = run.id
	}
	if errors.Is(err, errNoRun) {
		// A run retried with Runs.Retry moved to a new message, leaving this
		// one (its worker died before archiving it); or the message was
		// never a trigger. Nothing to run: archive it, where it stays visible.
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if m.ReadCount > e.maxDeliveries {
		msg := fmt.Sprintf("abandoned: %d deliveries ended without the run finishing or suspending (crashed or lost workers)", e.maxDeliveries)
		return nil, nil, e.finish(ctx, run, nil, RunFailed, nil, &msg)
	}
	if !loaded.status.Finished() && !run.deadline.IsZero() && !run.now().Before(run.deadline) {
		return nil, nil, e.finish(ctx, run, nil, RunCancelled, nil, run.pastDeadline())
	}
	for range 3 {
		switch loaded.status {
		case RunRunning, RunQueued:
			return run, loaded.input, nil
		case RunSucceeded, RunFailed, RunCancelled:
			return nil, nil, nil // finished before its message was archived
		case RunCancelling:
			return nil, nil, e.finish(ctx, run, nil, RunCancelled, nil, nil)
		case RunPaused:
			if loaded.resumeAt.IsZero() || run.now().Before(loaded.resumeAt) {
				run.suspendUntil(loaded.resumeAt)
				run.suspend.paused = true
				e.bringForward(run.suspend, c, m.ID, run.id)
				return nil, nil, run.suspend
			}
		}
		started, err := e.start(ctx, run.id)
		if err != nil {
			return nil, nil, err
		}
		if started {
			return run, loaded.input, nil
		}
		// Cancelled or resumed meanwhile: look again.
		if loaded.status, err = e.s.runStatus(ctx, run.id); err != nil {
			return nil, nil, err
		}
	}
	if loaded.status == RunRunning || loaded.status == RunQueued {
		return run, loaded.input, nil // resumed by the last look
	}
	return nil, nil, fmt.Errorf("run %d: status kept changing", run.id)
}

// start moves a PAUSED run whose pause is due to RUNNING (runRepo.start).
// It reports false when the run was not PAUSED any more.
func (e *engine) start(ctx context.Context, id int64) (bool, error) {
	err := e.s.write(ctx, nil, func(ctx context.Context, q querier) error {
		_, err := e.s.runs.start(ctx, q, id)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("start run %d: %w", id, err)
	}
	return true, nil
}

// attempt runs the workflow function on input, turning a panic into an
// error. It reads and writes nothing itself: the function's steps replay
// their records or record their outcomes, and leave on run what conclude
// needs (a suspension, a cancel, the last step's pending record).
func (e *engine) attempt(ctx context.Context, run *Run, input json.RawMessage) (out json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return e.call(ctx, run, input)
}

// conclude turns how the workflow function returned (out, err) and what its
// steps left on run into the delivery's result. A suspended run (sleep,
// step retry) writes its pending step record and gives the message back; a
// cancelled run is done with; a delivery cut off (lease lost, shutdown)
// gives the run back without using an attempt; a failure to record is
// retried; a pause requested by the function pauses the run; any other
// outcome ends the run (end). A replay that diverged from the run's
// recorded steps ([*NondeterminismError]) fails the run, whatever the
// function returned.
func (e *engine) conclude(ctx context.Context, c *Consumer, m *Message, run *Run, out json.RawMessage, err error) error {
	run.mu.Lock()
	suspend, cancelled, pending, diverged := run.suspend, run.cancelled, run.pending, run.diverged
	run.mu.Unlock()
	if diverged != nil {
		// Whatever the function made of the error: the run's record and its
		// code disagree, so nothing it does from here on can be trusted.
		text := errorText(diverged)
		return e.end(ctx, m, run, pending, RunFailed, nil, &text)
	}
	if suspend != nil {
		e.bringForward(suspend, c, m.ID, run.id)
	}
	var rec *recordError
	var pause *pauseError
	switch {
	case suspend != nil:
		if err := run.flush(ctx); err != nil {
			return handled(err)
		}
		return suspend
	case cancelled:
		return nil
	case ctx.Err() != nil:
		// Lease lost or shutdown: give the run back without using an attempt.
		return &rescheduleError{}
	case errors.As(err, &rec):
		// The recording failure alone, retried: never a [Permanent] the
		// function wrapped around it, which the Run loop would dead-letter.
		return rec
	case errors.As(err, &pause):
		if err := run.flush(ctx); err != nil {
			return handled(err)
		}
		if err := run.pause(ctx, pause.until); !errors.Is(err, ErrSuspended) {
			return handled(err)
		}
		e.bringForward(run.suspend, c, m.ID, run.id)
		return run.suspend
	case err != nil:
		text := errorText(err)
		return e.end(ctx, m, run, pending, RunFailed, nil, &text)
	}
	return e.end(ctx, m, run, pending, RunSucceeded, out, nil)
}

// end records the run's end together with its last step's pending record
// (finish). When that record was not written because an earlier delivery of
// the run, still executing after its lease expired, recorded the step first,
// the end was not recorded either: end then reads the run's status and
// gives the run back at once, so that the next delivery replays the step
// and ends the run.
func (e *engine) end(ctx context.Context, m *Message, run *Run, pending *pendingStep, status RunStatus, out json.RawMessage, errText *string) error {
	id := run.id
	if err := e.finish(ctx, run, pending, status, out, errText); err != nil {
		return err
	}
	if pending == nil || m.ReadCount <= 1 {
		return nil // no earlier delivery, or no step record to lose
	}
	if st, err := e.s.runStatus(ctx, id); err != nil || !st.Finished() {
		return &rescheduleError{}
	}
	return nil
}

// bringForward arranges for a suspended run's message to be made visible
// again as soon as it is given back if a cancel (or a resume of a pause)
// came while this delivery held it: neither could move a held message. A
// failure here is healed by the suspension's bound (maxSuspend). What the
// suspension already had to do after its give-back (a [Recv]'s check for
// a signal sent meanwhile) runs first.
func (e *engine) bringForward(suspend *rescheduleError, c *Consumer, msgID, runID int64) {
	paused, children := suspend.paused, suspend.children
	before := suspend.after
	suspend.after = func(ctx context.Context) {
		if before != nil {
			before(ctx)
		}
		st, err := e.s.runStatus(ctx, runID)
		if err == nil && (st == RunCancelling || st == RunCancelled || (paused && st != RunPaused) ||
			(len(children) > 0 && e.s.childrenEnded(ctx, runID, children))) {
			e.s.write(ctx, nil, func(ctx context.Context, q querier) error {
				return e.s.runs.wakeMessage(ctx, q, msgID)
			})
			e.s.wake(queueWake(c.queueID))
		}
	}
}

// handled maps what a run's own bookkeeping returned to the handler's
// result: a cancelled run is done with; a recording failure is retried.
func handled(err error) error {
	if errors.Is(err, ErrRunCancelled) {
		return nil
	}
	return err
}

// errNoRun: the message drives no run.
var errNoRun = errors.New("the message starts no run")

// loadedRun is a run's state as a delivery finds it.
type loadedRun struct {
	status   RunStatus
	input    json.RawMessage
	resumeAt time.Time
}

// load reads the run driven by message msgID, with its recorded steps if it
// ever started.
func (e *engine) load(ctx context.Context, msgID int64) (*Run, *loadedRun, error) {
	run := &Run{workflow: e.name, e: e, steps: map[string]*StepInfo{}, atPosition: map[int]string{}, seen: map[string]bool{}}
	var row runRow
	err := e.s.read(ctx, func(ctx context.Context, q querier) (err error) {
		row, err = e.s.runs.byMessage(ctx, q, msgID)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, errNoRun
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load run of message %d: %w", msgID, err)
	}
	run.id = row.id
	run.offset = row.dbNow.Sub(time.Now())
	run.deadline = row.deadline
	run.parent = row.parent
	l := loadedRun{status: row.status, input: row.input, resumeAt: row.resumeAt}
	if row.started {
		steps, err := e.s.runSteps(ctx, run.id)
		if err != nil {
			return nil, nil, err
		}
		for i := range steps {
			run.steps[steps[i].Name] = &steps[i]
			run.atPosition[steps[i].Position] = steps[i].Name
		}
	}
	return run, &l, nil
}

// finish ends run id with status (a cancel request turns any end into
// CANCELLED), output or error text, recording a pending step in the same
// statement, and wakes its waiters. A run that had already ended is left
// alone.
func (e *engine) finish(ctx context.Context, run *Run, pending *pendingStep, status RunStatus, output json.RawMessage, errText *string) error {
	id := run.id
	end := runEnd{status: status, output: output, errText: errText, last: pending}
	err := e.s.write(ctx, nil, func(ctx context.Context, q querier) error {
		return e.s.runs.finish(ctx, q, id, end)
	})
	if err != nil {
		return fmt.Errorf("finish run %d: %w", id, err)
	}
	e.s.wake(runWake(id))
	if run.parent != 0 {
		// A parent waiting for its children continues now. Should this
		// fail (or the process die first), the parent's own look at its
		// children when its bounded wait (maxSuspend) ends finds the end.
		_ = e.s.wakeParent(ctx, id)
	}
	return nil
}
