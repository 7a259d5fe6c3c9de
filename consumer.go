package pgqrs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Consumer claims and settles the messages of one queue. It is a registered
// worker (see [Store.Consumer]); it is safe for concurrent use.
//
// A claimed message is leased to the consumer until its visibility timeout
// passes. The settle methods (Archive, Delete, Release, ExtendVisibility)
// act only on messages this consumer holds: a message whose lease expired and
// was claimed by another consumer, or that was released, is not touched and
// the single-message forms return [ErrLeaseLost].
type Consumer struct {
	*worker
	// limited: the queue was last seen with max_in_flight or rate_limit set,
	// so claims take the limited path (flow.go).
	limited atomic.Bool
	floors  floorState
}

// claimFloors are, by priority level, visible-at times below which a claim
// does not look (zero: from the start of the level's range).
type claimFloors [MaxPriority + 1]time.Time

// fullClaimEvery is how often a consumer's claim reads its queue's ranges
// from their start even while floors would let it skip their heads.
const fullClaimEvery = time.Second

// floorState is where a consumer's claims may start (see claimPaced).
//
// On Postgres a claim moves each message it takes out of the claim index's
// visible range (its vt moves to the lease's end) and an archive deletes
// the row; both leave the old index entry behind, dead, until VACUUM
// removes it, and autovacuum visits a table at most once a minute by
// default. Those dead entries sit exactly at the head of the range every
// claim reads first (issue 18: 1,649 index pages per claim of 50 at the
// end of a 2M drain with a 1M backlog, 8 at its start). So while its
// queue is backlogged, a consumer starts each level's range where its
// previous claim's last message there was: every entry before it was
// claimed, deleted or locked by another claim then. A message can still
// appear there later (enqueued with an At in the past, or by a statement
// that began before that claim), so a claim that comes up short on floors
// claims the rest from the start at once, and at least every
// fullClaimEvery a claim reads from the start anyway: such a message waits
// at most that long behind younger ones.
type floorState struct {
	mu      sync.Mutex
	at      claimFloors
	full    time.Time // the last claim that read from the start
	backlog bool      // the last claim filled its batch
}

// take returns the floors the next claim may use, or nil when it should
// read from the start.
func (f *floorState) take() *claimFloors {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.backlog || f.at == (claimFloors{}) || time.Since(f.full) >= fullClaimEvery {
		f.full = time.Now()
		return nil
	}
	at := f.at
	return &at
}

// peek returns the floors the consumer's claims start from while its queue
// is backlogged (nil: none yet), without taking them.
func (f *floorState) peek() *claimFloors {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.at == (claimFloors{}) {
		return nil
	}
	at := f.at
	return &at
}

// record notes a claim's outcome: how far it reached, and whether it
// filled its batch.
func (f *floorState) record(reached claimFloors, full bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p, t := range reached {
		if t.After(f.at[p]) {
			f.at[p] = t
		}
	}
	f.backlog = full
}

// Consumer registers a consumer worker for queue and returns it. It returns
// [ErrQueueNotFound] if the queue does not exist and [ErrWorkerNameTaken] if
// [WithWorkerName] names a live worker. Call [Consumer.Shutdown] when done.
func (s *Store) Consumer(ctx context.Context, queue string, opts ...WorkerOption) (*Consumer, error) {
	w, err := s.register(ctx, queue, "consumer", opts)
	if err != nil {
		return nil, err
	}
	return &Consumer{worker: w}, nil
}

// DefaultVisibilityTimeout is how long a dequeued message stays leased when
// no [VisibilityTimeout] is given.
const DefaultVisibilityTimeout = 30 * time.Second

// DefaultMaxAttempts is how many deliveries a message gets before
// [Consumer.Dequeue] and [Consumer.Run] dead-letter it.
const DefaultMaxAttempts = 5

// MinVisibilityTimeout is the shortest lease pgqrs accepts: leases are
// stored with millisecond precision.
const MinVisibilityTimeout = time.Millisecond

// DequeueOption adjusts one Dequeue call.
type DequeueOption interface {
	applyDequeue(*dequeueConfig) error
}

type dequeueOptionFunc func(*dequeueConfig) error

func (f dequeueOptionFunc) applyDequeue(c *dequeueConfig) error { return f(c) }

type dequeueConfig struct {
	vt          time.Duration
	maxAttempts int
}

// MaxAttempts makes Dequeue dead-letter, instead of returning, any message it
// claims for more than the n-th time: one whose n allowed deliveries all
// ended without an archive, for example because the consumers holding them
// crashed or released them. Dead letters keep their last error and can be
// replayed (see [Admin.ReplayDeadLetters]). n must be at least 1. Default
// [DefaultMaxAttempts].
func MaxAttempts(n int) DequeueOption {
	return dequeueOptionFunc(func(c *dequeueConfig) error {
		if n < 1 {
			return fmt.Errorf("%w: max attempts must be at least 1, got %d", ErrInvalidArgument, n)
		}
		c.maxAttempts = n
		return nil
	})
}

// VisibilityTimeout sets how long the claimed messages stay leased to the
// consumer before other consumers may claim them again. It must be positive.
// Default [DefaultVisibilityTimeout].
func VisibilityTimeout(d time.Duration) DequeueOption {
	return dequeueOptionFunc(func(c *dequeueConfig) error {
		if d < MinVisibilityTimeout {
			return fmt.Errorf("%w: visibility timeout must be at least %v, got %v", ErrInvalidArgument, MinVisibilityTimeout, d)
		}
		c.vt = d
		return nil
	})
}

// Dequeue claims up to n visible messages of the queue in one statement, the
// ones that became visible first (then by ID), and leases them to the
// consumer for the visibility timeout; they are returned ordered by ID. Each
// claim increments the message's read count; a message claimed past its
// last attempt is dead-lettered instead of returned (see [MaxAttempts]). It
// returns an empty slice, not an error, when nothing is visible. n must be
// between 1 and the store's batch limit. The claim checks the worker's row:
// once the worker is stopped, by this process or from outside
// ([Admin.StopWorker], a reclaim), Dequeue claims nothing and returns
// [ErrWorkerStopped]; while it is suspended or interrupted,
// [ErrWorkerSuspended]. On a queue with limits ([Admin.SetLimits]) it
// claims no more than they leave room for, possibly nothing; messages of a
// key group ([Group]) wait for the ones before them.
func (c *Consumer) Dequeue(ctx context.Context, n int, opts ...DequeueOption) ([]*Message, error) {
	if err := c.s.check(); err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, fmt.Errorf("dequeue from %q: %w: batch size must be at least 1, got %d", c.queue, ErrInvalidArgument, n)
	}
	if n > c.s.cfg.maxBatch {
		return nil, fmt.Errorf("dequeue from %q: %w: %d, limit %d", c.queue, ErrBatchTooLarge, n, c.s.cfg.maxBatch)
	}
	cfg := dequeueConfig{vt: DefaultVisibilityTimeout, maxAttempts: DefaultMaxAttempts}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyDequeue(&cfg); err != nil {
			return nil, fmt.Errorf("dequeue from %q: %w", c.queue, err)
		}
	}
	if err := c.touch(ctx, nil); err != nil {
		return nil, err
	}
	// The state as last seen: the heartbeat may have learnt of a suspension
	// or a resume. The claim itself checks the worker row.
	if err := c.usable(); err != nil {
		return nil, err
	}
	return c.claim(ctx, n, cfg)
}

// ExplainDequeue returns the database's plan of the plain claim of
// Dequeue(n) for this consumer, one line per element, for diagnosing a
// slow claim. On Postgres it is EXPLAIN (ANALYZE, BUFFERS): the claim runs
// in a transaction that is rolled back, so the plan shows the rows and
// pages it read and nothing stays claimed. The claim starts where this
// consumer's claims start while the queue is backlogged: on Postgres past
// the dead index entries its own earlier claims left behind. On SQLite and Turso it is
// EXPLAIN QUERY PLAN, which runs nothing. A queue with MaxInFlight or Rate
// set claims through another statement ([Admin.SetLimits]); the plan
// shown is the plain claim's all the same (which claims nothing there).
func (c *Consumer) ExplainDequeue(ctx context.Context, n int) ([]string, error) {
	if err := c.s.check(); err != nil {
		return nil, err
	}
	if n < 1 || n > c.s.cfg.maxBatch {
		return nil, fmt.Errorf("explain dequeue from %q: %w: batch size must be 1 to %d, got %d", c.queue, ErrInvalidArgument, c.s.cfg.maxBatch, n)
	}
	var lines []string
	err := c.s.inTx(ctx, func(ctx context.Context, q querier) (err error) {
		lines, err = c.s.messages.explainDequeue(ctx, q, &Queue{ID: c.queueID, Name: c.queue}, n, DefaultVisibilityTimeout, c.id, c.floors.peek())
		if err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		return nil, fmt.Errorf("explain dequeue from %q: %w", c.queue, err)
	}
	return lines, nil
}

// errRollback ends an inTx whose effects must not stay.
var errRollback = errors.New("rolled back on purpose")

func (c *Consumer) claim(ctx context.Context, n int, cfg dequeueConfig) ([]*Message, error) {
	msgs, _, err := c.claimPaced(ctx, n, cfg)
	return msgs, err
}

// claimPaced is claim that also says, when a rate limit left no room, how
// long until the queue's next rate window opens (0 otherwise).
func (c *Consumer) claimPaced(ctx context.Context, n int, cfg dequeueConfig) ([]*Message, time.Duration, error) {
	var msgs []*Message
	var wait time.Duration
	limited := c.limited.Load()
	if limited {
		var err error
		msgs, wait, limited, err = c.claimLimited(ctx, n, cfg)
		if err != nil {
			return nil, 0, fmt.Errorf("dequeue from %q: %w", c.queue, err)
		}
		c.limited.Store(limited)
	}
	if !limited {
		// The claim statement itself requires the worker to be ready or
		// polling, so a consumer stopped or suspended from outside claims
		// nothing even before this process learns of it; and the queue to
		// have no limits, so limits set from outside take effect at once.
		queue := &Queue{ID: c.queueID, Name: c.queue}
		floors := c.floors.take()
		err := c.s.write(ctx, nil, func(ctx context.Context, q querier) error {
			got, reached, err := c.s.messages.dequeue(ctx, q, queue, n, cfg.vt, c.id, floors)
			if err != nil {
				return err
			}
			msgs = got
			if floors != nil && len(msgs) < n {
				// Short on floors: the rest from the start (see floorState).
				more, from, err := c.s.messages.dequeue(ctx, q, queue, n-len(msgs), cfg.vt, c.id, nil)
				if err != nil {
					// The first claim's messages are leased: return them.
					c.floors.record(reached, false)
					return nil
				}
				for p, t := range from {
					if t.After(reached[p]) {
						reached[p] = t
					}
				}
				msgs = append(msgs, more...)
				sortClaimed(msgs)
			}
			c.floors.record(reached, len(msgs) == n)
			return nil
		})
		if err != nil {
			return nil, 0, fmt.Errorf("dequeue from %q: %w", c.queue, err)
		}
	}
	if len(msgs) == 0 {
		// Nothing visible, or the worker may not claim: only an empty claim
		// pays for the look at the worker row.
		if err := c.mayClaim(ctx); err != nil {
			return nil, 0, fmt.Errorf("dequeue from %q: %w", c.queue, err)
		}
		if !limited {
			// ... and at the queue's limits: the fast claim refuses a
			// limited queue.
			var err error
			if limited, err = c.queueLimited(ctx); err != nil {
				return nil, 0, fmt.Errorf("dequeue from %q: %w", c.queue, err)
			}
			if limited {
				c.limited.Store(true)
				return c.claimPaced(ctx, n, cfg)
			}
		}
		return msgs, wait, nil
	}
	// msgs are in claim order (messageRepo.dequeue): most urgent first,
	// then by ID.
	if cfg.maxAttempts > 0 {
		// A failed dead-letter statement is not the caller's problem: the
		// messages it holds are returned all the same.
		keep, _ := c.dropExhausted(ctx, msgs, cfg.maxAttempts)
		return keep, wait, nil
	}
	return msgs, wait, nil
}

// mayClaim reads the worker's state after a claim that returned nothing and
// says why the claim statement refused, if it did: [ErrWorkerStopped] (also
// when the row was purged), or [ErrWorkerSuspended] for a suspended or
// interrupted worker.
func (c *Consumer) mayClaim(ctx context.Context) error {
	st, err := c.s.workerStatus(ctx, c.s.pool, c.id)
	if errors.Is(err, ErrWorkerNotFound) {
		c.status.Store(WorkerStopped)
		return fmt.Errorf("worker %q: %w: %w", c.name, ErrWorkerStopped, err)
	}
	if err != nil {
		return err
	}
	c.status.Store(st)
	return c.usable()
}

// dropExhausted dead-letters the messages claimed past their last allowed
// attempt and returns the rest. Such a message's last delivery ended with
// neither an archive nor a failure that dead-lettered it: its lease expired
// (its consumer died or hung) or it was released. The claim that found it
// exhausted is no delivery, so the dead letter keeps the read count of its
// real deliveries, and its reason says what happened, followed by the last
// handler error if an earlier attempt recorded one.
func (c *Consumer) dropExhausted(ctx context.Context, msgs []*Message, maxAttempts int) ([]*Message, error) {
	var keep []*Message
	var exhausted []int64
	for _, m := range msgs {
		if m.ReadCount <= maxAttempts {
			keep = append(keep, m)
		} else {
			exhausted = append(exhausted, m.ID)
		}
	}
	// The ones kept are returned even when the dead-letter statement
	// failed, so none hides; the exhausted ones stay leased, and the next
	// claim after their lease dead-letters them.
	var err error
	if len(exhausted) > 0 {
		reason := fmt.Sprintf("no success in %d %s: the last one ended without a result (its lease expired or it was released)",
			maxAttempts, plural(maxAttempts, "attempt", "attempts"))
		_, err = c.settle(ctx, nil, "dead-letter", exhausted, c.s.messages.exhaust(reason))
	}
	if keep == nil {
		keep = []*Message{}
	}
	return keep, err
}

// settle runs one of the fenced message statements for ids and reports per
// ID whether it applied.
func (c *Consumer) settle(ctx context.Context, tx *sql.Tx, op string, ids []int64, run settleFunc) ([]bool, error) {
	if err := c.s.check(); err != nil {
		return nil, err
	}
	if len(ids) > c.s.cfg.maxBatch {
		return nil, fmt.Errorf("%s in %q: %w: %d IDs, limit %d", op, c.queue, ErrBatchTooLarge, len(ids), c.s.cfg.maxBatch)
	}
	if len(ids) == 0 {
		return []bool{}, nil
	}
	var done []int64
	err := c.s.write(ctx, tx, func(ctx context.Context, q querier) (err error) {
		done, err = run(ctx, q, fence{ids: ids, consumer: c.id, queue: c.queueID})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s in %q: %w", op, c.queue, err)
	}
	return hits(ids, done), nil
}

// settleOne is settle for one ID; when nothing applied it says why:
// [ErrMessageCancelled], [ErrMessageNotFound] or [ErrLeaseLost].
func (c *Consumer) settleOne(ctx context.Context, tx *sql.Tx, op string, id int64, run settleFunc) error {
	ok, err := c.settle(ctx, tx, op, []int64{id}, run)
	if err != nil || ok[0] {
		return err
	}
	var q querier = c.s.pool
	if tx != nil {
		q = tx
	}
	var exists bool
	var cancelled []int64
	err = c.s.read(ctx, func(ctx context.Context, _ querier) (err error) {
		exists, err = c.s.messages.exists(ctx, q, id, c.queueID)
		if err != nil || exists {
			return err
		}
		cancelled, err = c.s.archive.cancelled(ctx, q, c.queueID, []int64{id})
		return err
	})
	switch {
	case err != nil:
		return fmt.Errorf("%s message %d in %q: %w", op, id, c.queue, err)
	case len(cancelled) > 0:
		return fmt.Errorf("%s message %d in %q: %w", op, id, c.queue, ErrMessageCancelled)
	case !exists:
		return fmt.Errorf("%s message %d in %q: %w", op, id, c.queue, ErrMessageNotFound)
	}
	return fmt.Errorf("%s message %d in %q: %w", op, id, c.queue, ErrLeaseLost)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func needTx(tx *sql.Tx) error {
	if tx == nil {
		return fmt.Errorf("%w: nil *sql.Tx", ErrInvalidArgument)
	}
	return nil
}

func nonNegative(what string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%w: %s must not be negative, got %v", ErrInvalidArgument, what, d)
	}
	return nil
}

// Archive marks message id processed: it moves to the queue's archive, where
// [Admin.GetArchived] and [Admin.ListArchived] find it. It returns
// [ErrLeaseLost] if the consumer does not hold the message,
// [ErrMessageCancelled] if an admin cancelled it ([Admin.CancelMessage]) and
// [ErrMessageNotFound] if no live message has that ID.
func (c *Consumer) Archive(ctx context.Context, id int64) error {
	return c.settleOne(ctx, nil, "archive", id, c.s.messages.archive)
}

// ArchiveTx is like [Consumer.Archive] but runs inside tx, so the message is
// archived if and only if the caller's other writes commit.
func (c *Consumer) ArchiveTx(ctx context.Context, tx *sql.Tx, id int64) error {
	if err := needTx(tx); err != nil {
		return err
	}
	return c.settleOne(ctx, tx, "archive", id, c.s.messages.archive)
}

// ArchiveBatch archives every message of ids the consumer holds, in one
// statement, and reports per ID (in the order of ids) whether it was archived.
func (c *Consumer) ArchiveBatch(ctx context.Context, ids []int64) ([]bool, error) {
	return c.settle(ctx, nil, "archive", ids, c.s.messages.archive)
}

// ArchiveBatchTx is like [Consumer.ArchiveBatch] but runs inside tx.
func (c *Consumer) ArchiveBatchTx(ctx context.Context, tx *sql.Tx, ids []int64) ([]bool, error) {
	if err := needTx(tx); err != nil {
		return nil, err
	}
	return c.settle(ctx, tx, "archive", ids, c.s.messages.archive)
}

// Delete removes message id without archiving it. Errors are as for
// [Consumer.Archive].
func (c *Consumer) Delete(ctx context.Context, id int64) error {
	return c.settleOne(ctx, nil, "delete", id, c.s.messages.delete)
}

// DeleteTx is like [Consumer.Delete] but runs inside tx.
func (c *Consumer) DeleteTx(ctx context.Context, tx *sql.Tx, id int64) error {
	if err := needTx(tx); err != nil {
		return err
	}
	return c.settleOne(ctx, tx, "delete", id, c.s.messages.delete)
}

// DeleteBatch deletes every message of ids the consumer holds, in one
// statement, and reports per ID whether it was deleted.
func (c *Consumer) DeleteBatch(ctx context.Context, ids []int64) ([]bool, error) {
	return c.settle(ctx, nil, "delete", ids, c.s.messages.delete)
}

// DeleteBatchTx is like [Consumer.DeleteBatch] but runs inside tx.
func (c *Consumer) DeleteBatchTx(ctx context.Context, tx *sql.Tx, ids []int64) ([]bool, error) {
	if err := needTx(tx); err != nil {
		return nil, err
	}
	return c.settle(ctx, tx, "delete", ids, c.s.messages.delete)
}

// Release gives message id back to the queue, visible again after delay
// (0: at once). Its read count is kept. Errors are as for [Consumer.Archive].
func (c *Consumer) Release(ctx context.Context, id int64, delay time.Duration) error {
	if err := nonNegative("release delay", delay); err != nil {
		return err
	}
	return c.settleOne(ctx, nil, "release", id, c.s.messages.release(delay))
}

// ReleaseBatch releases every message of ids the consumer holds, in one
// statement, and reports per ID whether it was released.
func (c *Consumer) ReleaseBatch(ctx context.Context, ids []int64, delay time.Duration) ([]bool, error) {
	if err := nonNegative("release delay", delay); err != nil {
		return nil, err
	}
	return c.settle(ctx, nil, "release", ids, c.s.messages.release(delay))
}

// ExtendVisibility extends the consumer's lease on message id to d from now.
// d must be positive. Errors are as for [Consumer.Archive].
func (c *Consumer) ExtendVisibility(ctx context.Context, id int64, d time.Duration) error {
	if d < MinVisibilityTimeout {
		return fmt.Errorf("%w: visibility extension must be at least %v, got %v", ErrInvalidArgument, MinVisibilityTimeout, d)
	}
	return c.settleOne(ctx, nil, "extend visibility of", id, c.s.messages.extend(d))
}

// ExtendVisibilityBatch extends the lease on every message of ids the
// consumer holds to d from now, in one statement, and reports per ID whether
// it was extended.
func (c *Consumer) ExtendVisibilityBatch(ctx context.Context, ids []int64, d time.Duration) ([]bool, error) {
	if d < MinVisibilityTimeout {
		return nil, fmt.Errorf("%w: visibility extension must be at least %v, got %v", ErrInvalidArgument, MinVisibilityTimeout, d)
	}
	return c.settle(ctx, nil, "extend visibility of", ids, c.s.messages.extend(d))
}

// Shutdown releases every message the consumer still holds (visible again at
// once, read counts kept) and marks its worker stopped, in one transaction.
// Later calls on the consumer return [ErrWorkerStopped]. Shutting down a
// consumer that is already stopped (by an earlier Shutdown, by the end of
// [Consumer.Run], or from outside by [Admin.StopWorker] or a reclaim) does
// nothing and returns nil, so "defer c.Shutdown(ctx)" is always safe.
func (c *Consumer) Shutdown(ctx context.Context) error {
	err := c.s.inTx(ctx, func(ctx context.Context, q querier) error {
		if _, err := c.s.workers.releaseHeld(ctx, q, c.id); err != nil {
			return fmt.Errorf("release held messages: %w", err)
		}
		return alreadyStopped(c.transition(ctx, q, WorkerStopped, WorkerReady, WorkerPolling, WorkerSuspended, WorkerInterrupted))
	})
	if err != nil {
		return fmt.Errorf("shut down consumer %q: %w", c.name, err)
	}
	c.status.Store(WorkerStopped)
	return nil
}

// Held returns how many messages the consumer currently holds leases on.
func (c *Consumer) Held(ctx context.Context) (int64, error) {
	var n int64
	err := c.s.read(ctx, func(ctx context.Context, q querier) (err error) {
		n, err = c.s.messages.countHeld(ctx, q, c.id)
		return err
	})
	return n, err
}

// settleAll is settle for any number of IDs: one statement per batch-limit
// chunk.
func (c *Consumer) settleAll(ctx context.Context, op string, ids []int64, run settleFunc) ([]bool, error) {
	out := make([]bool, 0, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), c.s.cfg.maxBatch)
		ok, err := c.settle(ctx, nil, op, ids[:n], run)
		if err != nil {
			return out, err
		}
		out = append(out, ok...)
		ids = ids[n:]
	}
	return out, nil
}
