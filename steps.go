package pgqrs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// This file is a run's side of a workflow: the Run handle, Step, Sleep and
// Pause, retry policies and step errors. workflow.go defines workflows and
// executes their runs; runs.go inspects and steers runs.

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

func (e *TransientError) Error() string {
	if e.Err == nil {
		return "transient error"
	}
	return "transient: " + e.Err.Error()
}

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

// Permanent marks err as not worth retrying: a step's, whatever its
// policy and even if it wraps a [TransientError], and a [Handler]'s, whose
// message [Consumer.Run] then dead-letters at once instead of delivering it
// again. Permanent(nil) is nil.
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
// [Runs.Resume] resumes it (until zero: only then). The step that
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
	deadline time.Time     // on the database clock; zero: none
	parent   int64         // the run that started this one as a child; 0: none

	mu         sync.Mutex
	steps      map[string]*StepInfo // recorded by earlier executions
	atPosition map[int]string       // the recorded steps' names by position
	seen       map[string]bool      // reached in this execution
	diverged   *NondeterminismError // this execution left the recorded path
	next       int                  // position of the next step reached
	suspend    *rescheduleError     // the run waits for a timer
	cancelled  bool
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
	delay    time.Duration
	paused   bool    // the run is PAUSED, not waiting for a timer
	children []int64 // the run waits for these child runs to end
	after    func(ctx context.Context)
}

func (e *rescheduleError) Error() string { return fmt.Sprintf("run continues in %v", e.delay) }

// maxSuspend bounds how long a suspended run's message stays hidden: a
// longer wait (or a pause until resumed) is given back again when it comes
// up, so a cancel or resume that could not bring the message forward
// (the database was unreachable at that moment) takes effect within it.
const maxSuspend = time.Hour

// suspendUntil records that the run must wait until t (zero: until resumed).
func (r *Run) suspendUntil(t time.Time) error {
	d := maxSuspend
	if !t.IsZero() {
		d = min(max(t.Sub(r.now()), 0), maxSuspend)
	}
	if !r.deadline.IsZero() {
		d = min(d, max(r.deadline.Sub(r.now()), 0)) // the deadline ends the wait
	}
	r.suspend = &rescheduleError{delay: d}
	return ErrSuspended
}

// pastDeadline is the error text of a run cancelled by its deadline.
func (r *Run) pastDeadline() *string {
	text := "deadline exceeded: the run did not finish by " + r.deadline.UTC().Format(time.RFC3339Nano)
	return &text
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
// name used twice in one run returns [ErrDuplicateStep]. Once the run is
// cancelled, the next Step returns [ErrRunCancelled] without calling its fn
// (a cancel seen when the last step's result is recorded ends the run
// CANCELLED instead).
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
		if err := checkJSON(b); err != nil {
			return nil, Permanent(fmt.Errorf("result: %w", err))
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

// patchPrefix starts the step names under which [Patched] records its
// answers.
const patchPrefix = "pgqrs.patch/"

// Patched reports whether run takes the code path of the patch named name,
// so that workflow code can change while runs are in flight. A run that
// reaches the check for the first time records the answer true at the
// check's position and takes the new path; a run that passed this point
// before the patch existed (it recorded another step at this position)
// gets false, records nothing, and replays its old steps unchanged:
//
//	if ok, err := pgqrs.Patched(ctx, run, "price-v2"); err != nil {
//		return 0, err
//	} else if ok {
//		total, err = pgqrs.Step(ctx, run, "price-v2", priceV2)
//	} else {
//		total, err = pgqrs.Step(ctx, run, "price", price)
//	}
//
// A run that has not reached the check yet when the new code is deployed
// takes the new path. The answer is recorded as a step named
// "pgqrs.patch/" + name, so the name shares the run's step namespace and a
// replay agrees with the first execution. Remove a patch's check (keeping
// its new path only) once no run that recorded the old path can replay it;
// removing it earlier makes the runs that recorded true fail with a
// [*NondeterminismError].
func Patched(ctx context.Context, run *Run, name string) (bool, error) {
	if run == nil {
		return false, fmt.Errorf("%w: nil *Run", ErrInvalidArgument)
	}
	marker := patchPrefix + name
	if err := validateStepName(marker); err != nil || name == "" {
		return false, fmt.Errorf("%w: patch name %q must be 1 to %d bytes of UTF-8 without NUL", ErrInvalidArgument, name, 1000-len(patchPrefix))
	}
	run.mu.Lock()
	recorded, ok := run.atPosition[run.next]
	run.mu.Unlock()
	if ok && recorded != marker {
		return false, nil // this run went past the check's position before the patch existed
	}
	if _, err := run.step(ctx, marker, nil, func(context.Context) (json.RawMessage, error) {
		return json.RawMessage(`true`), nil
	}); err != nil {
		return false, err
	}
	return true, nil
}

// step is Step without types. A call goes through four phases: admit (may
// the run take this step now, and at which position), replay (a step
// recorded by an earlier execution returns its record instead of running),
// attempt (run the body) and conclude (keep the result for recording, or
// record the failure and schedule a retry or fail the step).
func (r *Run) step(ctx context.Context, name string, opts []StepOption, body func(context.Context) (json.RawMessage, error)) (json.RawMessage, error) {
	call, err := r.admit(name, opts)
	if err != nil {
		return nil, err
	}
	if out, done, err := r.replay(call); done {
		return out, err
	}
	if len(r.e.s.cfg.mw.step) > 0 {
		inner := body
		body = func(ctx context.Context) (json.RawMessage, error) {
			return r.attemptStep(ctx, call.name, call.attempts, inner)
		}
	}
	out, ran, err := r.attempt(ctx, body)
	if !ran {
		return nil, err
	}
	return r.conclude(ctx, call, out, err)
}

// stepCall is one call of [Step] as it goes through the phases of step.
type stepCall struct {
	name     string
	position int         // in the order this execution reached its steps
	record   *StepInfo   // recorded by an earlier execution, or nil
	attempts int         // this attempt's number, counting recorded ones
	policy   RetryPolicy // the step's own, or its workflow's
}

// admit checks the step's name and options and whether the run may take a
// step now: not once it is suspended or cancelled, and not under a name
// this execution already reached ([ErrDuplicateStep]). It marks the name
// reached, takes the next position and looks up the step's record; it
// reads no table (load read the records).
func (r *Run) admit(name string, opts []StepOption) (*stepCall, error) {
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
	call := &stepCall{name: name, attempts: 1, policy: r.e.retry}
	if cfg.retry != nil {
		call.policy = *cfg.retry
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.diverged != nil:
		return nil, r.diverged
	case r.suspend != nil:
		return nil, ErrSuspended
	case r.cancelled:
		return nil, fmt.Errorf("run %d: %w", r.id, ErrRunCancelled)
	case r.seen[name]:
		return nil, fmt.Errorf("run %d: %w: %q", r.id, ErrDuplicateStep, name)
	}
	position := r.next
	rec := r.steps[name]
	if recorded, ok := r.atPosition[position]; (ok && recorded != name) || (rec != nil && rec.Position != position) {
		// The run reached a step the record does not have here: the code
		// changed under a run in flight, or it does not take its steps in
		// a deterministic order. Going on would mix results across steps.
		r.diverged = &NondeterminismError{Run: r.id, Position: position, Recorded: recorded, Reached: name}
		return nil, r.diverged
	}
	r.seen[name] = true
	call.position = position
	r.next++
	call.record = rec
	return call, nil
}

// NondeterminismError is returned by [Step] and [Sleep] when a run's
// execution reaches, at a position its record has, a different step than
// the one recorded there (or reaches a recorded step at another position):
// the workflow's code changed under a run in flight, or the function does
// not take its steps in a deterministic order. The run fails with this
// error, whatever the workflow function returns, and its steps after the
// divergence never run. It wraps [ErrNondeterministic].
type NondeterminismError struct {
	Run      int64
	Position int    // 0 for the run's first step
	Recorded string // the step recorded at Position; "" if none is
	Reached  string // the step this execution reached at Position
}

func (e *NondeterminismError) Error() string {
	recorded := fmt.Sprintf("%q", e.Recorded)
	if e.Recorded == "" {
		recorded = "no step"
	}
	return fmt.Sprintf("run %d: step %d is %q in this execution, but the run recorded %s there: "+
		"the workflow changed under a run in flight or takes its steps in a nondeterministic order",
		e.Run, e.Position, e.Reached, recorded)
}

// Unwrap returns [ErrNondeterministic].
func (e *NondeterminismError) Unwrap() error { return ErrNondeterministic }

// replay answers the call from the step's record when it has one: a
// recorded success returns its result, a recorded final failure its
// [*StepError], and a retry not yet due suspends the run until then. It
// reports done false when the body must run: no record, or a retry that
// is due (call.attempts is then the next attempt's number). It writes
// nothing to the store.
func (r *Run) replay(call *stepCall) (out json.RawMessage, done bool, err error) {
	rec := call.record
	switch {
	case rec == nil:
		return nil, false, nil
	case rec.Status == StepSucceeded:
		return rec.Output, true, nil
	case rec.RetryAt.IsZero():
		return nil, true, &StepError{Step: call.name, Attempts: rec.Attempts, Err: errors.New(rec.Error)}
	case r.now().Before(rec.RetryAt):
		r.mu.Lock()
		defer r.mu.Unlock()
		return nil, true, r.suspendUntil(rec.RetryAt)
	}
	call.attempts = rec.Attempts + 1
	return nil, false, nil
}

// attempt runs the step's body, turning a panic into a permanent error.
// First it writes the previous step's pending record (flush): no body runs
// before the steps ahead of it are durable. It reports ran false, with the
// error, when the body did not run: ctx is done, or that write failed.
func (r *Run) attempt(ctx context.Context, body func(context.Context) (json.RawMessage, error)) (out json.RawMessage, ran bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if err := r.flush(ctx); err != nil {
		return nil, false, err
	}
	defer func() {
		if p := recover(); p != nil {
			out, ran, err = nil, true, Permanent(fmt.Errorf("panic: %v\n%s", p, debug.Stack()))
		}
	}()
	out, err = body(ctx)
	return out, true, err
}

// conclude settles the attempt's outcome. A success becomes the run's
// pending step, written with the run's next write (flush, or the run's
// end). A body cut off by ctx is not the step's failure and records
// nothing; a [Pause] pauses the run (runRepo.pause). Any other error is
// recorded (runRepo.stepFailed) with the time of the next attempt when the
// policy retries it, and then suspends the run until that time; otherwise
// the step has failed for good and conclude returns a [*StepError].
func (r *Run) conclude(ctx context.Context, call *stepCall, out json.RawMessage, err error) (json.RawMessage, error) {
	if err == nil {
		r.mu.Lock()
		r.pending = &pendingStep{name: call.name, position: call.position, output: out, attempts: call.attempts}
		r.mu.Unlock()
		return out, nil
	}
	if ctx.Err() != nil {
		// Cut off (lease lost, shutdown): not the step's failure.
		return nil, fmt.Errorf("step %q: %w", call.name, ctx.Err())
	}
	var pause *pauseError
	if errors.As(err, &pause) {
		return nil, r.pause(ctx, pause.until)
	}
	at := r.retryAt(call, err)
	text := errorText(err)
	if rerr := r.record(ctx, call.name, func(ctx context.Context, q querier) (RunStatus, error) {
		return r.e.s.runs.stepFailed(ctx, q, r.id, call.name, call.position, text, call.attempts, at)
	}); rerr != nil {
		return nil, rerr
	}
	if !at.IsZero() {
		r.mu.Lock()
		defer r.mu.Unlock()
		return nil, r.suspendUntil(at)
	}
	return nil, &StepError{Step: call.name, Attempts: call.attempts, Err: err}
}

// retryAt is when the step runs again after failing with err, by its
// policy: zero when it does not (err is not retryable, or marked
// [Permanent], or the retries are used up).
func (r *Run) retryAt(call *stepCall, err error) time.Time {
	var transient *TransientError
	var permanent *permanentError
	isTransient := errors.As(err, &transient)
	retry := !errors.As(err, &permanent) && (isTransient || call.policy.RetryAllErrors) && call.attempts <= call.policy.retries()
	if !retry {
		return time.Time{}
	}
	d := call.policy.delay(call.attempts)
	if isTransient && transient.RetryAfter > 0 {
		d = transient.RetryAfter
	}
	return r.now().Add(d)
}

func validateStepName(name string) error {
	if name == "" || len(name) > 1000 || !utf8.ValidString(name) || strings.ContainsRune(name, 0) {
		return fmt.Errorf("%w: step name %q must be 1 to 1000 bytes of UTF-8 without NUL", ErrInvalidArgument, name)
	}
	return nil
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
	return r.record(ctx, p.name, func(ctx context.Context, q querier) (RunStatus, error) {
		return r.e.s.runs.stepDone(ctx, q, r.id, *p)
	})
}

// record writes step name's outcome with write (runRepo.stepDone or
// stepFailed), which records only while the run may still take steps, and
// stops the run when it was cancelled meanwhile.
func (r *Run) record(ctx context.Context, name string, write func(ctx context.Context, q querier) (RunStatus, error)) error {
	s := r.e.s
	var status RunStatus
	err := s.write(ctx, nil, func(ctx context.Context, q querier) (err error) {
		status, err = write(ctx, q)
		return err
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
	if err := r.e.finish(ctx, r, nil, RunCancelled, nil, nil); err != nil {
		return &recordError{err}
	}
	r.mu.Lock()
	r.cancelled = true
	r.mu.Unlock()
	return fmt.Errorf("run %d: %w", r.id, ErrRunCancelled)
}

// pause pauses the run until t (zero: until resumed).
func (r *Run) pause(ctx context.Context, until time.Time) error {
	err := r.e.s.write(ctx, nil, func(ctx context.Context, q querier) error {
		_, err := r.e.s.runs.pause(ctx, q, r.id, until)
		return err
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
