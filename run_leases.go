package pgqrs

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The Run loop's record of what it holds: one lease per delivery, from the
// claim until the loop forgets it, kept alive by keepLeases and sorted out
// (lost to another consumer, or gone because the handler settled it) when an
// extension finds the loop no longer holds it.

// lease is the runner's record of one delivery: one claim of a message,
// from the claim until the loop forgets it. A message given back and claimed
// again is a new delivery with a new lease, even while the loop still holds
// the old one; only the current lease of an ID (held[ID]) may settle it.
// Fields other than m are guarded by runner.mu.
type lease struct {
	m      *Message
	lost   bool                    // an extension found the message held by another consumer, or by none
	gone   bool                    // the message no longer exists: settled outside the loop (by its handler's ArchiveTx, ...) or purged
	done   bool                    // a settle statement for this delivery was sent: a claim of its ID is a new delivery
	renews int                     // claims of this loop that renewed the delivery's lease (see track)
	cancel context.CancelCauseFunc // set while a handler runs
}

// Why the loop cancels a running handler's context (its cause).
var (
	errLeaseLost  = errors.New("pgqrs: lease lost: the message is held by another consumer, or by none")
	errGraceEnded = errors.New("pgqrs: shutdown grace period over")
)

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
			old.renews++
			continue
		}
		l := &lease{m: m}
		r.held[m.ID] = l
		fresh = append(fresh, l)
	}
	return fresh
}

// dropExhausted dead-letters the new deliveries claimed past their last
// attempt (see [Consumer.dropExhausted]), forgets them, and returns the rest.
func (r *runner) dropExhausted(fresh []*lease) []*lease {
	var keep, exhausted []*lease
	for _, l := range fresh {
		if l.m.ReadCount > r.o.MaxAttempts {
			exhausted = append(exhausted, l)
		} else {
			keep = append(keep, l)
		}
	}
	if len(exhausted) == 0 {
		return fresh
	}
	mine, others := r.settling(exhausted)
	r.settled(others)
	if len(mine) > 0 {
		if _, err := r.c.dropExhausted(r.bg, leaseMessages(mine), r.o.MaxAttempts); err != nil {
			r.log.Error("pgqrs: dead-lettering exhausted messages failed; they are dead-lettered after their leases expire", "message_ids", leaseIDs(mine), "err", err)
		} else {
			r.log.Warn("pgqrs: dead-lettered after max attempts", "message_ids", leaseIDs(mine), "attempts", r.o.MaxAttempts)
		}
	}
	r.settled(mine)
	return keep
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
	if r.c.limited.Load() {
		// Room under the queue's max_in_flight for this process's other
		// idle loops on the queue (and this one).
		r.c.s.wake(queueWake(r.c.queueID))
	}
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
					l.cancel(errGraceEnded)
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
		ok, err := r.c.settleAll(r.bg, "extend visibility of", leaseIDs(ls), r.c.s.messages.extend(vt))
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
			r.c.s.hooks.missedExtension(leaseIDs(missed))
			r.lostOrGone(missed)
			r.c.s.hooks.sortedMissed(leaseIDs(missed))
		}
	}
}

// lostOrGone sorts out deliveries whose lease an extension found the loop
// no longer held. A message an admin cancelled is gone, and its handler's
// context is cancelled with cause [ErrMessageCancelled]. Any other message
// that no longer exists was settled outside the
// loop, typically by its own handler with [Consumer.ArchiveTx] or
// [Consumer.DeleteTx]: it is gone, which is no failure, and its handler runs
// on. One this loop holds again was claimed again by the loop itself after
// its lease ran out (track kept the running delivery): nothing is lost. One
// held by another consumer, or by none, is lost, and its handler's context
// is cancelled.
func (r *runner) lostOrGone(ls []*lease) {
	renews := make([]int, len(ls))
	r.mu.Lock()
	for i, l := range ls {
		renews[i] = l.renews
	}
	r.mu.Unlock()
	holders, err := r.c.holders(r.bg, leaseIDs(ls))
	if err != nil {
		r.log.Warn("pgqrs: checking messages whose lease was not renewed failed", "message_ids", leaseIDs(ls), "err", err)
		return // the next extension asks again
	}
	// Of those that no longer exist, the ones an admin cancelled.
	var missing []int64
	for _, l := range ls {
		if _, exists := holders[l.m.ID]; !exists {
			missing = append(missing, l.m.ID)
		}
	}
	cancelled := map[int64]bool{}
	if len(missing) > 0 {
		ids, err := r.c.cancelled(r.bg, missing)
		if err != nil {
			r.log.Warn("pgqrs: checking messages whose lease was not renewed failed", "message_ids", missing, "err", err)
			return
		}
		for _, id := range ids {
			cancelled[id] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, l := range ls {
		holder, exists := holders[l.m.ID]
		switch {
		case l.lost || l.gone || l.done || r.held[l.m.ID] != l:
			// settled or replaced meanwhile
		case l.renews != renews[i]:
			// claimed again by this loop after the look: its lease again
		case !exists && cancelled[l.m.ID]:
			l.gone = true
			r.log.Info("pgqrs: message cancelled; cancelling its handler", "message_id", l.m.ID)
			if l.cancel != nil {
				l.cancel(ErrMessageCancelled)
			}
		case !exists:
			l.gone = true
			r.log.Debug("pgqrs: message settled outside the loop", "message_id", l.m.ID)
		case holder == r.c.id:
			// claimed again by this loop since the extension
		default:
			l.lost = true
			r.log.Warn("pgqrs: lease lost; cancelling its handler", "message_id", l.m.ID)
			if l.cancel != nil {
				l.cancel(errLeaseLost)
			}
		}
	}
}

// cancelled returns which of ids an admin cancelled (they are in the
// queue's archive, marked cancelled).
func (c *Consumer) cancelled(ctx context.Context, ids []int64) ([]int64, error) {
	var out []int64
	err := c.s.read(ctx, func(ctx context.Context, q querier) (err error) {
		out, err = c.s.archive.cancelled(ctx, q, c.queueID, ids)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("look up cancelled messages in %q: %w", c.queue, err)
	}
	return out, nil
}

// holders reports, for each of ids that is still a live message of the
// queue, the consumer worker that holds it (0: none).
func (c *Consumer) holders(ctx context.Context, ids []int64) (map[int64]int64, error) {
	var out map[int64]int64
	err := c.s.read(ctx, func(ctx context.Context, q querier) (err error) {
		out, err = c.s.messages.holders(ctx, q, ids, c.queueID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("look up messages in %q: %w", c.queue, err)
	}
	return out, nil
}
