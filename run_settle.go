package pgqrs

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"
)

// Executing one claimed unit and completing it: the handler call (panics
// become errors), then its outcome applied by the statement that fits:
// successes archived together by one goroutine, failures released after a
// backoff or dead-lettered, workflow waits rescheduled, and messages never
// started given back at shutdown.

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

// process runs the handler on one unit, then settles it. Its leases are
// kept by keepLeases; a message whose lease was lost while it waited is
// dropped without running the handler, and so is one that no longer exists.
func (r *runner) process(unit []*lease) {
	hctx, cancel := context.WithCancelCause(r.bg)
	defer cancel(nil)
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
		r.log.Warn("pgqrs: lease lost before the handler started; skipping", "message_ids", leaseIDs(skip))
		r.settled(skip)
	}
	if len(keep) == 0 {
		return
	}
	d, err := r.intercept(hctx, leaseMessages(keep))
	// Cut off: a message of the unit was taken from the loop (another
	// consumer holds it, or an admin cancelled it).
	cause := context.Cause(hctx)
	lostOne := cause == errLeaseLost || cause == ErrMessageCancelled
	if err == nil && hctx.Err() != nil && !lostOne {
		// The grace period ended while the handler ran: it may have stopped
		// short of its work.
		err = fmt.Errorf("handler context cancelled: %w", context.Cause(hctx))
	}
	r.mu.Lock()
	for _, l := range keep {
		l.cancel = nil
	}
	r.mu.Unlock()
	// Settling happens under settleMu's read lock, so Run either waits for
	// it or has abandoned this handler before it starts.
	r.settleMu.RLock()
	defer r.settleMu.RUnlock()
	if r.abandoned {
		// Run gave up on this handler and returned. Its messages are no
		// longer this loop's: settling them now could archive or release a
		// delivery of a later Run of the same consumer, which the fence
		// cannot tell apart.
		r.log.Warn("pgqrs: an abandoned handler returned; its outcome is dropped", "message_ids", leaseIDs(keep), "err", err)
		r.c.s.hooks.droppedAbandoned(leaseIDs(keep))
		return
	}
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
	if lostOne && errors.Is(err, context.Canceled) {
		// A batch whose handler gave up because its context was cancelled
		// when another consumer took one of its messages, or an admin
		// cancelled one: the failure is
		// the loop's doing, not the messages', so the ones still held go
		// back visible now, this delivery uncounted. A handler error of its
		// own is a failure as always. (A handler that returned nil anyway
		// succeeded: its held messages were archived above, and the lost
		// one is the other consumer's.)
		if _, err := r.c.settleAll(r.bg, "give back", ids, r.c.s.messages.unclaim); err != nil {
			r.log.Error("pgqrs: giving back a batch interrupted by a lost lease failed; they return when their leases expire", "message_ids", ids, "err", err)
		}
		r.c.s.hooks.givenBack(ids)
		r.settled(mine)
		return
	}
	var later *rescheduleError
	if errors.As(err, &later) {
		// A workflow run waits for a timer: give the message back for then,
		// without counting this delivery as an attempt.
		if _, err := r.c.settle(r.bg, nil, "reschedule", ids, r.c.s.messages.reschedule(later.delay)); err != nil {
			r.log.Error("pgqrs: reschedule failed; the message returns when its lease expires", "message_ids", ids, "err", err)
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
	r.fail(leaseMessages(mine), err, d)
	r.c.s.hooks.givenBack(ids)
	r.settled(mine)
}

// call runs the handler, turning a panic into an error.
func (r *runner) call(ctx context.Context, msgs []*Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
			r.log.Error("pgqrs: handler panicked", "message_ids", msgIDs(msgs), "panic", p, "stack", string(debug.Stack()))
		}
	}()
	return r.handle(ctx, msgs)
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

// fail releases failed messages after their backoff, recording the error,
// and dead-letters those that used their last attempt, and all of them at
// once when the error is marked [Permanent].
func (r *runner) fail(msgs []*Message, herr error, d *Delivery) {
	text := errorText(herr)
	byAttempt := map[int][]int64{}
	var dead []int64
	var permanent *permanentError
	isPermanent := errors.As(herr, &permanent)
	for _, m := range msgs {
		if isPermanent || m.ReadCount >= r.o.MaxAttempts {
			dead = append(dead, m.ID)
		} else {
			byAttempt[m.ReadCount] = append(byAttempt[m.ReadCount], m.ID)
		}
	}
	r.log.Warn("pgqrs: handler failed", "message_ids", msgIDs(msgs), "err", herr)
	c := r.c
	if len(dead) > 0 {
		if _, err := c.settle(r.bg, nil, "dead-letter", dead, c.s.messages.deadLetter(text)); err != nil {
			r.log.Error("pgqrs: dead-letter failed", "message_ids", dead, "err", err)
		} else if isPermanent {
			r.log.Warn("pgqrs: dead-lettered at once: the handler's error is permanent", "message_ids", dead)
		} else {
			r.log.Warn("pgqrs: dead-lettered after max attempts", "message_ids", dead, "attempts", r.o.MaxAttempts)
		}
	}
	for attempt, ids := range byAttempt {
		var delay time.Duration
		if d != nil {
			delay = d.delay(attempt) // as told to the middleware
		} else {
			delay = r.backoff(attempt)
		}
		if _, err := c.settle(r.bg, nil, "release", ids, c.s.messages.fail(delay, text)); err != nil {
			r.log.Error("pgqrs: release after failure failed", "message_ids", ids, "err", err)
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
	ok, err := r.c.settleAll(r.bg, "archive", ids, r.c.s.messages.archive)
	if err != nil {
		r.log.Error("pgqrs: archive failed; the messages will be delivered again", "message_ids", ids, "err", err)
	}
	var missed []int64
	for i, done := range ok {
		if !done {
			missed = append(missed, ids[i])
		}
	}
	if len(missed) > 0 {
		holders, err := r.c.holders(r.bg, missed)
		for _, id := range missed {
			if _, exists := holders[id]; err != nil || exists {
				r.log.Warn("pgqrs: archive after lease loss; another consumer has the message", "message_id", id)
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
	if _, err := r.c.settleAll(ctx, "give back", ids, r.c.s.messages.unclaim); err != nil {
		r.log.Error("pgqrs: giving back unstarted messages failed; they return when their leases expire", "message_ids", ids, "err", err)
	}
	r.settled(mine)
}

// testHooks let a test stop the Run loop at a point no outside condition
// can reach. Production Stores have none.
type testHooks struct {
	// afterGiveBack runs after a unit's give-back statement (a release
	// after a failure, or a reschedule), before the loop forgets it.
	afterGiveBack func(ids []int64)
	// afterClaim runs after the claim loop recorded a claim's messages.
	afterClaim func(ids []int64)
	// afterMissedExtension runs when a lease extension did not renew ids,
	// before the loop looks at who holds them; afterSortMissed after it has.
	afterMissedExtension, afterSortMissed func(ids []int64)
	// afterDropAbandoned runs when a handler Run abandoned returned.
	afterDropAbandoned func(ids []int64)
	// abandonWait replaces abandonAfter when set.
	abandonWait time.Duration
}

// abandonAfter is how long Run waits, after the grace period, for handlers
// that ignore their cancelled context.
func (h *testHooks) abandonAfter() time.Duration {
	if h != nil && h.abandonWait > 0 {
		return h.abandonWait
	}
	return abandonAfter
}

func (h *testHooks) droppedAbandoned(ids []int64) {
	if h != nil && h.afterDropAbandoned != nil {
		h.afterDropAbandoned(ids)
	}
}

func (h *testHooks) missedExtension(ids []int64) {
	if h != nil && h.afterMissedExtension != nil {
		h.afterMissedExtension(ids)
	}
}

func (h *testHooks) sortedMissed(ids []int64) {
	if h != nil && h.afterSortMissed != nil {
		h.afterSortMissed(ids)
	}
}

func (h *testHooks) givenBack(ids []int64) {
	if h != nil && h.afterGiveBack != nil {
		h.afterGiveBack(ids)
	}
}

func (h *testHooks) tracked(ids []int64) {
	if h != nil && h.afterClaim != nil && len(ids) > 0 {
		h.afterClaim(ids)
	}
}

func msgIDs(msgs []*Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}
