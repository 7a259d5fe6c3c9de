package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// job is a Run loop (Consumer.Run, Workflow.Serve) running in a goroutine
// while Python waits for it in short slices (so that Ctrl-C and a stop event
// are seen) and stops it by cancelling its context.
type job struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	feed   *feed // the messages Python threads take, for Consumer.Run
}

func startJob(run func(ctx context.Context) error) uint64 { return startFed(nil, run) }

// startFed is startJob for a loop whose messages f hands to Python. Its
// handle stays until job.release, so that the threads taking messages can
// see the end after job.wait has.
func startFed(f *feed, run func(ctx context.Context) error) uint64 {
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{cancel: cancel, done: make(chan struct{}), feed: f}
	go func() {
		defer close(j.done)
		defer func() {
			if r := recover(); r != nil {
				j.err = &internalError{msg: fmt.Sprintf("panic in a run loop: %v", r)}
			}
		}()
		j.err = run(ctx)
	}()
	return putHandle(j)
}

// runArgs are RunOptions as Python passes them: durations in seconds.
type runArgs struct {
	Token             uint64       `json:"t"`
	Concurrency       int          `json:"concurrency"`
	BatchSize         int          `json:"batch_size"`
	VisibilityTimeout float64      `json:"visibility_timeout"`
	PollInterval      float64      `json:"poll_interval"`
	MaxAttempts       int          `json:"max_attempts"`
	Backoff           *backoffArgs `json:"backoff"`
	HeartbeatInterval float64      `json:"heartbeat_interval"`
	ReclaimAfter      float64      `json:"reclaim_after"`
	ShutdownTimeout   float64      `json:"shutdown_timeout"`
	Scheduler         bool         `json:"scheduler"`
}

// backoffArgs is a backoff: a fixed delay, or exponential from base to max.
type backoffArgs struct {
	Fixed *float64 `json:"fixed"`
	Base  float64  `json:"base"`
	Max   float64  `json:"max"`
}

func (b *backoffArgs) fn() (func(int) time.Duration, error) {
	switch {
	case b == nil:
		return nil, nil
	case b.Fixed != nil:
		if *b.Fixed < 0 {
			return nil, fmt.Errorf("%w: backoff must not be negative", pgqrs.ErrInvalidArgument)
		}
		d := seconds(*b.Fixed)
		return func(int) time.Duration { return d }, nil
	case b.Base <= 0 || b.Max < b.Base:
		return nil, fmt.Errorf("%w: exponential backoff needs 0 < base <= max, got %g and %g", pgqrs.ErrInvalidArgument, b.Base, b.Max)
	}
	return pgqrs.ExponentialBackoff(seconds(b.Base), seconds(b.Max)), nil
}

func (a runArgs) options() (*pgqrs.RunOptions, error) {
	backoff, err := a.Backoff.fn()
	if err != nil {
		return nil, err
	}
	return &pgqrs.RunOptions{
		Concurrency: a.Concurrency, BatchSize: a.BatchSize,
		VisibilityTimeout: seconds(a.VisibilityTimeout), PollInterval: seconds(a.PollInterval),
		MaxAttempts: a.MaxAttempts, Backoff: backoff, HeartbeatInterval: seconds(a.HeartbeatInterval),
		ReclaimAfter: seconds(a.ReclaimAfter), ShutdownTimeout: seconds(a.ShutdownTimeout), Scheduler: a.Scheduler,
	}, nil
}

// retryArgs is a RetryPolicy.
type retryArgs struct {
	MaxRetries     int          `json:"max_retries"`
	Backoff        *backoffArgs `json:"backoff"`
	RetryAllErrors bool         `json:"retry_all_errors"`
}

func (a *retryArgs) policy() (pgqrs.RetryPolicy, error) {
	if a == nil {
		return pgqrs.RetryPolicy{}, nil
	}
	b, err := a.Backoff.fn()
	return pgqrs.RetryPolicy{MaxRetries: a.MaxRetries, Backoff: b, RetryAllErrors: a.RetryAllErrors}, err
}

// runCtx is one execution of a Python workflow body: what run.step and
// run.sleep need, and the Go errors handed to Python meanwhile.
type runCtx struct {
	ctx  context.Context
	run  *pgqrs.Run
	errs errTable
}

// pyWorkflow is a workflow whose body is the Python function token.
func pyWorkflow(name string, token uint64, retry pgqrs.RetryPolicy) *pgqrs.Workflow[json.RawMessage, json.RawMessage] {
	prefix := `{"t":` + strconv.FormatUint(token, 10) + `,"w":` + quote(name) + `,"id":`
	return pgqrs.NewWorkflow(name, func(ctx context.Context, run *pgqrs.Run, in json.RawMessage) (json.RawMessage, error) {
		rc := &runCtx{ctx: ctx, run: run}
		rh := putHandle(rc)
		defer dropHandle(rh)
		data := fmt.Appendf([]byte(prefix), `%d,"r":%d,"in":%s}`, run.ID(), rh, in)
		return callPython(data, &rc.errs)
	}).WithRetry(retry)
}

// triggerOnly is a workflow used to trigger runs and read results; its body
// is never run here.
func triggerOnly(name string) *pgqrs.Workflow[json.RawMessage, json.RawMessage] {
	return pgqrs.NewWorkflow(name, func(context.Context, *pgqrs.Run, json.RawMessage) (json.RawMessage, error) {
		return nil, errors.New("pgqrs (python binding): this workflow is not served here")
	})
}

// jobOf is the running loop named by the arguments' "j", and its handle.
func jobOf(in []byte) (*job, uint64, error) {
	a, err := args[struct {
		J uint64 `json:"j"`
	}](in)
	if err != nil {
		return nil, 0, err
	}
	j, err := lookup[*job](a.J, "running loop")
	return j, a.J, err
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

var workOps = map[string]op{
	"consumer.run": func(in []byte) (any, error) {
		a, err := args[struct {
			C uint64 `json:"c"`
			runArgs
		}](in)
		if err != nil {
			return nil, err
		}
		c, err := lookup[*pgqrs.Consumer](a.C, "consumer")
		if err != nil {
			return nil, err
		}
		o, err := a.runArgs.options()
		if err != nil {
			return nil, err
		}
		// Python runs Concurrency threads, each taking up to an even share
		// of a batch at a time; the loop has a handler waiting for each
		// message it hands out, enough to keep a whole batch on offer.
		if o.Concurrency < 0 || o.BatchSize < 0 {
			return nil, fmt.Errorf("%w: concurrency %d and batch size %d must not be negative", pgqrs.ErrInvalidArgument, o.Concurrency, o.BatchSize)
		}
		o.Concurrency, o.BatchSize = cmp.Or(o.Concurrency, 1), cmp.Or(o.BatchSize, 10)
		o.Concurrency = max(o.Concurrency, o.BatchSize)
		f := newFeed()
		return startFed(f, func(ctx context.Context) error { return c.Run(ctx, f.handle, o) }), nil
	},
	"job.wait": func(in []byte) (any, error) {
		a, err := args[struct {
			J       uint64  `json:"j"`
			Timeout float64 `json:"timeout"`
		}](in)
		if err != nil {
			return nil, err
		}
		j, err := lookup[*job](a.J, "running loop")
		if err != nil {
			return nil, err
		}
		t := time.NewTimer(seconds(a.Timeout))
		defer t.Stop()
		select {
		case <-j.done:
			if j.feed == nil {
				dropHandle(a.J)
			}
			return true, j.err
		case <-t.C:
			return false, nil
		}
	},
	"job.release": func(in []byte) (any, error) {
		j, h, err := jobOf(in)
		if err != nil {
			return nil, err
		}
		select {
		case <-j.done:
			dropHandle(h)
			return nil, nil
		default:
			return nil, fmt.Errorf("%w: loop %d is still running", pgqrs.ErrInvalidArgument, h)
		}
	},
	"job.stop": func(in []byte) (any, error) {
		j, _, err := jobOf(in)
		if err != nil {
			return nil, err
		}
		j.cancel()
		return nil, nil
	},
	"workflow.serve": func(in []byte) (any, error) {
		a, err := args[struct {
			H     uint64     `json:"h"`
			Name  string     `json:"name"`
			Retry *retryArgs `json:"retry"`
			Wname *string    `json:"worker_name"`
			runArgs
		}](in)
		if err != nil {
			return nil, err
		}
		s, err := lookup[*pgqrs.Store](a.H, "store")
		if err != nil {
			return nil, err
		}
		o, err := a.runArgs.options()
		if err != nil {
			return nil, err
		}
		p, err := a.Retry.policy()
		if err != nil {
			return nil, err
		}
		var wo []pgqrs.WorkerOption
		if a.Wname != nil {
			wo = append(wo, pgqrs.WithWorkerName(*a.Wname))
		}
		w := pyWorkflow(a.Name, a.Token, p)
		// Register now, so that a bad name or a queue in the way is the
		// caller's error at once rather than the loop's.
		if err := w.Register(context.Background(), s); err != nil {
			return nil, err
		}
		return startJob(func(ctx context.Context) error { return w.Serve(ctx, s, o, wo...) }), nil
	},
	"workflow.register": func(in []byte) (any, error) {
		a, err := args[struct {
			H    uint64 `json:"h"`
			Name string `json:"name"`
		}](in)
		if err != nil {
			return nil, err
		}
		s, err := lookup[*pgqrs.Store](a.H, "store")
		if err != nil {
			return nil, err
		}
		return nil, triggerOnly(a.Name).Register(context.Background(), s)
	},
	"workflow.trigger": func(in []byte) (any, error) {
		a, err := args[struct {
			H      uint64            `json:"h"`
			Name   string            `json:"name"`
			Input  json.RawMessage   `json:"input"`
			Inputs []json.RawMessage `json:"inputs"`
			Batch  bool              `json:"batch"`
			Opts   enqueueArgs       `json:"opts"`
		}](in)
		if err != nil {
			return nil, err
		}
		s, err := lookup[*pgqrs.Store](a.H, "store")
		if err != nil {
			return nil, err
		}
		w := triggerOnly(a.Name)
		if a.Batch {
			return w.TriggerBatch(context.Background(), s, a.Inputs, a.Opts.options()...)
		}
		return w.Trigger(context.Background(), s, a.Input, a.Opts.options()...)
	},
	"workflow.result": func(in []byte) (any, error) {
		a, err := args[struct {
			H       uint64  `json:"h"`
			Name    string  `json:"name"`
			ID      int64   `json:"id"`
			Timeout float64 `json:"timeout"`
		}](in)
		if err != nil {
			return nil, err
		}
		s, err := lookup[*pgqrs.Store](a.H, "store")
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), seconds(a.Timeout))
		defer cancel()
		out, err := triggerOnly(a.Name).Result(ctx, s, a.ID)
		if err != nil && ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return map[string]any{"done": false}, nil
		}
		if err != nil {
			return nil, err
		}
		return map[string]any{"done": true, "output": out}, nil
	},
	"runs.get": runOp(func(ctx context.Context, r *pgqrs.Runs, id int64) (any, error) { return r.Get(ctx, id) }),
	"runs.cancel": runOp(func(ctx context.Context, r *pgqrs.Runs, id int64) (any, error) {
		return r.Cancel(ctx, id)
	}),
	"runs.resume": runOp(func(ctx context.Context, r *pgqrs.Runs, id int64) (any, error) { return nil, r.Resume(ctx, id) }),
	"runs.retry":  runOp(func(ctx context.Context, r *pgqrs.Runs, id int64) (any, error) { return nil, r.Retry(ctx, id) }),
	"runs.list": func(in []byte) (any, error) {
		a, err := args[struct {
			H        uint64 `json:"h"`
			Workflow string `json:"workflow"`
			Status   string `json:"status"`
			Before   int64  `json:"before"`
			Limit    int    `json:"limit"`
		}](in)
		if err != nil {
			return nil, err
		}
		s, err := lookup[*pgqrs.Store](a.H, "store")
		if err != nil {
			return nil, err
		}
		return s.Runs().List(context.Background(), pgqrs.RunFilter{Workflow: a.Workflow, Status: pgqrs.RunStatus(a.Status), Before: a.Before, Limit: a.Limit})
	},
	"run.step": func(in []byte) (any, error) {
		a, err := args[struct {
			R     uint64     `json:"r"`
			Name  string     `json:"name"`
			Token uint64     `json:"t"`
			Retry *retryArgs `json:"retry"`
		}](in)
		if err != nil {
			return nil, err
		}
		rc, err := lookup[*runCtx](a.R, "workflow run (run.step is for the workflow body while it runs)")
		if err != nil {
			return nil, err
		}
		var so []pgqrs.StepOption
		if a.Retry != nil {
			p, err := a.Retry.policy()
			if err != nil {
				return nil, err
			}
			so = append(so, pgqrs.StepRetry(p))
		}
		data := []byte(`{"t":` + strconv.FormatUint(a.Token, 10) + `}`)
		out, err := pgqrs.Step(rc.ctx, rc.run, a.Name, func(ctx context.Context) (json.RawMessage, error) {
			return callPython(data, &rc.errs)
		}, so...)
		if err != nil {
			return nil, rc.errs.keep(err)
		}
		return out, nil
	},
	"run.sleep": func(in []byte) (any, error) {
		a, err := args[struct {
			R       uint64  `json:"r"`
			Name    string  `json:"name"`
			Seconds float64 `json:"seconds"`
		}](in)
		if err != nil {
			return nil, err
		}
		rc, err := lookup[*runCtx](a.R, "workflow run (run.sleep is for the workflow body while it runs)")
		if err != nil {
			return nil, err
		}
		return nil, rc.errs.keep(pgqrs.Sleep(rc.ctx, rc.run, a.Name, seconds(a.Seconds)))
	},
}

func runOp(fn func(ctx context.Context, r *pgqrs.Runs, id int64) (any, error)) op {
	return func(in []byte) (any, error) {
		a, err := args[struct {
			H  uint64 `json:"h"`
			ID int64  `json:"id"`
		}](in)
		if err != nil {
			return nil, err
		}
		s, err := lookup[*pgqrs.Store](a.H, "store")
		if err != nil {
			return nil, err
		}
		return fn(context.Background(), s.Runs(), a.ID)
	}
}
