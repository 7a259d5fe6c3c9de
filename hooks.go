package pgqrs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Middleware: code of the application's (tracing, metrics, logging,
// tenancy) wrapped around the places where work enters and leaves the
// queue. A middleware is a value given to [WithMiddleware] that implements
// one or more of [EnqueueMiddleware], [HandleMiddleware] and
// [StepMiddleware]. A Store without middleware runs none of this: each call
// site checks one slice length.

// EnqueueMiddleware wraps every enqueue and trigger through the Store:
// [Producer.Enqueue], EnqueueTx, EnqueueBatch(Tx), EnqueueJobs(Tx), and
// [Workflow.Trigger], TriggerTx, TriggerBatch(Tx) (also child runs started
// with [StartChild]). It runs before the call's arguments are checked. next performs the enqueue, with ctx as the
// middleware passes it and with the headers set by [EnqueueInfo.SetHeader]
// added to every message; after it returns nil, info.IDs holds the result.
// A middleware that returns without calling next enqueues nothing, and its
// error is the call's. Schedules' firings ([Store.RunScheduler]) are not
// wrapped.
type EnqueueMiddleware interface {
	InterceptEnqueue(ctx context.Context, info *EnqueueInfo, next func(context.Context) error) error
}

// HandleMiddleware wraps every handler call of [Consumer.Run] (one
// message), [Consumer.RunBatch] (one batch) and [Workflow.Serve] (one
// execution of a run, from its first not-yet-recorded step to its next
// suspension or end). next calls the handler with the ctx the middleware
// passes; the error the chain returns is what the loop settles, as a
// [Handler]'s. [Delivery.Outcome] tells, after next returned, what the loop
// will do with each message. A panic in the handler reaches the middleware
// as an error; a panic in a middleware is the handler's too.
type HandleMiddleware interface {
	InterceptHandle(ctx context.Context, d *Delivery, next func(context.Context) error) error
}

// StepMiddleware wraps every attempt of a workflow [Step]'s function: not
// replays of recorded steps, [Sleep] or [Patched]. next runs the step
// function; its error is the attempt's, which the step's [RetryPolicy]
// judges.
type StepMiddleware interface {
	InterceptStep(ctx context.Context, s *StepAttempt, next func(context.Context) error) error
}

// EnqueueFunc, HandleFunc and StepFunc make a middleware of a function.
type (
	EnqueueFunc func(ctx context.Context, info *EnqueueInfo, next func(context.Context) error) error
	HandleFunc  func(ctx context.Context, d *Delivery, next func(context.Context) error) error
	StepFunc    func(ctx context.Context, s *StepAttempt, next func(context.Context) error) error
)

func (f EnqueueFunc) InterceptEnqueue(ctx context.Context, info *EnqueueInfo, next func(context.Context) error) error {
	return f(ctx, info, next)
}

func (f HandleFunc) InterceptHandle(ctx context.Context, d *Delivery, next func(context.Context) error) error {
	return f(ctx, d, next)
}

func (f StepFunc) InterceptStep(ctx context.Context, s *StepAttempt, next func(context.Context) error) error {
	return f(ctx, s, next)
}

// WithMiddleware adds middleware to the Store, in order: the first given
// (over all WithMiddleware options) is the outermost, so it sees the call
// first and the result last. Each value must implement at least one of
// [EnqueueMiddleware], [HandleMiddleware] and [StepMiddleware]; one that
// implements none, or nil, returns [ErrInvalidArgument].
func WithMiddleware(mws ...any) Option {
	return optionFunc(func(c *config) error {
		for i, m := range mws {
			e, isE := m.(EnqueueMiddleware)
			h, isH := m.(HandleMiddleware)
			s, isS := m.(StepMiddleware)
			if !isE && !isH && !isS {
				return fmt.Errorf("%w: middleware %d (%T) implements none of EnqueueMiddleware, HandleMiddleware, StepMiddleware", ErrInvalidArgument, i, m)
			}
			if isE {
				c.mw.enqueue = append(c.mw.enqueue, e)
			}
			if isH {
				c.mw.handle = append(c.mw.handle, h)
			}
			if isS {
				c.mw.step = append(c.mw.step, s)
			}
		}
		return nil
	})
}

type middleware struct {
	enqueue []EnqueueMiddleware
	handle  []HandleMiddleware
	step    []StepMiddleware
}

// chain runs mws around inner, the first outermost.
func chain[M any, I any](ctx context.Context, mws []M, info I, call func(M, context.Context, I, func(context.Context) error) error, inner func(context.Context) error) error {
	var at func(i int) func(context.Context) error
	at = func(i int) func(context.Context) error {
		if i == len(mws) {
			return inner
		}
		return func(ctx context.Context) error { return call(mws[i], ctx, info, at(i+1)) }
	}
	return at(0)(ctx)
}

// EnqueueInfo describes one enqueue or trigger call to an
// [EnqueueMiddleware].
type EnqueueInfo struct {
	Queue    string // the queue (for a trigger, the workflow's queue)
	Workflow string // the workflow's name for a trigger; empty for messages
	Count    int    // messages (runs) the call enqueues
	InTx     bool   // inside the caller's transaction: written only if it commits
	// IDs are the new messages' IDs (for triggers, the runs' IDs), set
	// when next returned nil; for EnqueueJobs duplicates carry their
	// holder's ID, and for Enqueue with a taken [Key] it is the holder's.
	IDs     []int64
	headers map[string]string
}

// SetHeader adds header key to every message of the call, replacing one of
// the same key given by the caller, under the rules of [Header]; an invalid
// header fails the enqueue.
func (e *EnqueueInfo) SetHeader(key, value string) {
	if e.headers == nil {
		e.headers = map[string]string{}
	}
	e.headers[key] = value
}

// Header returns the value a middleware set for key with SetHeader.
func (e *EnqueueInfo) Header(key string) (string, bool) {
	v, ok := e.headers[key]
	return v, ok
}

// option is the headers as an enqueue option, nil when none were set.
func (e *EnqueueInfo) option() EnqueueOption {
	if len(e.headers) == 0 {
		return nil
	}
	return Headers(e.headers)
}

// intercepting runs the Store's enqueue middleware around do, which gets
// the options the middleware add. Without middleware it calls do(ctx, nil).
func (s *Store) intercepting(ctx context.Context, info *EnqueueInfo, do func(ctx context.Context, extra EnqueueOption) ([]int64, error)) error {
	if len(s.cfg.mw.enqueue) == 0 {
		_, err := do(ctx, nil)
		return err
	}
	return chain(ctx, s.cfg.mw.enqueue, info, EnqueueMiddleware.InterceptEnqueue, func(ctx context.Context) error {
		ids, err := do(ctx, info.option())
		if err == nil || errors.Is(err, ErrDuplicate) {
			info.IDs = ids
		}
		return err
	})
}

// withOption returns opts with o appended, without touching opts' array.
func withOption(opts []EnqueueOption, o EnqueueOption) []EnqueueOption {
	if o == nil {
		return opts
	}
	return append(slices.Clip(opts), o)
}

// Delivery describes one handler call to a [HandleMiddleware].
type Delivery struct {
	Queue    string
	Worker   string // the consumer's name
	WorkerID int64
	// Messages are the messages handed to the handler: one for Run and
	// Serve, up to BatchSize for RunBatch.
	Messages    []*Message
	MaxAttempts int // deliveries a message gets (RunOptions.MaxAttempts)
	// Workflow is the workflow's name when the handler is [Workflow.Serve]'s
	// engine, and RunID the run this delivery executes, known once the
	// engine has loaded it (inside next); 0 when the message drives no run.
	Workflow string
	RunID    int64

	r       *runner
	hctx    context.Context // the loop's context of the handler call
	delays  map[int]time.Duration
	decided bool
}

// OutcomeKind is what the Run loop does with a message after its handler
// returned.
type OutcomeKind int

const (
	// OutcomeArchive: the handler succeeded; the message is archived.
	OutcomeArchive OutcomeKind = iota + 1
	// OutcomeRetry: the handler failed; the message is released, visible
	// again after Outcome.Delay, for its next attempt.
	OutcomeRetry
	// OutcomeDeadLetter: the handler failed on the last attempt, or with a
	// [Permanent] error; the message is dead-lettered.
	OutcomeDeadLetter
	// OutcomeWait: a workflow run suspended (sleep, step retry, pause,
	// children); its message comes back after Outcome.Delay without the
	// delivery counting as an attempt.
	OutcomeWait
	// OutcomeReturn: the message is no longer this loop's (its lease was
	// lost, an admin cancelled it) or its delivery was cut off by that;
	// it is given back uncounted or left to its new holder.
	OutcomeReturn
)

func (k OutcomeKind) String() string {
	switch k {
	case OutcomeArchive:
		return "archive"
	case OutcomeRetry:
		return "retry"
	case OutcomeDeadLetter:
		return "dead-letter"
	case OutcomeWait:
		return "wait"
	case OutcomeReturn:
		return "return"
	}
	return fmt.Sprintf("OutcomeKind(%d)", int(k))
}

// Outcome is what the loop does with one message of a [Delivery].
type Outcome struct {
	Kind  OutcomeKind
	Delay time.Duration // OutcomeRetry, OutcomeWait: until the message is visible again
}

// Outcome reports what the loop will do with message m of the delivery if
// the middleware chain returns err: call it after next returned, with the
// error the middleware will return. It is the loop's own decision (the
// same retry delay included), made before the statement that applies it;
// that statement's failure is logged, and the message then comes back when
// its lease expires.
func (d *Delivery) Outcome(m *Message, err error) Outcome {
	d.decided = true
	r := d.r
	cause := context.Cause(d.hctx)
	lostOne := cause == errLeaseLost || cause == ErrMessageCancelled
	r.mu.Lock()
	l := r.held[m.ID]
	lost := l == nil || l.lost || l.gone
	r.mu.Unlock()
	if err == nil && d.hctx.Err() != nil && !lostOne {
		err = context.Cause(d.hctx)
	}
	var later *rescheduleError
	var permanent *permanentError
	switch {
	case lost:
		return Outcome{Kind: OutcomeReturn}
	case err == nil:
		return Outcome{Kind: OutcomeArchive}
	case lostOne && errors.Is(err, context.Canceled):
		return Outcome{Kind: OutcomeReturn}
	case errors.As(err, &later):
		return Outcome{Kind: OutcomeWait, Delay: later.delay}
	case errors.As(err, &permanent), m.ReadCount >= r.o.MaxAttempts:
		return Outcome{Kind: OutcomeDeadLetter}
	}
	return Outcome{Kind: OutcomeRetry, Delay: d.delay(m.ReadCount)}
}

// delay is the backoff after a failed attempt, drawn once per attempt
// number so the loop and Outcome agree.
func (d *Delivery) delay(attempt int) time.Duration {
	if v, ok := d.delays[attempt]; ok {
		return v
	}
	if d.delays == nil {
		d.delays = map[int]time.Duration{}
	}
	v := d.r.backoff(attempt)
	d.delays[attempt] = v
	return v
}

type deliveryKey struct{}

// deliveryOf returns the Delivery a handler runs under, if middleware made
// one.
func deliveryOf(ctx context.Context) *Delivery {
	d, _ := ctx.Value(deliveryKey{}).(*Delivery)
	return d
}

// intercept calls the handler through the Store's handle middleware; d is
// nil when there is none.
func (r *runner) intercept(hctx context.Context, msgs []*Message) (d *Delivery, err error) {
	mws := r.c.s.cfg.mw.handle
	if len(mws) == 0 {
		return nil, r.call(hctx, msgs)
	}
	d = &Delivery{Queue: r.c.queue, Worker: r.c.name, WorkerID: r.c.id, Messages: msgs, MaxAttempts: r.o.MaxAttempts,
		Workflow: r.o.workflow, r: r, hctx: hctx}
	err = r.guard(func() error {
		return chain(context.WithValue(hctx, deliveryKey{}, d), mws, d, HandleMiddleware.InterceptHandle, func(ctx context.Context) error {
			return r.call(ctx, msgs)
		})
	})
	return d, err
}

// guard turns a middleware's panic into an error.
func (r *runner) guard(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("middleware panic: %v", p)
			r.log.Error("pgqrs: handle middleware panicked", "panic", p)
		}
	}()
	return f()
}

// StepAttempt describes one attempt of a step's function to a
// [StepMiddleware].
type StepAttempt struct {
	Workflow string
	RunID    int64
	Step     string
	Attempt  int // 1 for the first attempt, counting attempts of earlier executions
}

// attemptStep calls body through the Store's step middleware.
func (r *Run) attemptStep(ctx context.Context, name string, attempt int, body func(context.Context) (json.RawMessage, error)) (json.RawMessage, error) {
	mws := r.e.s.cfg.mw.step
	if len(mws) == 0 {
		return body(ctx)
	}
	var out json.RawMessage
	err := chain(ctx, mws, &StepAttempt{Workflow: r.workflow, RunID: r.id, Step: name, Attempt: attempt}, StepMiddleware.InterceptStep,
		func(ctx context.Context) (err error) {
			out, err = body(ctx)
			return err
		})
	return out, err
}

// The enqueue entry points go through these, which run the middleware (when
// there is any) around the unwrapped call.

func (p *Producer) enqueueHooked(ctx context.Context, tx *sql.Tx, payload any, opts []EnqueueOption) (int64, error) {
	if len(p.s.cfg.mw.enqueue) == 0 {
		return p.enqueue(ctx, tx, payload, opts)
	}
	var id int64
	err := p.s.intercepting(ctx, &EnqueueInfo{Queue: p.queue, Count: 1, InTx: tx != nil}, func(ctx context.Context, extra EnqueueOption) (_ []int64, err error) {
		id, err = p.enqueue(ctx, tx, payload, withOption(opts, extra))
		return []int64{id}, err
	})
	return id, err
}

func (p *Producer) enqueueBatchHooked(ctx context.Context, tx *sql.Tx, payloads []any, opts []EnqueueOption) ([]int64, error) {
	if len(p.s.cfg.mw.enqueue) == 0 {
		return p.enqueueBatch(ctx, tx, payloads, opts)
	}
	var ids []int64
	err := p.s.intercepting(ctx, &EnqueueInfo{Queue: p.queue, Count: len(payloads), InTx: tx != nil}, func(ctx context.Context, extra EnqueueOption) (_ []int64, err error) {
		ids, err = p.enqueueBatch(ctx, tx, payloads, withOption(opts, extra))
		return ids, err
	})
	return ids, err
}

func (p *Producer) enqueueJobsHooked(ctx context.Context, tx *sql.Tx, jobs []Job) ([]Enqueued, error) {
	if len(p.s.cfg.mw.enqueue) == 0 {
		return p.enqueueJobs(ctx, tx, jobs)
	}
	var res []Enqueued
	err := p.s.intercepting(ctx, &EnqueueInfo{Queue: p.queue, Count: len(jobs), InTx: tx != nil}, func(ctx context.Context, extra EnqueueOption) (_ []int64, err error) {
		with := jobs
		if extra != nil {
			with = make([]Job, len(jobs))
			for i, j := range jobs {
				with[i] = Job{Payload: j.Payload, Options: withOption(j.Options, extra)}
			}
		}
		if res, err = p.enqueueJobs(ctx, tx, with); err != nil {
			return nil, err
		}
		ids := make([]int64, len(res))
		for i, e := range res {
			ids[i] = e.ID
		}
		return ids, nil
	})
	return res, err
}

func (w *Workflow[In, Out]) triggerHooked(ctx context.Context, s *Store, tx *sql.Tx, in In, opts []EnqueueOption) (int64, error) {
	if s == nil || len(s.cfg.mw.enqueue) == 0 {
		return w.trigger(ctx, s, tx, in, opts)
	}
	var id int64
	err := s.intercepting(ctx, &EnqueueInfo{Queue: w.name, Workflow: w.name, Count: 1, InTx: tx != nil}, func(ctx context.Context, extra EnqueueOption) (_ []int64, err error) {
		id, err = w.trigger(ctx, s, tx, in, withOption(opts, extra))
		return []int64{id}, err
	})
	return id, err
}

func (w *Workflow[In, Out]) triggerBatchHooked(ctx context.Context, s *Store, tx *sql.Tx, ins []In, opts []EnqueueOption) ([]int64, error) {
	if s == nil || len(s.cfg.mw.enqueue) == 0 {
		return w.triggerBatch(ctx, s, tx, ins, opts)
	}
	var ids []int64
	err := s.intercepting(ctx, &EnqueueInfo{Queue: w.name, Workflow: w.name, Count: len(ins), InTx: tx != nil}, func(ctx context.Context, extra EnqueueOption) (_ []int64, err error) {
		ids, err = w.triggerBatch(ctx, s, tx, ins, withOption(opts, extra))
		return ids, err
	})
	return ids, err
}
