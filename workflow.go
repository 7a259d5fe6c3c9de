package pgqrs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
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
// own policy with [StepRetry]. The default is [DefaultRetryPolicy].
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
// and [At] postpone that. The workflow must be registered
// ([ErrWorkflowNotFound] otherwise); input that does not encode as JSON, or
// is too large, returns [ErrInvalidPayload] or [ErrPayloadTooLarge].
func (w *Workflow[In, Out]) Trigger(ctx context.Context, s *Store, in In, opts ...EnqueueOption) (int64, error) {
	return w.trigger(ctx, s, nil, in, opts)
}

// TriggerTx is like [Workflow.Trigger] but inside tx: the run exists only if
// tx commits. Committing or rolling back tx is the caller's job.
func (w *Workflow[In, Out]) TriggerTx(ctx context.Context, tx *sql.Tx, s *Store, in In, opts ...EnqueueOption) (int64, error) {
	if err := needTx(tx); err != nil {
		return 0, err
	}
	return w.trigger(ctx, s, tx, in, opts)
}

func (w *Workflow[In, Out]) trigger(ctx context.Context, s *Store, tx *sql.Tx, in In, opts []EnqueueOption) (int64, error) {
	if err := w.valid(); err != nil {
		return 0, err
	}
	b, err := json.Marshal(in)
	if err != nil {
		return 0, fmt.Errorf("trigger %q: %w: %v", w.name, ErrInvalidPayload, err)
	}
	return s.triggerRun(ctx, tx, w.name, b, opts)
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
	if err != nil {
		return nil, fmt.Errorf("encode output of workflow %q: %w", w.name, err)
	}
	return b, nil
}

// Result waits for run id to finish and returns its output: at once if it
// has, otherwise as soon as it does (see [Store.WaitRun]) or ctx ends. A run
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
	if info, err = s.WaitRun(ctx, id); err != nil {
		return out, err
	}
	switch info.Status {
	case RunFailed:
		return out, &RunError{RunID: id, Workflow: info.Workflow, Message: info.Error}
	case RunCancelled:
		return out, fmt.Errorf("run %d of %q: %w", id, info.Workflow, ErrRunCancelled)
	}
	if err := json.Unmarshal(info.Output, &out); err != nil {
		return out, fmt.Errorf("decode output of run %d: %w", id, err)
	}
	return out, nil
}

// RetryPolicy says how often and when a failed step runs again. A retry is
// scheduled in the store: the run's message becomes visible again at the
// retry time, so a waiting run holds no worker, and it does not count
// towards the run's delivery limit.
type RetryPolicy struct {
	// MaxRetries is how many times a failed step runs again: 0 means the
	// default, 3; a negative value means never.
	MaxRetries int
	// Backoff is the delay before retry n (1-based). Default:
	// ExponentialBackoff(time.Second, time.Minute), which doubles from 1 s
	// up to 60 s with jitter. A [TransientError] may ask for its own delay.
	Backoff func(retry int) time.Duration
	// RetryAllErrors retries every error except those marked [Permanent].
	// By default only errors marked [Transient] are retried; any other
	// error fails the run at once.
	RetryAllErrors bool
}

// DefaultRetryPolicy is the policy of a workflow without [Workflow.WithRetry]:
// errors marked [Transient] are retried 3 times, 1 s to 60 s apart.
var DefaultRetryPolicy = RetryPolicy{MaxRetries: 3}

func (p RetryPolicy) retries() int {
	switch {
	case p.MaxRetries < 0:
		return 0
	case p.MaxRetries == 0:
		return 3
	}
	return p.MaxRetries
}

func (p RetryPolicy) delay(retry int) (d time.Duration) {
	if p.Backoff == nil {
		return ExponentialBackoff(time.Second, time.Minute)(retry)
	}
	defer func() {
		if recover() != nil {
			d = time.Second
		}
	}()
	return max(p.Backoff(retry), 0)
}

// TransientError marks a step error worth retrying; see [Transient].
type TransientError struct {
	Err error
	// RetryAfter, if positive, replaces the policy's backoff for this retry.
	RetryAfter time.Duration
}

func (e *TransientError) Error() string { return "transient: " + e.Err.Error() }

// Unwrap returns the marked error.
func (e *TransientError) Unwrap() error { return e.Err }

// Transient marks err as worth retrying under the step's [RetryPolicy].
// Transient(nil) is nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &TransientError{Err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying, whatever the policy and even
// if it wraps a [TransientError]. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// pauseError is a step's request to pause its run.
type pauseError struct{ until time.Time }

func (e *pauseError) Error() string {
	if e.until.IsZero() {
		return "pause until resumed"
	}
	return "pause until " + e.until.UTC().Format(time.RFC3339)
}

// Pause returns the error a step returns to pause its run: the run becomes
// PAUSED, holds no worker, and continues at until, or when
// [Store.ResumeRun] resumes it (until zero: only then). The step that
// paused did not complete; it runs again when the run continues. A workflow
// function may return it too; the run then starts over from its first step,
// replaying completed ones.
func Pause(until time.Time) error { return &pauseError{until: until} }

// StepError is a step's final failure: not retryable, or out of retries.
type StepError struct {
	Step     string
	Attempts int
	Err      error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("step %q failed after %d attempt(s): %v", e.Step, e.Attempts, e.Err)
}

// Unwrap returns the step's error (after a restart, an error carrying the
// recorded text).
func (e *StepError) Unwrap() error { return e.Err }

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

// StepOption adjusts one [Step].
type StepOption interface{ applyStep(*stepConfig) }

type stepConfig struct{ retry *RetryPolicy }

type stepOptionFunc func(*stepConfig)

func (f stepOptionFunc) applyStep(c *stepConfig) { f(c) }

// StepRetry makes the step retry by p instead of its workflow's policy.
func StepRetry(p RetryPolicy) StepOption {
	return stepOptionFunc(func(c *stepConfig) { c.retry = &p })
}

// Run is one execution of a workflow run, handed to the workflow function.
// Pass it to [Step] and [Sleep]; its methods are safe for concurrent use,
// but steps of one run must be called one after another, in a deterministic
// order.
type Run struct {
	id       int64
	workflow string
	e        *engine
	offset   time.Duration // database clock minus local clock

	mu        sync.Mutex
	steps     map[string]*StepInfo // recorded by earlier executions
	seen      map[string]bool      // reached in this execution
	next      int                  // position of the next step reached
	suspend   *rescheduleError     // the run waits for a timer
	cancelled bool
	// pending is the last completed step while its record waits to be
	// written with the run's next write: before the next step's body runs,
	// or with the run's end. A crash before then runs it again, as it would
	// a step cut off mid-body; no other step started meanwhile.
	pending *pendingStep
}

type pendingStep struct {
	name     string
	position int
	output   json.RawMessage
	attempts int
}

// ID returns the run's ID.
func (r *Run) ID() int64 { return r.id }

// Workflow returns the name of the run's workflow.
func (r *Run) Workflow() string { return r.workflow }

// now is the database's clock, estimated from the local one.
func (r *Run) now() time.Time { return time.Now().Add(r.offset) }

// rescheduleError tells Run to give the message back, visible after delay,
// without counting the delivery as an attempt, and then to call after.
type rescheduleError struct {
	delay  time.Duration
	paused bool // the run is PAUSED, not waiting for a timer
	after  func(ctx context.Context)
}

func (e *rescheduleError) Error() string { return fmt.Sprintf("run continues in %v", e.delay) }

// forever stands for "until resumed": a pause without end.
const forever = 100 * 365 * 24 * time.Hour

// suspendUntil records that the run must wait until t (zero: forever).
func (r *Run) suspendUntil(t time.Time) error {
	d := forever
	if !t.IsZero() {
		d = max(t.Sub(r.now()), 0)
	}
	r.suspend = &rescheduleError{delay: d}
	return ErrSuspended
}

// recordError marks a failure to record a step's outcome: the delivery is
// retried, the run is not failed.
type recordError struct{ err error }

func (e *recordError) Error() string { return e.err.Error() }
func (e *recordError) Unwrap() error { return e.err }

// Step runs fn as the step name of run and returns its result, persisted as
// JSON together with the step's completion. If the step completed in an
// earlier execution of the run, Step returns the recorded result without
// calling fn; the result is always the recorded JSON decoded into T, so a
// replay returns exactly what the first execution did.
//
// fn runs at least once per completion: a process that dies while fn runs,
// or before its result is recorded, runs it again on the next delivery.
// Make its side effects idempotent where that matters.
//
// An error from fn that is retryable under the step's [RetryPolicy] (marked
// [Transient], or any error not marked [Permanent] when RetryAllErrors is
// set) schedules a retry and suspends the run; Step then returns an error
// the workflow function must return. Any other error, or the last retry's,
// is recorded and returned as a [*StepError]; returned from the workflow
// function, it fails the run. A step returning [Pause] pauses the run. A
// name used twice in one run returns [ErrDuplicateStep]; a run cancelled
// meanwhile returns [ErrRunCancelled] after fn finished.
func Step[T any](ctx context.Context, run *Run, name string, fn func(ctx context.Context) (T, error), opts ...StepOption) (T, error) {
	var zero T
	if fn == nil {
		return zero, fmt.Errorf("%w: step %q without a function", ErrInvalidArgument, name)
	}
	out, err := run.step(ctx, name, opts, func(ctx context.Context) (json.RawMessage, error) {
		v, err := fn(ctx)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, Permanent(fmt.Errorf("encode result: %w", err))
		}
		return b, nil
	})
	if err != nil {
		return zero, err
	}
	var v T
	if err := json.Unmarshal(out, &v); err != nil {
		return zero, fmt.Errorf("step %q: decode recorded result: %w", name, err)
	}
	return v, nil
}

// Sleep suspends run for d, durably: the run holds no worker while it
// sleeps, and continues after d even if every process restarted meanwhile.
// The wake-up time is recorded as the step name when the run first reaches
// it. Sleep returns nil once the time has passed; before that, an error the
// workflow function must return.
func Sleep(ctx context.Context, run *Run, name string, d time.Duration) error {
	if err := nonNegative("sleep", d); err != nil {
		return err
	}
	if run == nil {
		return fmt.Errorf("%w: nil *Run", ErrInvalidArgument)
	}
	var wake time.Time
	out, err := run.step(ctx, name, nil, func(context.Context) (json.RawMessage, error) {
		return json.Marshal(run.now().Add(d).UTC())
	})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, &wake); err != nil {
		return fmt.Errorf("sleep %q: decode recorded wake-up time: %w", name, err)
	}
	if err := run.flush(ctx); err != nil { // the wake-up time must be durable first
		return err
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	if run.now().Before(wake) {
		return run.suspendUntil(wake)
	}
	return nil
}

// step is Step without types: replay, run, record.
func (r *Run) step(ctx context.Context, name string, opts []StepOption, body func(context.Context) (json.RawMessage, error)) (json.RawMessage, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil *Run", ErrInvalidArgument)
	}
	if err := validateStepName(name); err != nil {
		return nil, err
	}
	cfg := stepConfig{}
	for _, o := range opts {
		if o != nil {
			o.applyStep(&cfg)
		}
	}
	r.mu.Lock()
	switch {
	case r.suspend != nil:
		r.mu.Unlock()
		return nil, ErrSuspended
	case r.cancelled:
		r.mu.Unlock()
		return nil, fmt.Errorf("run %d: %w", r.id, ErrRunCancelled)
	case r.seen[name]:
		r.mu.Unlock()
		return nil, fmt.Errorf("run %d: %w: %q", r.id, ErrDuplicateStep, name)
	}
	r.seen[name] = true
	pos := r.next
	r.next++
	rec := r.steps[name]
	attempts := 1
	if rec != nil {
		switch {
		case rec.Status == StepSucceeded:
			r.mu.Unlock()
			return rec.Output, nil
		case rec.RetryAt.IsZero():
			r.mu.Unlock()
			return nil, &StepError{Step: name, Attempts: rec.Attempts, Err: errors.New(rec.Error)}
		case r.now().Before(rec.RetryAt):
			defer r.mu.Unlock()
			return nil, r.suspendUntil(rec.RetryAt)
		}
		attempts = rec.Attempts + 1
	}
	r.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.flush(ctx); err != nil {
		return nil, err
	}

	out, err := callStep(ctx, body)
	if err == nil {
		r.mu.Lock()
		r.pending = &pendingStep{name: name, position: pos, output: out, attempts: attempts}
		r.mu.Unlock()
		return out, nil
	}
	if ctx.Err() != nil {
		// Cut off (lease lost, shutdown): not the step's failure.
		return nil, fmt.Errorf("step %q: %w", name, ctx.Err())
	}
	var pause *pauseError
	if errors.As(err, &pause) {
		return nil, r.pause(ctx, pause.until)
	}
	policy := r.e.retry
	if cfg.retry != nil {
		policy = *cfg.retry
	}
	var transient *TransientError
	var permanent *permanentError
	isTransient := errors.As(err, &transient)
	retry := !errors.As(err, &permanent) && (isTransient || policy.RetryAllErrors) && attempts <= policy.retries()
	var retryAt any // NULL: no more attempts
	var at time.Time
	if retry {
		d := policy.delay(attempts)
		if isTransient && transient.RetryAfter > 0 {
			d = transient.RetryAfter
		}
		at = r.now().Add(d)
		retryAt = r.e.s.d.timeArg(at)
	}
	if rerr := r.record(ctx, name, r.e.s.d.workflow.stepFailed, pos, errorText(err), attempts, retryAt); rerr != nil {
		return nil, rerr
	}
	if retry {
		r.mu.Lock()
		defer r.mu.Unlock()
		return nil, r.suspendUntil(at)
	}
	return nil, &StepError{Step: name, Attempts: attempts, Err: err}
}

func validateStepName(name string) error {
	if name == "" || len(name) > 1000 {
		return fmt.Errorf("%w: step name %q must be 1 to 1000 bytes", ErrInvalidArgument, name)
	}
	return nil
}

// callStep runs a step's body, turning a panic into a permanent error.
func callStep(ctx context.Context, body func(context.Context) (json.RawMessage, error)) (out json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = Permanent(fmt.Errorf("panic: %v\n%s", p, debug.Stack()))
		}
	}()
	return body(ctx)
}

// flush writes the pending step's record, if any. A run that stopped
// taking steps meanwhile (cancelled) returns an error wrapping
// [ErrRunCancelled].
func (r *Run) flush(ctx context.Context) error {
	r.mu.Lock()
	p := r.pending
	r.pending = nil
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	return r.record(ctx, p.name, r.e.s.d.workflow.stepDone, p.position, string(p.output), p.attempts)
}

// record writes a step's outcome (stepDone or stepFailed, whose arguments
// follow the run and step name) if the run may still take steps, and stops
// the run when it was cancelled meanwhile.
func (r *Run) record(ctx context.Context, name, stmt string, args ...any) error {
	s := r.e.s
	var status RunStatus
	err := s.write(ctx, nil, func(ctx context.Context, q querier) error {
		return q.QueryRowContext(ctx, stmt, append([]any{r.id, name}, args...)...).Scan(&status)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return r.notRecorded(ctx, name)
	}
	if err != nil {
		return &recordError{fmt.Errorf("record step %q of run %d: %w", name, r.id, err)}
	}
	if status == RunCancelling {
		return r.cancel(ctx)
	}
	return nil
}

// notRecorded explains a step record that wrote nothing: the run stopped
// taking steps (cancelled at once, or failed by a delivery that found this
// one abandoned), or another execution of the run recorded the step's
// success first, which then stands.
func (r *Run) notRecorded(ctx context.Context, name string) error {
	s := r.e.s
	st, err := s.runStatus(ctx, r.id)
	if err != nil {
		return &recordError{fmt.Errorf("step %q of run %d: %w", name, r.id, err)}
	}
	switch st {
	case RunCancelled, RunCancelling:
		return r.cancel(ctx)
	case RunRunning, RunQueued:
		return &recordError{fmt.Errorf("step %q of run %d: recorded by another execution of the run (a lease was lost); this one stops", name, r.id)}
	}
	return &recordError{fmt.Errorf("step %q of run %d: the run is %s", name, r.id, st)}
}

// cancel ends a run asked to cancel, at a step boundary.
func (r *Run) cancel(ctx context.Context) error {
	if err := r.e.finish(ctx, r.id, nil, RunCancelled, nil, nil); err != nil {
		return &recordError{err}
	}
	r.mu.Lock()
	r.cancelled = true
	r.mu.Unlock()
	return fmt.Errorf("run %d: %w", r.id, ErrRunCancelled)
}

// pause pauses the run until t (zero: until resumed).
func (r *Run) pause(ctx context.Context, until time.Time) error {
	var resume any
	if !until.IsZero() {
		resume = r.e.s.d.timeArg(until)
	}
	var status RunStatus
	err := r.e.s.write(ctx, nil, func(ctx context.Context, q querier) error {
		return q.QueryRowContext(ctx, r.e.s.d.workflow.pause, r.id, resume).Scan(&status)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return r.cancel(ctx) // only a cancel request moves a running run
	}
	if err != nil {
		return &recordError{fmt.Errorf("pause run %d: %w", r.id, err)}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err = r.suspendUntil(until)
	r.suspend.paused = true
	return err
}

// engine executes the runs of one workflow for Serve.
type engine struct {
	s             *Store
	name          string
	retry         RetryPolicy
	maxDeliveries int
	call          func(ctx context.Context, run *Run, input json.RawMessage) (json.RawMessage, error)
}

// execute is the handler of a workflow's messages: it loads the run, runs
// the workflow function and records how the run ended or when it continues.
// It returns nil when the message is done with (archive), a
// *rescheduleError when the run waits, and other errors only when the
// outcome could not be recorded.
func (e *engine) execute(ctx context.Context, c *Consumer, m *Message) error {
	run, loaded, err := e.load(ctx, m.ID)
	if err != nil {
		return err
	}
	if m.ReadCount > e.maxDeliveries {
		msg := fmt.Sprintf("abandoned: %d deliveries ended without the run finishing or suspending (crashed or lost workers)", e.maxDeliveries)
		return e.finish(ctx, run.id, nil, RunFailed, nil, &msg)
	}
	for range 3 {
		switch loaded.status {
		case RunSucceeded, RunFailed, RunCancelled:
			return nil // finished before its message was archived
		case RunCancelling:
			return e.finish(ctx, run.id, nil, RunCancelled, nil, nil)
		case RunPaused:
			if loaded.resumeAt.IsZero() || run.now().Before(loaded.resumeAt) {
				run.suspendUntil(loaded.resumeAt)
				run.suspend.paused = true
				return run.suspend
			}
		}
		if loaded.status == RunRunning || loaded.status == RunQueued {
			break
		}
		var st RunStatus
		err := e.s.write(ctx, nil, func(ctx context.Context, q querier) error {
			return q.QueryRowContext(ctx, e.s.d.workflow.start, run.id).Scan(&st)
		})
		if err == nil {
			loaded.status = st
			break
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("start run %d: %w", run.id, err)
		}
		// Cancelled or resumed meanwhile: look again.
		if loaded.status, err = e.s.runStatus(ctx, run.id); err != nil {
			return err
		}
	}
	if loaded.status != RunRunning && loaded.status != RunQueued {
		return fmt.Errorf("run %d: status kept changing", run.id)
	}

	out, err := e.callWorkflow(ctx, run, loaded.input)
	run.mu.Lock()
	suspend, cancelled, pending := run.suspend, run.cancelled, run.pending
	run.mu.Unlock()
	if suspend != nil {
		// A cancel (or a resume of a pause) that came while this delivery
		// held the message could not make it visible; once it is given back,
		// bring it forward so the run continues or ends now, not when due.
		paused := suspend.paused
		suspend.after = func(ctx context.Context) {
			st, err := e.s.runStatus(ctx, run.id)
			if err == nil && (st == RunCancelling || st == RunCancelled || (paused && st != RunPaused)) {
				e.s.write(ctx, nil, func(ctx context.Context, q querier) error {
					_, err := q.ExecContext(ctx, e.s.d.workflow.wakeMessage, m.ID)
					return err
				})
				e.s.wake(c.queueID)
			}
		}
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
		return err
	case errors.As(err, &pause):
		if err := run.flush(ctx); err != nil {
			return handled(err)
		}
		if err := run.pause(ctx, pause.until); !errors.Is(err, ErrSuspended) {
			return handled(err)
		}
		return run.suspend
	case err != nil:
		text := errorText(err)
		return e.finish(ctx, run.id, pending, RunFailed, nil, &text)
	}
	return e.finish(ctx, run.id, pending, RunSucceeded, out, nil)
}

// handled maps what a run's own bookkeeping returned to the handler's
// result: a cancelled run is done with; a recording failure is retried.
func handled(err error) error {
	if errors.Is(err, ErrRunCancelled) {
		return nil
	}
	return err
}

// callWorkflow runs the workflow function, turning a panic into an error.
func (e *engine) callWorkflow(ctx context.Context, run *Run, input json.RawMessage) (out json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return e.call(ctx, run, input)
}

// loadedRun is a run's state as a delivery finds it.
type loadedRun struct {
	status   RunStatus
	input    json.RawMessage
	resumeAt time.Time
}

// load reads the run driven by message msgID, with its recorded steps if it
// ever started.
func (e *engine) load(ctx context.Context, msgID int64) (*Run, *loadedRun, error) {
	run := &Run{workflow: e.name, e: e, steps: map[string]*StepInfo{}, seen: map[string]bool{}}
	var l loadedRun
	var input []byte
	var resume, dbNow dbTime
	var started bool
	err := e.s.read(ctx, func(ctx context.Context, q querier) error {
		return q.QueryRowContext(ctx, e.s.d.workflow.runByMessage, msgID).Scan(&run.id, &l.status, &input, &resume, &started, &dbNow)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, fmt.Errorf("message %d of workflow %q starts no run", msgID, e.name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load run of message %d: %w", msgID, err)
	}
	run.offset = dbNow.t.Sub(time.Now())
	l.input, l.resumeAt = input, resume.t
	if started {
		steps, err := e.s.runSteps(ctx, run.id)
		if err != nil {
			return nil, nil, err
		}
		for i := range steps {
			run.steps[steps[i].Name] = &steps[i]
		}
	}
	return run, &l, nil
}

// finish ends run id with status (a cancel request turns any end into
// CANCELLED), output or error text, recording a pending step in the same
// statement, and wakes its waiters. A run that had already ended is left
// alone.
func (e *engine) finish(ctx context.Context, id int64, pending *pendingStep, status RunStatus, output json.RawMessage, errText *string) error {
	args := []any{id, string(status), nil, errText, nil, 0, nil, 0}
	if output != nil {
		args[2] = string(output)
	}
	if p := pending; p != nil {
		args[4], args[5], args[6], args[7] = p.name, p.position, string(p.output), p.attempts
	}
	err := e.s.write(ctx, nil, func(ctx context.Context, q querier) error {
		_, err := q.ExecContext(ctx, e.s.d.workflow.finish, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("finish run %d: %w", id, err)
	}
	e.s.wake(-id)
	return nil
}
