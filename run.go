package pgqrs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
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
	// Store, and by LISTEN/NOTIFY on Postgres. Default 1s.
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
	// ShutdownTimeout bounds how long in-flight handlers may run after ctx is
	// cancelled; then their contexts are cancelled too. Default 30s.
	ShutdownTimeout time.Duration
	// Logger receives the loop's events (handler errors and panics with
	// their stacks, lost leases, settle failures). Default: discard.
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
	}
	r.Concurrency = cmpOr(r.Concurrency, 1)
	r.BatchSize = cmpOr(r.BatchSize, 10)
	r.VisibilityTimeout = cmpOr(r.VisibilityTimeout, DefaultVisibilityTimeout)
	r.PollInterval = cmpOr(r.PollInterval, time.Second)
	r.MaxAttempts = cmpOr(r.MaxAttempts, 5)
	r.HeartbeatInterval = cmpOr(r.HeartbeatInterval, DefaultHeartbeatInterval)
	r.ShutdownTimeout = cmpOr(r.ShutdownTimeout, 30*time.Second)
	if r.Backoff == nil {
		r.Backoff = ExponentialBackoff(time.Second, 10*time.Minute)
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

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
// declared stopped (for example by [Admin.ReclaimStale]) it returns one
// wrapping [ErrWorkerStopped]. The worker must be ready when Run starts.
// A Consumer runs one Run or RunBatch at a time.
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

	work       chan []*Message // claimed units waiting for a handler
	acks       chan int64      // successes waiting to be archived together
	archiveNow chan struct{}   // closed when no handler will ack any more
	stopOnce   sync.Once
	stop       chan struct{} // closed to stop claiming
	hardStop   chan struct{} // closed when handlers must give up
	stopping   atomic.Bool   // set before the claim loop drains work

	mu          sync.Mutex
	outstanding int // claimed and not yet settled
	leftover    []*Message
	freed       chan struct{}

	interrupted, stoppedOutside atomic.Bool
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
		archiveNow: make(chan struct{}),
		freed:      make(chan struct{}, 1),
	}
	// Claim one batch ahead of the handlers, so the next claim overlaps the
	// archive of the last batch instead of waiting for it.
	limit := 2 * max(o.Concurrency, o.BatchSize)
	if !single {
		limit = (o.Concurrency + 1) * o.BatchSize
	}
	r.work = make(chan []*Message, limit)
	r.acks = make(chan int64, limit)
	wake, unsubscribe := c.s.subscribe(c.queueID)
	defer unsubscribe()
	c.s.startListener(r.log)

	var beat sync.WaitGroup
	beatDone := make(chan struct{})
	beat.Go(func() { r.heartbeat(beatDone) })
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
	grace := time.AfterFunc(o.ShutdownTimeout, func() { close(r.hardStop) })
	finished := make(chan struct{})
	go func() { handlers.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(o.ShutdownTimeout + abandonAfter):
		// Handlers that ignore their cancelled context are abandoned: their
		// messages return to the queue when their leases expire.
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
		if err := c.transition(r.bg, nil, WorkerSuspended, WorkerInterrupted, WorkerPolling, WorkerReady); err != nil {
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
		free := limit - r.outstanding
		r.mu.Unlock()
		if free <= 0 {
			wait(r.freed, time.Hour)
			continue
		}
		n := min(r.o.BatchSize, free)
		// The claim itself outlives ctx: a claim cut off mid-flight could
		// lease messages nobody will process.
		msgs, err := r.c.claim(r.bg, n, cfg)
		if err != nil {
			r.log.Error("pgqrs: claim failed", "err", err)
			wait(nil, r.o.PollInterval)
			continue
		}
		if len(msgs) > 0 {
			r.mu.Lock()
			r.outstanding += len(msgs)
			r.mu.Unlock()
			if r.single {
				for _, m := range msgs {
					r.work <- []*Message{m}
				}
			} else {
				r.work <- msgs
			}
		}
		if len(msgs) < n {
			r.log.Debug("pgqrs: idle")
			wait(wake, r.o.PollInterval)
		}
	}
}

// heartbeat beats every HeartbeatInterval until done, and requests a stop
// when an admin interrupted, suspended or stopped the worker.
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

func (r *runner) settled(n int) {
	r.mu.Lock()
	r.outstanding -= n
	r.mu.Unlock()
	select {
	case r.freed <- struct{}{}:
	default:
	}
}

func msgIDs(msgs []*Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// process runs the handler on one unit with lease extension, then settles it.
func (r *runner) process(msgs []*Message) {
	ids := msgIDs(msgs)
	vt := r.o.VisibilityTimeout
	// A message that waited in memory gets a fresh lease before it starts.
	for _, m := range msgs {
		if time.Until(m.VisibleAt) < vt/2 {
			if _, err := r.c.ExtendVisibilityBatch(r.bg, ids, vt); err != nil {
				r.log.Warn("pgqrs: lease refresh failed", "err", err)
			}
			break
		}
	}
	hctx, cancel := context.WithCancel(r.bg)
	defer cancel()
	extended := make(chan struct{})
	go func() {
		defer close(extended)
		t := time.NewTicker(vt / 3)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-r.hardStop:
				r.log.Warn("pgqrs: shutdown grace period over; cancelling handler", "ids", ids)
				cancel()
				return
			case <-t.C:
			}
			ok, err := r.c.ExtendVisibilityBatch(hctx, ids, vt)
			if err != nil {
				if hctx.Err() == nil {
					r.log.Warn("pgqrs: lease extension failed", "ids", ids, "err", err)
				}
				continue
			}
			for i, held := range ok {
				if !held {
					r.log.Warn("pgqrs: lease lost; cancelling handler", "id", ids[i])
					cancel()
					return
				}
			}
		}
	}()
	err := r.call(hctx, msgs)
	cancel()
	<-extended
	if err == nil {
		for _, id := range ids {
			r.acks <- id
		}
		return
	}
	r.fail(msgs, err)
	r.settled(len(msgs))
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
	text := herr.Error()
	if len(text) > 4000 {
		text = text[:4000] + "…"
	}
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
		delay := max(r.o.Backoff(attempt), 0)
		if _, err := c.settle(r.bg, nil, "release", c.s.d.message.fail, ids, c.s.d.secondsArg(delay), text); err != nil {
			r.log.Error("pgqrs: release after failure failed", "ids", ids, "err", err)
		}
	}
}

// archive archives successes, coalescing those that arrive together into
// one statement, until archiveNow is closed.
func (r *runner) archive() {
	for {
		var batch []int64
		select {
		case id := <-r.acks:
			batch = append(batch, id)
		case <-r.archiveNow: // no handler will ack any more: flush and stop
			for {
				select {
				case id := <-r.acks:
					batch = append(batch, id)
				default:
					r.archiveBatch(batch)
					return
				}
			}
		}
	more:
		for len(batch) < r.c.s.cfg.maxBatch {
			select {
			case id := <-r.acks:
				batch = append(batch, id)
			default:
				break more
			}
		}
		r.archiveBatch(batch)
	}
}

// archiveBatch archives successes, at most the batch limit per statement.
func (r *runner) archiveBatch(batch []int64) {
	for len(batch) > 0 {
		n := min(len(batch), r.c.s.cfg.maxBatch)
		ok, err := r.c.ArchiveBatch(r.bg, batch[:n])
		if err != nil {
			r.log.Error("pgqrs: archive failed; the messages will be delivered again", "ids", batch[:n], "err", err)
		}
		for i, done := range ok {
			if !done {
				r.log.Warn("pgqrs: archive after lease loss; another consumer has the message", "id", batch[i])
			}
		}
		r.settled(n)
		batch = batch[n:]
	}
}

// abandonAfter is how long Run still waits, after the shutdown grace period
// cancelled the handlers' contexts, for handlers that ignore them.
const abandonAfter = 5 * time.Second

// unclaimLeftover gives back messages claimed but never started.
func (r *runner) unclaimLeftover() {
	if len(r.leftover) == 0 {
		return
	}
	ids := msgIDs(r.leftover)
	ctx, cancel := context.WithTimeout(r.bg, 30*time.Second)
	defer cancel()
	if _, err := r.c.settle(ctx, nil, "give back", r.c.s.d.message.unclaim, ids); err != nil {
		r.log.Error("pgqrs: giving back unstarted messages failed; they return when their leases expire", "ids", ids, "err", err)
	}
}

// notifier fans wakeups out to the Run loops of this process, per queue.
type notifier struct {
	mu   sync.Mutex
	subs map[int64]map[chan struct{}]struct{}
}

// subscribe returns a channel that receives (coalesced) wakeups for queueID.
func (s *Store) subscribe(queueID int64) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n := &s.notify
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.subs == nil {
		n.subs = map[int64]map[chan struct{}]struct{}{}
	}
	if n.subs[queueID] == nil {
		n.subs[queueID] = map[chan struct{}]struct{}{}
	}
	n.subs[queueID][ch] = struct{}{}
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		delete(n.subs[queueID], ch)
	}
}

// wake signals the Run loops of queueID (queueID 0: every queue).
func (s *Store) wake(queueID int64) {
	n := &s.notify
	n.mu.Lock()
	defer n.mu.Unlock()
	for q, subs := range n.subs {
		if queueID != 0 && q != queueID {
			continue
		}
		for ch := range subs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// startListener starts the Store's LISTEN connection once, where the
// backend has one and the Store knows a DSN to open it with.
func (s *Store) startListener(log *slog.Logger) {
	if s.d.listen == nil || s.listenDSN == "" {
		return
	}
	s.listenOnce.Do(func() {
		s.stopListen = s.d.listen(s.listenDSN, s.d.notifyChannel,
			func(payload string) {
				if id, err := strconv.ParseInt(payload, 10, 64); err == nil {
					s.wake(id)
				}
			},
			func() {
				log.Debug("pgqrs: listening for notifications", "channel", s.d.notifyChannel)
				s.listening.Store(true)
				s.wake(0) // catch up on anything sent while not listening
			})
	})
}
