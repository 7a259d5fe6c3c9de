package pgqrs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Handler processes one message. Returning nil archives the message.
// Returning an error, or panicking, releases it for another attempt after a
// backoff, recording the error text, or dead-letters it when that was its
// last allowed attempt. ctx is cancelled if the consumer loses the message's
// lease, and when the shutdown grace period of [Consumer.Run] ends.
type Handler func(ctx context.Context, m *Message) error

// BatchHandler processes messages claimed together. Its result applies to
// all of them, as [Handler]'s does to one.
type BatchHandler func(ctx context.Context, msgs []*Message) error

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
	// negative turns the reclaim off.
	ReclaimAfter time.Duration
	// ShutdownTimeout bounds how long in-flight handlers may run after ctx is
	// cancelled; then their contexts are cancelled too, and Run waits 5s
	// more before it abandons handlers that ignore that. Default 30s.
	ShutdownTimeout time.Duration
	// Logger receives the loop's events: errors (handler panics with their
	// stacks, failed settles), warnings (handler errors, lost leases, dead
	// letters), a few infos and debug events. Default [slog.Default]; pass
	// slog.New(slog.DiscardHandler) to silence it.
	Logger *slog.Logger
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
	if r.Backoff == nil {
		r.Backoff = ExponentialBackoff(time.Second, 10*time.Minute)
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
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

	mu       sync.Mutex
	held     map[int64]*lease // claimed and not yet settled, by message ID
	leftover []*lease         // claimed, never started, not yet given back
	freed    chan struct{}

	interrupted, stoppedOutside atomic.Bool
}

// lease is the runner's record of one delivery: one claim of a message,
// from the claim until the loop forgets it. A message given back and claimed
// again is a new delivery with a new lease, even while the loop still holds
// the old one; only the current lease of an ID (held[ID]) may settle it.
// Fields other than m are guarded by runner.mu.
type lease struct {
	m      *Message
	lost   bool               // an extension found the message held by another consumer, or by none
	gone   bool               // the message no longer exists: settled outside the loop (by its handler's ArchiveTx, ...) or purged
	done   bool               // a settle statement for this delivery was sent: a claim of its ID is a new delivery
	cancel context.CancelFunc // set while a handler runs
}

func leaseIDs(ls []*lease) []int64 {
	out := make([]int64, len(ls))
	for i, l := range ls {
		out[i] = l.m.ID
	}
	return out
}

func leaseMessages(ls []*lease) []*Message {
	out := make([]*Message, len(ls))
	for i, l := range ls {
		out[i] = l.m
	}
	return out
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
	if err := c.transition(ctx, nil, WorkerPolling, WorkerReady); err != nil {
		return fmt.Errorf("run %q: %w", c.name, err)
	}
	r := &runner{
		c: c, o: o, handle: handle, single: single,
		log:        o.Logger.With("queue", c.queue, "worker", c.name),
		bg:         context.WithoutCancel(ctx),
		stop:       make(chan struct{}),
		hardStop:   make(chan struct{}),
		held:       map[int64]*lease{},
		archiveNow: make(chan struct{}),
		freed:      make(chan struct{}, 1),
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
	beat.Go(func() { r.heartbeat(beatDone) })
	beat.Go(func() { r.keepLeases(beatDone) })
	var archiver sync.WaitGroup
	archiver.Go(r.archive)
	var handlers sync.WaitGroup
	for range o.Concurrency {
		handlers.Go(r.serve)
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
	case <-time.After(o.ShutdownTimeout + abandonAfter):
		// Handlers that ignore their cancelled context are abandoned: the
		// final Shutdown releases their messages, which may then run again.
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
	cfg := dequeueConfig{vt: r.o.VisibilityTimeout, maxAttempts: r.o.MaxAttempts}
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
		msgs, err := r.c.claim(r.bg, n, cfg)
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
		fresh := r.track(msgs)
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
		if claimed < n {
			r.log.Debug("pgqrs: idle")
			wait(wake, r.o.PollInterval)
		}
	}
}

// track records claimed messages as held and returns their leases. A claim
// returns an ID the loop still holds in two cases. If the old delivery is
// being settled (given back after a failure or for a workflow's timer, and
// claimed again before the loop forgot it), or its lease was lost to another
// consumer that then gave it back, the claim is a new delivery and replaces
// the old lease. If the old delivery is still running with its lease kept
// (its lease ran out while an extension failed, and this loop claimed it
// again), the claim only renewed that lease: one delivery never goes to two
// handlers.
func (r *runner) track(msgs []*Message) []*lease {
	r.mu.Lock()
	defer r.mu.Unlock()
	fresh := make([]*lease, 0, len(msgs))
	for _, m := range msgs {
		if old := r.held[m.ID]; old != nil && !old.done && !old.lost && !old.gone {
			continue
		}
		l := &lease{m: m}
		r.held[m.ID] = l
		fresh = append(fresh, l)
	}
	return fresh
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

// heartbeat beats every HeartbeatInterval until done, requests a stop when
// an admin interrupted, suspended or stopped the worker, and reclaims the
// queue's dead consumers.
func (r *runner) heartbeat(done <-chan struct{}) {
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
			r.reclaim()
		}
	}
}

// serve runs handlers for claimed units until work is closed.
func (r *runner) serve() {
	for unit := range r.work {
		if r.stopping.Load() {
			r.mu.Lock()
			r.leftover = append(r.leftover, unit...)
			r.mu.Unlock()
			continue
		}
		r.process(unit)
	}
}

// drainWork takes the units no handler started.
func (r *runner) drainWork() {
	for {
		select {
		case unit := <-r.work:
			r.mu.Lock()
			r.leftover = append(r.leftover, unit...)
			r.mu.Unlock()
		default:
			return
		}
	}
}

// settled forgets deliveries that were archived, released, dead-lettered,
// given back or lost, making room for more claims. A lease already replaced
// by a newer delivery of the same message is not the current one and
// changes nothing.
func (r *runner) settled(ls []*lease) {
	r.mu.Lock()
	for _, l := range ls {
		if r.held[l.m.ID] == l {
			delete(r.held, l.m.ID)
		}
	}
	r.mu.Unlock()
	select {
	case r.freed <- struct{}{}:
	default:
	}
}

// settling marks the current leases among ls done (a settle statement for
// them is about to be sent) and returns them; the rest (lost, gone or
// replaced) are the loop's no longer.
func (r *runner) settling(ls []*lease) (mine, others []*lease) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range ls {
		if r.held[l.m.ID] == l && !l.lost && !l.gone {
			l.done = true
			mine = append(mine, l)
		} else {
			others = append(others, l)
		}
	}
	return mine, others
}

// process runs the handler on one unit, then settles it. Its leases are
// kept by keepLeases; a message whose lease was lost while it waited is
// dropped without running the handler, and so is one that no longer exists.
func (r *runner) process(unit []*lease) {
	hctx, cancel := context.WithCancel(r.bg)
	defer cancel()
	var skip, keep []*lease
	r.mu.Lock()
	for _, l := range unit {
		if r.held[l.m.ID] != l || l.lost || l.gone {
			skip = append(skip, l)
			continue
		}
		l.cancel = cancel
		keep = append(keep, l)
	}
	r.mu.Unlock()
	if len(skip) > 0 {
		r.log.Warn("pgqrs: lease lost before the handler started; skipping", "ids", leaseIDs(skip))
		r.settled(skip)
	}
	if len(keep) == 0 {
		return
	}
	err := r.call(hctx, leaseMessages(keep))
	if err == nil && hctx.Err() != nil {
		// The lease was lost, or the grace period ended, while the handler
		// ran; an archive would fail the fence anyway.
		err = fmt.Errorf("handler context cancelled: %w", hctx.Err())
	}
	r.mu.Lock()
	for _, l := range keep {
		l.cancel = nil
	}
	r.mu.Unlock()
	if err == nil {
		for _, l := range keep {
			r.acks <- l
		}
		return
	}
	// From here the unit is given back. Leases lost or gone while the
	// handler ran are not this loop's to settle; the others are marked done
	// first, so a claim that returns one of them before settled runs is
	// treated as the new delivery it is.
	mine, others := r.settling(keep)
	if len(others) > 0 {
		r.settled(others)
	}
	if len(mine) == 0 {
		return
	}
	ids := leaseIDs(mine)
	var later *rescheduleError
	if errors.As(err, &later) {
		// A workflow run waits for a timer: give the message back for then,
		// without counting this delivery as an attempt.
		if _, err := r.c.settle(r.bg, nil, "reschedule", r.c.s.d.message.reschedule, ids, r.c.s.d.secondsArg(later.delay)); err != nil {
			r.log.Error("pgqrs: reschedule failed; the message returns when its lease expires", "ids", ids, "err", err)
		} else {
			if later.after != nil {
				later.after(r.bg)
			}
			// A short wait ends sooner than the next poll would notice.
			if later.delay > 0 && later.delay < time.Minute {
				s, queueID := r.c.s, r.c.queueID
				time.AfterFunc(later.delay, func() { s.wake(queueWake(queueID)) })
			}
		}
		r.c.s.hooks.givenBack(ids)
		r.settled(mine)
		return
	}
	r.fail(leaseMessages(mine), err)
	r.c.s.hooks.givenBack(ids)
	r.settled(mine)
}

// keepLeases extends the lease of every claimed, unsettled message (waiting
// or running) every third of the visibility timeout, in batch statements,
// until done. A message another consumer now holds is marked lost and its
// handler's context cancelled. When the shutdown grace period ends it
// cancels every running handler.
func (r *runner) keepLeases(done <-chan struct{}) {
	vt := r.o.VisibilityTimeout
	t := time.NewTicker(max(vt/3, time.Millisecond))
	defer t.Stop()
	hardStop := r.hardStop
	for {
		select {
		case <-done:
			return
		case <-hardStop:
			hardStop = nil
			r.mu.Lock()
			for _, l := range r.held {
				if l.cancel != nil {
					l.cancel()
				}
			}
			r.mu.Unlock()
			r.log.Warn("pgqrs: shutdown grace period over; cancelled running handlers")
			continue
		case <-t.C:
		}
		r.mu.Lock()
		ls := make([]*lease, 0, len(r.held))
		for _, l := range r.held {
			if !l.lost && !l.gone && !l.done {
				ls = append(ls, l)
			}
		}
		r.mu.Unlock()
		if len(ls) == 0 {
			continue
		}
		ok, err := r.c.settleAll(r.bg, "extend visibility of", r.c.s.d.message.extend, leaseIDs(ls), r.c.s.d.secondsArg(vt))
		if err != nil {
			r.log.Warn("pgqrs: lease extension failed", "err", err)
			continue
		}
		var missed []*lease
		for i, held := range ok {
			if !held {
				missed = append(missed, ls[i])
			}
		}
		if len(missed) > 0 {
			r.lostOrGone(missed)
		}
	}
}

// lostOrGone sorts out deliveries whose lease the loop found it no longer
// holds. A message that still exists is held by another consumer (or by
// none): its lease is lost, and its handler's context is cancelled. One that
// no longer exists was settled outside the loop, typically by its own
// handler with [Consumer.ArchiveTx] or [Consumer.DeleteTx]: it is gone, which
// is no failure, and its handler runs on.
func (r *runner) lostOrGone(ls []*lease) {
	exist, err := r.c.existing(r.bg, leaseIDs(ls))
	if err != nil {
		r.log.Warn("pgqrs: checking messages whose lease was not renewed failed", "ids", leaseIDs(ls), "err", err)
		return // the next extension asks again
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range ls {
		switch {
		case l.lost || l.gone || l.done || r.held[l.m.ID] != l:
			// settled or replaced meanwhile
		case exist[l.m.ID]:
			l.lost = true
			r.log.Warn("pgqrs: lease lost; cancelling its handler", "id", l.m.ID)
			if l.cancel != nil {
				l.cancel()
			}
		default:
			l.gone = true
			r.log.Debug("pgqrs: message settled outside the loop", "id", l.m.ID)
		}
	}
}

// errorText is err's text as every backend stores it: valid UTF-8 without
// NUL bytes (Postgres rejects both), at most 4,000 bytes, cut on a rune
// boundary.
func errorText(err error) string {
	text := strings.ToValidUTF8(strings.ReplaceAll(err.Error(), "\x00", ""), "\uFFFD")
	if len(text) > 4000 {
		cut := 4000
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut] + "…"
	}
	return text
}

// backoff is the retry delay after a failed attempt; a panicking or
// negative user backoff counts as no delay.
func (r *runner) backoff(attempt int) (d time.Duration) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("pgqrs: Backoff panicked; retrying without delay", "panic", p)
			d = 0
		}
	}()
	return max(r.o.Backoff(attempt), 0)
}

// call runs the handler, turning a panic into an error.
func (r *runner) call(ctx context.Context, msgs []*Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
			r.log.Error("pgqrs: handler panicked", "ids", msgIDs(msgs), "panic", p, "stack", string(debug.Stack()))
		}
	}()
	return r.handle(ctx, msgs)
}

// fail releases failed messages after their backoff, recording the error,
// and dead-letters those that used their last attempt.
func (r *runner) fail(msgs []*Message, herr error) {
	text := errorText(herr)
	byAttempt := map[int][]int64{}
	var dead []int64
	for _, m := range msgs {
		if m.ReadCount >= r.o.MaxAttempts {
			dead = append(dead, m.ID)
		} else {
			byAttempt[m.ReadCount] = append(byAttempt[m.ReadCount], m.ID)
		}
	}
	r.log.Warn("pgqrs: handler failed", "ids", msgIDs(msgs), "err", herr)
	c := r.c
	if len(dead) > 0 {
		if _, err := c.settle(r.bg, nil, "dead-letter", c.s.d.message.deadLetter, dead, text); err != nil {
			r.log.Error("pgqrs: dead-letter failed", "ids", dead, "err", err)
		} else {
			r.log.Warn("pgqrs: dead-lettered after max attempts", "ids", dead, "attempts", r.o.MaxAttempts)
		}
	}
	for attempt, ids := range byAttempt {
		delay := r.backoff(attempt)
		if _, err := c.settle(r.bg, nil, "release", c.s.d.message.fail, ids, c.s.d.secondsArg(delay), text); err != nil {
			r.log.Error("pgqrs: release after failure failed", "ids", ids, "err", err)
		}
	}
}

// archive archives successes, coalescing those that arrive together into
// one statement, until archiveNow is closed.
func (r *runner) archive() {
	for {
		var batch []*lease
		select {
		case l := <-r.acks:
			batch = append(batch, l)
		case <-r.archiveNow: // no handler will ack any more: flush and stop
			for {
				select {
				case l := <-r.acks:
					batch = append(batch, l)
				default:
					r.archiveBatch(batch)
					return
				}
			}
		}
	more:
		for len(batch) < r.c.s.cfg.maxBatch {
			select {
			case l := <-r.acks:
				batch = append(batch, l)
			default:
				break more
			}
		}
		r.archiveBatch(batch)
	}
}

// archiveBatch archives successes, at most the batch limit per statement.
// Messages their handlers settled themselves (ArchiveTx, DeleteTx) are not
// archived again and are no failure.
func (r *runner) archiveBatch(batch []*lease) {
	mine, others := r.settling(batch)
	r.settled(others)
	if len(mine) == 0 {
		return
	}
	ids := leaseIDs(mine)
	ok, err := r.c.settleAll(r.bg, "archive", r.c.s.d.message.archive, ids)
	if err != nil {
		r.log.Error("pgqrs: archive failed; the messages will be delivered again", "ids", ids, "err", err)
	}
	var missed []int64
	for i, done := range ok {
		if !done {
			missed = append(missed, ids[i])
		}
	}
	if len(missed) > 0 {
		exist, err := r.c.existing(r.bg, missed)
		for _, id := range missed {
			if err != nil || exist[id] {
				r.log.Warn("pgqrs: archive after lease loss; another consumer has the message", "id", id)
			}
		}
	}
	r.settled(mine)
}

// abandonAfter is how long Run still waits, after the shutdown grace period
// cancelled the handlers' contexts, for handlers that ignore them.
const abandonAfter = 5 * time.Second

// unclaimLeftover gives back, visible at once and with their read counts
// restored, the messages claimed but never started so far.
func (r *runner) unclaimLeftover() {
	r.mu.Lock()
	left := r.leftover
	r.leftover = nil
	r.mu.Unlock()
	mine, others := r.settling(left)
	r.settled(others)
	if len(mine) == 0 {
		return
	}
	ids := leaseIDs(mine)
	ctx, cancel := context.WithTimeout(r.bg, 30*time.Second)
	defer cancel()
	if _, err := r.c.settleAll(ctx, "give back", r.c.s.d.message.unclaim, ids); err != nil {
		r.log.Error("pgqrs: giving back unstarted messages failed; they return when their leases expire", "ids", ids, "err", err)
	}
	r.settled(mine)
}

// existing reports which of ids are still live messages of the queue,
// whoever holds them.
func (c *Consumer) existing(ctx context.Context, ids []int64) (map[int64]bool, error) {
	var found []int64
	err := c.s.read(ctx, func(ctx context.Context, q querier) error {
		rows, err := q.QueryContext(ctx, c.s.d.message.existing, c.s.d.idsArg(ids), c.queueID)
		if err != nil {
			return err
		}
		found, err = scanIDs(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("look up messages in %q: %w", c.queue, err)
	}
	out := make(map[int64]bool, len(found))
	for _, id := range found {
		out[id] = true
	}
	return out, nil
}

// testHooks let a test stop the Run loop at a point no outside condition
// can reach. Production Stores have none.
type testHooks struct {
	// afterGiveBack runs after a unit's give-back statement (a release
	// after a failure, or a reschedule), before the loop forgets it.
	afterGiveBack func(ids []int64)
	// afterClaim runs after the claim loop recorded a claim's messages.
	afterClaim func(ids []int64)
}

func (h *testHooks) tracked(ids []int64) {
	if h != nil && h.afterClaim != nil && len(ids) > 0 {
		h.afterClaim(ids)
	}
}

func (h *testHooks) givenBack(ids []int64) {
	if h != nil && h.afterGiveBack != nil {
		h.afterGiveBack(ids)
	}
}

func msgIDs(msgs []*Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}
