package pgqrs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

// Handler processes one message. Returning nil archives the message.
// Returning an error, or panicking, releases it for another attempt after a
// backoff, recording the error text, or dead-letters it when that was its
// last allowed attempt. An error marked [Permanent] (wrapped or not)
// dead-letters the message at once, with the error's text as its last
// error: for work that no retry can fix, such as a payload that does not
// decode (see [HandlerFor]). ctx is cancelled if the consumer loses the
// message's lease, if an admin cancels the message ([Admin.CancelMessage];
// [context.Cause] is then [ErrMessageCancelled]), and when the shutdown
// grace period of [Consumer.Run] ends; in the first two cases the message
// is no longer the loop's, and what the handler returns does not settle it.
type Handler func(ctx context.Context, m *Message) error

// BatchHandler processes messages claimed together. Its result applies to
// all of them, as [Handler]'s does to one.
type BatchHandler func(ctx context.Context, msgs []*Message) error

// HandlerFor adapts fn, which takes a message's payload decoded into T
// (with encoding/json), to a [Handler]. A payload that does not decode into
// T is dead-lettered at once, never retried: fn is not called and the
// message's last error is the decode error, marked [Permanent]. Otherwise
// fn's result is the handler's.
//
//	c.Run(ctx, pgqrs.HandlerFor(func(ctx context.Context, m *pgqrs.Message, e Email) error {
//		return send(ctx, e.To, e.Subject)
//	}), nil)
func HandlerFor[T any](fn func(ctx context.Context, m *Message, v T) error) Handler {
	return func(ctx context.Context, m *Message) error {
		var v T
		if err := json.Unmarshal(m.Payload, &v); err != nil {
			return Permanent(fmt.Errorf("decode payload of message %d as %s: %w", m.ID, reflect.TypeFor[T](), err))
		}
		return fn(ctx, m, v)
	}
}

// RunOptions tune [Consumer.Run]; a nil *RunOptions means all defaults, and
// a zero field means that field's default.
type RunOptions struct {
	// Concurrency is how many handlers run at once. Default 1.
	Concurrency int
	// BatchSize is how many messages one claim takes at most. Run holds up
	// to twice max(Concurrency, BatchSize) claimed messages, so claiming
	// overlaps handling; claimed messages wait in memory until a handler is
	// free (their leases are refreshed first if half gone). With RunBatch it
	// is the size of the batches passed to the handler, and one batch is
	// claimed ahead. Default 10.
	BatchSize int
	// VisibilityTimeout is the lease of each claim. It is extended by this
	// much every third of it while a handler runs, so a slow handler keeps
	// its messages. Default [DefaultVisibilityTimeout].
	VisibilityTimeout time.Duration
	// PollInterval is the longest an idle loop waits before claiming again.
	// New messages wake it sooner: at once when enqueued through the same
	// Store outside a transaction, and on Postgres, from any process, by
	// LISTEN/NOTIFY when the enqueue commits. Delayed messages are found by
	// the poll. Default 1s.
	PollInterval time.Duration
	// MaxAttempts is how many deliveries a message gets. A handler failure
	// on the last one, or a claim past it (the earlier holders crashed),
	// dead-letters the message. Default 5.
	MaxAttempts int
	// Backoff is the delay before a message that failed its attempt-th
	// delivery (1-based) is visible again. Default
	// ExponentialBackoff(time.Second, 10*time.Minute).
	Backoff func(attempt int) time.Duration
	// HeartbeatInterval is how often the worker heartbeats and learns whether
	// an admin interrupted or stopped it. Default [DefaultHeartbeatInterval].
	HeartbeatInterval time.Duration
	// ReclaimAfter is how long another consumer of the queue may go without
	// a heartbeat before this loop declares it dead: at every heartbeat the
	// loop stops the queue's consumers silent for longer and releases their
	// messages, visible at once, as [Admin.ReclaimStale] does for one queue,
	// so a crashed process's messages come back without waiting out their
	// leases. Any number of loops may do this at once; each stale consumer
	// is reclaimed by one. A Run loop heartbeats on its own, whatever its
	// handlers do; a consumer used with [Consumer.Dequeue] heartbeats only
	// when it dequeues (or calls Heartbeat), so one that holds messages
	// longer than ReclaimAfter without either is declared dead and loses
	// them. Set it above every heartbeat interval in use on the queue; it
	// must be at least three of this loop's HeartbeatInterval. Default
	// [DefaultReclaimAfter] or six HeartbeatIntervals, whichever is longer;
	// negative turns the reclaim off. Silence that the loop shares is not
	// held against anyone: a loop whose own heartbeat came more than
	// ReclaimAfter/2 late (the store stalled for it too) declares no one
	// dead for the next ReclaimAfter, and time a reclaim waits for the write
	// lock is added to the silence it requires.
	ReclaimAfter time.Duration
	// ShutdownTimeout bounds how long in-flight handlers may run after ctx is
	// cancelled; then their contexts are cancelled too, and Run waits 5s
	// more before it abandons handlers that ignore that. Default 30s.
	ShutdownTimeout time.Duration
	// RetentionInterval is how often the loop applies its queue's retention
	// policy ([Admin.SetRetention]), at a heartbeat. Default
	// [DefaultRetentionInterval]; negative turns it off for this loop.
	RetentionInterval time.Duration
	// Scheduler makes the loop also fire the Store's schedules, as
	// [Store.RunScheduler] does, until Run returns. Default false.
	Scheduler bool
	// Logger receives the loop's events: errors (handler panics with their
	// stacks, failed settles), warnings (handler errors, lost leases, dead
	// letters), a few infos and debug events, each with the attributes
	// queue, worker and worker_id, and message_id or message_ids where they
	// concern messages. Default: the Store's logger ([WithLogger]), which
	// defaults to [slog.Default]; pass slog.New(slog.DiscardHandler) to
	// silence it.
	Logger *slog.Logger

	workflow string // set by Workflow.Serve: the workflow its deliveries run
}

// ExponentialBackoff returns a backoff that waits base after the first
// failed attempt, doubling with each further attempt up to max, with
// "equal jitter": a delay d becomes a uniformly random value in [d/2, d].
func ExponentialBackoff(base, max time.Duration) func(attempt int) time.Duration {
	return func(attempt int) time.Duration {
		d := base
		for i := 1; i < attempt && d < max; i++ {
			d *= 2
		}
		d = min(d, max)
		if d <= 1 {
			return d
		}
		return d/2 + rand.N(d/2+1)
	}
}

func (o *RunOptions) withDefaults() (RunOptions, error) {
	var r RunOptions
	if o != nil {
		r = *o
	}
	switch {
	case r.Concurrency < 0, r.BatchSize < 0, r.MaxAttempts < 0:
		return r, fmt.Errorf("%w: concurrency, batch size and max attempts must not be negative", ErrInvalidArgument)
	case r.VisibilityTimeout < 0, r.PollInterval < 0, r.HeartbeatInterval < 0, r.ShutdownTimeout < 0:
		return r, fmt.Errorf("%w: durations must not be negative", ErrInvalidArgument)
	case r.VisibilityTimeout != 0 && r.VisibilityTimeout < MinVisibilityTimeout:
		return r, fmt.Errorf("%w: visibility timeout %v is below the minimum %v", ErrInvalidArgument, r.VisibilityTimeout, MinVisibilityTimeout)
	}
	beat := cmpOr(r.HeartbeatInterval, DefaultHeartbeatInterval)
	switch {
	case r.ReclaimAfter == 0:
		r.ReclaimAfter = max(DefaultReclaimAfter, 6*beat)
	case r.ReclaimAfter > 0 && r.ReclaimAfter < 3*beat:
		return r, fmt.Errorf("%w: reclaim after %v is less than three heartbeat intervals (%v): live consumers would be declared dead",
			ErrInvalidArgument, r.ReclaimAfter, 3*beat)
	}
	r.Concurrency = cmpOr(r.Concurrency, 1)
	r.BatchSize = cmpOr(r.BatchSize, 10)
	r.VisibilityTimeout = cmpOr(r.VisibilityTimeout, DefaultVisibilityTimeout)
	r.PollInterval = cmpOr(r.PollInterval, time.Second)
	r.MaxAttempts = cmpOr(r.MaxAttempts, DefaultMaxAttempts)
	r.HeartbeatInterval = cmpOr(r.HeartbeatInterval, DefaultHeartbeatInterval)
	r.ShutdownTimeout = cmpOr(r.ShutdownTimeout, 30*time.Second)
	r.RetentionInterval = cmpOr(r.RetentionInterval, DefaultRetentionInterval)
	if r.Backoff == nil {
		r.Backoff = ExponentialBackoff(time.Second, 10*time.Minute)
	}
	return r, nil
}

// DefaultReclaimAfter is how long a consumer may go without a heartbeat
// before the Run loops of its queue reclaim it, unless
// [RunOptions.ReclaimAfter] says otherwise: twelve default heartbeat
// intervals.
const DefaultReclaimAfter = time.Minute

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Run claims messages and calls h for each, up to Concurrency at a time,
// until ctx is cancelled or the worker is interrupted or stopped from
// outside. See [Handler] for what happens to a message after h returns, and
// [RunOptions] for the defaults.
//
// On ctx cancel Run stops claiming, gives back at once the messages it
// claimed but did not start (their read counts restored), lets running
// handlers finish (bounded by ShutdownTimeout), archives their successes,
// marks the worker stopped and returns nil. If an admin interrupts the
// worker ([Admin.InterruptWorker]), Run does the same but leaves the worker
// suspended and returns an error wrapping [ErrInterrupted]; if the worker is
// declared stopped (for example by [Admin.StopWorker], [Admin.ReclaimStale]
// or another Run loop's reclaim) it returns one wrapping [ErrWorkerStopped],
// at its next claim or heartbeat. At each heartbeat Run also reclaims the
// queue's dead consumers (see [RunOptions.ReclaimAfter]). The worker must be
// ready when Run starts. A Consumer runs one Run or RunBatch at a time.
func (c *Consumer) Run(ctx context.Context, h Handler, opts *RunOptions) error {
	if h == nil {
		return fmt.Errorf("%w: nil handler", ErrInvalidArgument)
	}
	return c.run(ctx, opts, true, func(ctx context.Context, msgs []*Message) error { return h(ctx, msgs[0]) })
}

// RunBatch is like [Consumer.Run] but hands the handler up to BatchSize
// messages claimed together.
func (c *Consumer) RunBatch(ctx context.Context, h BatchHandler, opts *RunOptions) error {
	if h == nil {
		return fmt.Errorf("%w: nil handler", ErrInvalidArgument)
	}
	return c.run(ctx, opts, false, h)
}

// runner is one execution of Run.
type runner struct {
	c      *Consumer
	o      RunOptions
	log    *slog.Logger
	handle func(context.Context, []*Message) error
	single bool
	bg     context.Context // outlives ctx: settle calls during shutdown

	work       chan []*lease // claimed units waiting for a handler
	acks       chan *lease   // successes waiting to be archived together
	archiveNow chan struct{} // closed when no handler will ack any more
	stopOnce   sync.Once
	stop       chan struct{} // closed to stop claiming
	hardStop   chan struct{} // closed when handlers must give up
	stopping   atomic.Bool   // set before the claim loop drains work
	// abandoned is set, under settleMu, when Run stops waiting for its
	// handlers; handlers settle under settleMu's read lock.
	settleMu  sync.RWMutex
	abandoned bool

	mu       sync.Mutex
	held     map[int64]*lease // claimed and not yet settled, by message ID
	leftover []*lease         // claimed, never started, not yet given back
	freed    chan struct{}

	interrupted, stoppedOutside atomic.Bool

	retained time.Time // when retain last applied the queue's policy

	// beatAt and lateAt are when the loop last heartbeated (or started)
	// and last heartbeated late (unix nanos, 0 for never): see mayJudge.
	beatAt, lateAt atomic.Int64
}

func (c *Consumer) run(ctx context.Context, opts *RunOptions, single bool, handle func(context.Context, []*Message) error) error {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	if o.BatchSize > c.s.cfg.maxBatch {
		return fmt.Errorf("run %q: %w: batch size %d, limit %d", c.name, ErrBatchTooLarge, o.BatchSize, c.s.cfg.maxBatch)
	}
	if err := c.usable(); err != nil {
		return err
	}
	// Not under ctx: a cancel that lands during this first statement is a
	// shutdown like any other (the loop sees it at once and stops cleanly),
	// not an error that leaves the worker row half-way.
	if err := c.transition(context.WithoutCancel(ctx), nil, WorkerPolling, WorkerReady); err != nil {
		return fmt.Errorf("run %q: %w", c.name, err)
	}
	r := &runner{
		c: c, o: o, handle: handle, single: single,
		log:        cmpOr(o.Logger, c.s.logger()).With("queue", c.queue, "worker", c.name, "worker_id", c.id),
		bg:         context.WithoutCancel(ctx),
		stop:       make(chan struct{}),
		hardStop:   make(chan struct{}),
		held:       map[int64]*lease{},
		archiveNow: make(chan struct{}),
		freed:      make(chan struct{}, 1),
	}
	if o.workflow != "" {
		r.log = r.log.With("workflow", o.workflow)
	}
	// Claim one batch ahead of the handlers, so the next claim overlaps the
	// archive of the last batch instead of waiting for it.
	limit := 2 * max(o.Concurrency, o.BatchSize)
	if !single {
		limit = (o.Concurrency + 1) * o.BatchSize
	}
	r.work = make(chan []*lease, limit)
	r.acks = make(chan *lease, limit)
	wake, unsubscribe := c.s.subscribe(queueWake(c.queueID))
	defer unsubscribe()
	c.s.startListener(r.log)

	var beat sync.WaitGroup
	beatDone := make(chan struct{})
	r.beatAt.Store(time.Now().UnixNano()) // a first beat held up is late too
	chores := make(chan struct{}, 1)
	beat.Go(func() { r.heartbeat(beatDone, chores) })
	beat.Go(func() { r.housekeep(beatDone, chores) })
	beat.Go(func() { r.keepLeases(beatDone) })
	var archiver sync.WaitGroup
	archiver.Go(r.archive)
	var handlers sync.WaitGroup
	for range o.Concurrency {
		handlers.Go(r.serve)
	}

	if o.Scheduler {
		sctx, stopScheduler := context.WithCancel(ctx)
		var scheduler sync.WaitGroup
		scheduler.Go(func() { c.s.runScheduler(sctx, r.log) })
		defer scheduler.Wait()
		defer stopScheduler()
	}

	r.log.Debug("pgqrs: run started", "concurrency", o.Concurrency, "batch", o.BatchSize)
	r.claimLoop(ctx, limit, wake)

	// Shut down: stop handing out work, give back what never started, let
	// running handlers finish within the grace period.
	r.stopping.Store(true)
	r.drainWork()
	close(r.work)
	r.unclaimLeftover() // at once, not after the running handlers
	grace := time.AfterFunc(o.ShutdownTimeout, func() { close(r.hardStop) })
	finished := make(chan struct{})
	go func() { handlers.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(o.ShutdownTimeout + c.s.hooks.abandonAfter()):
		// Handlers that ignore their cancelled context are abandoned: their
		// messages are released by the final Shutdown, or come back when
		// their leases expire (interrupted: no Shutdown). Whatever they
		// return later is dropped (see process): a later Run of this
		// consumer may hold their messages by then. Settles in flight finish
		// first.
		r.settleMu.Lock()
		r.abandoned = true
		r.settleMu.Unlock()
		r.log.Error("pgqrs: handlers did not return after their context was cancelled; abandoning them")
	}
	grace.Stop()
	close(r.archiveNow)
	archiver.Wait()
	r.unclaimLeftover()
	close(beatDone)
	beat.Wait()

	switch {
	case r.stoppedOutside.Load():
		return fmt.Errorf("run %q: %w", c.name, ErrWorkerStopped)
	case r.interrupted.Load():
		if err := c.transition(r.bg, nil, WorkerSuspended, WorkerInterrupted, WorkerPolling, WorkerReady, WorkerSuspended); err != nil {
			return fmt.Errorf("run %q: %w", c.name, err)
		}
		return fmt.Errorf("run %q: %w", c.name, ErrInterrupted)
	}
	if err := c.Shutdown(r.bg); err != nil {
		return fmt.Errorf("run %q: %w", c.name, err)
	}
	r.log.Debug("pgqrs: run stopped")
	return nil
}

func (r *runner) requestStop() { r.stopOnce.Do(func() { close(r.stop) }) }

// claimLoop claims while there is room, and waits for a wakeup, the poll
// interval or room otherwise, until ctx is done or a stop is requested.
func (r *runner) claimLoop(ctx context.Context, limit int, wake <-chan struct{}) {
	// Exhausted messages are dead-lettered after track, which knows which
	// claims are new deliveries: a claim that only renewed the lease of a
	// delivery still running here must not dead-letter it under its handler.
	cfg := dequeueConfig{vt: r.o.VisibilityTimeout}
	idle := time.NewTimer(0)
	defer idle.Stop()
	wait := func(ch <-chan struct{}, d time.Duration) {
		idle.Reset(d)
		select {
		case <-ch:
		case <-idle.C:
		case <-ctx.Done():
		case <-r.stop:
		}
	}
	for ctx.Err() == nil {
		select {
		case <-r.stop:
			return
		default:
		}
		r.mu.Lock()
		free := limit - len(r.held)
		r.mu.Unlock()
		if free <= 0 {
			wait(r.freed, time.Hour)
			continue
		}
		n := min(r.o.BatchSize, free)
		// The claim itself outlives ctx: a claim cut off mid-flight could
		// lease messages nobody will process.
		msgs, pace, err := r.c.claimPaced(r.bg, n, cfg)
		if errors.Is(err, ErrClosed) {
			r.log.Error("pgqrs: store closed; stopping")
			return
		}
		if r.refused(err) {
			return
		}
		if err != nil {
			r.log.Error("pgqrs: claim failed", "err", err)
			wait(nil, r.o.PollInterval)
			continue
		}
		claimed := len(msgs)
		fresh := r.dropExhausted(r.track(msgs))
		r.c.s.hooks.tracked(msgIDs(msgs))
		if len(fresh) > 0 {
			if r.single {
				for _, l := range fresh {
					r.work <- []*lease{l}
				}
			} else {
				r.work <- fresh
			}
		}
		switch {
		case claimed < n && pace > 0:
			// The queue's rate window is full: nothing can be claimed before
			// the next one opens, whatever arrives meanwhile.
			r.log.Debug("pgqrs: rate limited", "next_window_in", pace)
			wait(nil, pace)
		case claimed < n:
			r.log.Debug("pgqrs: idle")
			wait(wake, r.o.PollInterval)
		}
	}
}

// refused reports whether a claim failed because the worker may not claim
// (stopped, suspended or interrupted from outside), and then requests the
// stop the heartbeat would request.
func (r *runner) refused(err error) bool {
	switch {
	case errors.Is(err, ErrWorkerStopped):
		r.log.Warn("pgqrs: worker stopped from outside; stopping", "err", err)
		r.stoppedOutside.Store(true)
	case errors.Is(err, ErrWorkerSuspended):
		if !r.interrupted.Swap(true) {
			r.log.Info("pgqrs: worker interrupted; finishing current work")
		}
	default:
		return false
	}
	r.requestStop()
	return true
}

// reclaim stops the queue's other consumers that missed their heartbeats
// for ReclaimAfter and releases their messages (see [RunOptions]).
func (r *runner) reclaim() {
	if r.o.ReclaimAfter < 0 {
		return
	}
	workers, messages, err := r.c.s.reclaimQueue(r.bg, r.c.queueID, r.c.id, r.o.ReclaimAfter)
	switch {
	case err != nil:
		r.log.Error("pgqrs: reclaim of stale consumers failed", "err", err)
	case workers > 0:
		r.log.Warn("pgqrs: reclaimed stale consumers", "workers", workers, "messages", messages, "silent_for", r.o.ReclaimAfter)
		if messages > 0 {
			r.c.s.wake(queueWake(r.c.queueID))
		}
	}
}

// heartbeat beats every HeartbeatInterval until done, requests a stop
// when an admin interrupted, suspended or stopped the worker, and after
// each beat asks housekeep for a turn.
func (r *runner) heartbeat(done <-chan struct{}, chores chan<- struct{}) {
	t := time.NewTicker(r.o.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		err := r.c.Heartbeat(r.bg)
		switch st := r.c.status.Load().(WorkerStatus); {
		case errors.Is(err, ErrClosed):
			r.requestStop()
		case errors.Is(err, ErrWorkerStopped) || errors.Is(err, ErrWorkerNotFound):
			r.log.Warn("pgqrs: worker stopped from outside; stopping", "err", err)
			r.stoppedOutside.Store(true)
			r.requestStop()
		case err != nil:
			r.log.Error("pgqrs: heartbeat failed", "err", err)
		case st == WorkerInterrupted || st == WorkerSuspended:
			if !r.interrupted.Swap(true) {
				r.log.Info("pgqrs: worker interrupted; finishing current work")
			}
			r.requestStop()
		default:
			now := time.Now()
			if prev := r.beatAt.Load(); r.o.ReclaimAfter > 0 && now.Sub(time.Unix(0, prev)) > r.o.ReclaimAfter/2 {
				r.log.Warn("pgqrs: heartbeat late; judging no consumer dead for a while",
					"since_last", now.Sub(time.Unix(0, prev)).Round(time.Millisecond))
				r.lateAt.Store(now.UnixNano())
			}
			r.beatAt.Store(now.UnixNano())
			select {
			case chores <- struct{}{}:
			default: // housekeep is busy; the next beat asks again
			}
		}
	}
}

// mayJudge reports whether this loop may declare other consumers dead now:
// its own last beat is less than ReclaimAfter/2 old, and none of its beats
// in the last ReclaimAfter came more than ReclaimAfter/2 after the one
// before. A loop that could not write for that long cannot tell a dead
// consumer from one held up with it (a stalled server, a stolen write
// lock), so it judges only once it has itself been heard throughout a whole
// ReclaimAfter.
func (r *runner) mayJudge() bool {
	now := time.Now()
	beat, late := r.beatAt.Load(), r.lateAt.Load()
	return beat != 0 && now.Sub(time.Unix(0, beat)) < r.o.ReclaimAfter/2 &&
		(late == 0 || now.Sub(time.Unix(0, late)) >= r.o.ReclaimAfter)
}

// housekeep runs the chores heartbeat asks for: the reclaim of dead
// consumers when the loop may judge, and retention. They run apart from the
// heartbeat so that a slow chore (a reclaim waiting for a lock, a partition
// drop) never delays the beats that keep this loop alive.
func (r *runner) housekeep(done <-chan struct{}, chores <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-chores:
			if r.mayJudge() {
				r.reclaim()
			}
			r.retain()
		}
	}
}
