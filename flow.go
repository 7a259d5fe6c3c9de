package pgqrs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Flow control: limits a queue keeps in the database, enforced by the claim
// for every consumer in every process (docs/flow-control.md, and the exact
// guarantees in docs/design.md, "Flow control").

// Limits are a queue's flow-control settings. The zero value is no limits:
// the queue is claimed by the plain claim, exactly as before limits existed.
//
//   - MaxInFlight: at most this many of the queue's messages leased at
//     once, across all consumers and processes (0: no limit).
//   - PerGroup: at most this many messages of one key group ([Group])
//     leased or waiting to be claimed at once, taken in enqueue order
//     (0: the default, 1, which runs each group strictly in order).
//   - Rate and RatePeriod: at most Rate claimed messages per RatePeriod
//     (both set, or both zero). Periods are windows aligned to the
//     database clock (for 1s: each whole second), counted in the store.
type Limits struct {
	MaxInFlight int
	PerGroup    int
	Rate        int
	RatePeriod  time.Duration
}

// QueueLimits is what [Admin.Limits] reports: the settings, and how many of
// the queue's messages limited claims hold unexpired leases on now.
type QueueLimits struct {
	Limits
	InFlight int64
}

// MarshalJSON writes the settings as {"max_in_flight": 16, "per_group": 1,
// "rate": 100, "rate_period": "1s"}, leaving out those not set.
func (l Limits) MarshalJSON() ([]byte, error) {
	out := struct {
		MaxInFlight int    `json:"max_in_flight,omitempty"`
		PerGroup    int    `json:"per_group,omitempty"`
		Rate        int    `json:"rate,omitempty"`
		RatePeriod  string `json:"rate_period,omitempty"`
	}{MaxInFlight: l.MaxInFlight, PerGroup: l.PerGroup, Rate: l.Rate}
	if l.RatePeriod > 0 {
		out.RatePeriod = l.RatePeriod.String()
	}
	return json.Marshal(out)
}

// MarshalJSON writes the settings as Limits does, with "in_flight".
func (q QueueLimits) MarshalJSON() ([]byte, error) {
	l, err := json.Marshal(q.Limits)
	if err != nil {
		return nil, err
	}
	return json.Marshal(struct {
		Limits   json.RawMessage `json:"limits"`
		InFlight int64           `json:"in_flight"`
	}{l, q.InFlight})
}

// IsZero reports whether l sets no limit at all.
func (l Limits) IsZero() bool { return l == Limits{} }

// String is the settings in the form of the CLI's flags, e.g.
// "max-in-flight=16 per-group=1 rate=100/1s", or "none".
func (l Limits) String() string {
	var parts []string
	if l.MaxInFlight > 0 {
		parts = append(parts, fmt.Sprintf("max-in-flight=%d", l.MaxInFlight))
	}
	if l.PerGroup > 0 {
		parts = append(parts, fmt.Sprintf("per-group=%d", l.PerGroup))
	}
	if l.Rate > 0 {
		parts = append(parts, fmt.Sprintf("rate=%d/%s", l.Rate, l.RatePeriod))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func (l Limits) validate() error {
	switch {
	case l.MaxInFlight < 0 || l.MaxInFlight > math.MaxInt32:
		return fmt.Errorf("%w: MaxInFlight must be 0 (none) to %d, got %d", ErrInvalidArgument, math.MaxInt32, l.MaxInFlight)
	case l.PerGroup < 0 || l.PerGroup > math.MaxInt32:
		return fmt.Errorf("%w: PerGroup must be 0 (the default, 1) to %d, got %d", ErrInvalidArgument, math.MaxInt32, l.PerGroup)
	case l.Rate < 0 || l.Rate > math.MaxInt32:
		return fmt.Errorf("%w: Rate must be 0 (none) to %d, got %d", ErrInvalidArgument, math.MaxInt32, l.Rate)
	case l.RatePeriod < 0:
		return fmt.Errorf("%w: negative RatePeriod %v", ErrInvalidArgument, l.RatePeriod)
	case (l.Rate == 0) != (l.RatePeriod == 0):
		return fmt.Errorf("%w: Rate and RatePeriod go together (got %d per %v)", ErrInvalidArgument, l.Rate, l.RatePeriod)
	case l.RatePeriod%time.Millisecond != 0:
		return fmt.Errorf("%w: RatePeriod must be whole milliseconds, got %v", ErrInvalidArgument, l.RatePeriod)
	case l.RatePeriod > 366*24*time.Hour:
		return fmt.Errorf("%w: RatePeriod of %v is longer than a year", ErrInvalidArgument, l.RatePeriod)
	}
	return nil
}

// Group puts the message in key group key (a customer, an account, a
// document). A queue leases at most [Limits.PerGroup] messages of one group
// at once (default 1), in enqueue order: with the default, the next
// message of a group is claimable only once the one before it was archived,
// deleted or dead-lettered, while different groups run in parallel. A
// failed message keeps its place at the head of its group and holds the
// group back until it succeeds or dies. A grouped message enqueued behind
// others of its group waits for them whatever its own [Delay] or [At]. The
// key follows the rules of [Key]: not empty, at most [MaxKeyBytes], UTF-8
// without NUL.
func Group(key string) EnqueueOption {
	return enqueueOptionFunc(func(c *enqueueConfig) error {
		switch {
		case key == "":
			return fmt.Errorf("%w: a group must not be empty", ErrInvalidArgument)
		case len(key) > MaxKeyBytes:
			return fmt.Errorf("%w: group of %d bytes, limit %d", ErrInvalidArgument, len(key), MaxKeyBytes)
		case !utf8.ValidString(key):
			return fmt.Errorf("%w: group %q: not valid UTF-8", ErrInvalidArgument, key)
		case strings.ContainsRune(key, 0):
			return fmt.Errorf("%w: group %q holds a NUL character", ErrInvalidArgument, key)
		}
		c.group = key
		return nil
	})
}

// SetLimits replaces the flow-control settings of the queue called name
// with l (the zero [Limits] clears them all). They take effect at the next
// claim of every consumer in every process; leases taken before stay until
// they end. Raising PerGroup makes waiting messages of each group
// claimable at once; lowering it lets the messages already claimable
// finish. Workflows take the settings of their queue (the workflow's name).
// It returns [ErrQueueNotFound] for an unknown queue and
// [ErrInvalidArgument] for settings out of range.
func (a *Admin) SetLimits(ctx context.Context, name string, l Limits) error {
	if err := l.validate(); err != nil {
		return fmt.Errorf("set limits of queue %q: %w", name, err)
	}
	q, err := a.GetQueue(ctx, name)
	if err != nil {
		return err
	}
	err = a.s.inTx(ctx, func(ctx context.Context, db querier) error {
		// The group triggers' lock first, so no enqueue or settle of a group
		// counts against the old per-group limit while promote counts
		// against the new one.
		if err := a.s.flows.lockGroups(ctx, db, q.ID); err != nil {
			return err
		}
		if err := a.s.flows.set(ctx, db, q.ID, l); err != nil {
			return err
		}
		_, err := a.s.flows.promote(ctx, db, q.ID)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("set limits of queue %q: %w", name, ErrQueueNotFound)
	}
	if err != nil {
		return fmt.Errorf("set limits of queue %q: %w", name, err)
	}
	a.s.wake(queueWake(q.ID))
	return nil
}

// Limits returns the flow-control settings of the queue called name and
// the number of its messages that limited claims hold unexpired leases on.
// It returns [ErrQueueNotFound] for an unknown queue.
func (a *Admin) Limits(ctx context.Context, name string) (QueueLimits, error) {
	q, err := a.GetQueue(ctx, name)
	if err != nil {
		return QueueLimits{}, err
	}
	var st flowState
	err = a.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		st, err = a.s.flows.settings(ctx, db, q.ID)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return QueueLimits{}, fmt.Errorf("limits of queue %q: %w", name, ErrQueueNotFound)
	}
	if err != nil {
		return QueueLimits{}, fmt.Errorf("limits of queue %q: %w", name, err)
	}
	return QueueLimits{Limits: st.limits, InFlight: st.inFlight}, nil
}

// queueLimited reads whether the consumer's queue has max_in_flight or
// rate_limit set (after a fast claim came back empty: it refuses such a
// queue).
func (c *Consumer) queueLimited(ctx context.Context) (bool, error) {
	var st flowState
	err := c.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		st, err = c.s.flows.settings(ctx, db, c.queueID)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return false, ErrQueueNotFound
	}
	return st.hasLimited, err
}

// claimLimited is the claim of a limited queue, in one transaction: the
// queue's flow lock (flowRepo.lock), which serialises the queue's limited
// claims and reads its settings and the time after the lock; the claim,
// bounded by the rate window's room and by max_in_flight in the statement;
// and the window's new count. limited is false when the queue turned out
// to have no limits (nothing was claimed; the caller claims the plain way).
// wait is how long until the next rate window when this one is full.
func (c *Consumer) claimLimited(ctx context.Context, n int, cfg dequeueConfig) (msgs []*Message, wait time.Duration, limited bool, err error) {
	err = c.s.inTx(ctx, func(ctx context.Context, q querier) error {
		msgs, wait, limited = nil, 0, true
		st, err := c.s.flows.lock(ctx, q, c.queueID)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrQueueNotFound
		}
		if err != nil {
			return err
		}
		if !st.hasLimited {
			limited = false
			return nil
		}
		room, used := n, 0
		var window time.Time
		rate, period := st.limits.Rate, st.limits.RatePeriod
		if rate > 0 {
			window = st.now.Truncate(period)
			// The window never moves back (a clock stepped back keeps the
			// later window and its count).
			if !st.windowAt.IsZero() && !st.windowAt.Before(window) {
				window, used = st.windowAt, st.rateCount
			}
			room = min(n, rate-used)
			if room <= 0 {
				wait = window.Add(period).Sub(st.now)
				return nil
			}
		}
		msgs, err = c.s.flows.claim(ctx, q, &Queue{ID: c.queueID, Name: c.queue}, room, cfg.vt, c.id, st.limits.MaxInFlight, st.now)
		if err != nil {
			return err
		}
		if rate > 0 && len(msgs) > 0 {
			if err := c.s.flows.count(ctx, q, c.queueID, window, used+len(msgs)); err != nil {
				return err
			}
			if used+len(msgs) >= rate {
				wait = window.Add(period).Sub(st.now)
			}
		}
		return nil
	})
	return msgs, wait, limited, err
}
