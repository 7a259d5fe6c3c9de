package pgqrs

import (
	"context"
	"fmt"
	"time"
)

// Retention is how long a queue keeps what it is done with: its archived
// messages (done or cancelled) and its dead letters, each counted from when
// it left the queue. Zero keeps that kind forever.
type Retention struct {
	Archived    time.Duration `json:"archived,omitzero"`
	DeadLetters time.Duration `json:"dead_letters,omitzero"`
}

func (r Retention) validate() error {
	if r.Archived < 0 || r.DeadLetters < 0 {
		return fmt.Errorf("%w: retention must not be negative (archived %v, dead letters %v)", ErrInvalidArgument, r.Archived, r.DeadLetters)
	}
	return nil
}

// expireBatch is the most rows one expire statement deletes: each batch is
// its own short transaction, so retention never holds locks (or SQLite's
// single writer) for long, however much has piled up.
const expireBatch = 1000

// DefaultRetentionInterval is how often a Run loop applies its queue's
// retention policy, unless [RunOptions.RetentionInterval] says otherwise.
const DefaultRetentionInterval = time.Minute

// SetRetention sets how long queue keeps its archived messages and dead
// letters. The policy is kept in the store; every [Consumer.Run] loop (and
// workflow worker) of the queue applies it every
// [RunOptions.RetentionInterval], deleting in batches of at most a thousand
// rows. A zero Retention removes the policy (everything is kept). It returns
// [ErrQueueNotFound] for an unknown queue and [ErrInvalidArgument] for a
// negative duration.
func (a *Admin) SetRetention(ctx context.Context, queue string, r Retention) error {
	if err := r.validate(); err != nil {
		return err
	}
	q, err := a.GetQueue(ctx, queue)
	if err != nil {
		return err
	}
	err = a.s.write(ctx, nil, func(ctx context.Context, db querier) error {
		if r == (Retention{}) {
			_, err := a.s.retention.clear(ctx, db, q.ID)
			return err
		}
		return a.s.retention.put(ctx, db, q.ID, r)
	})
	if err != nil {
		return fmt.Errorf("set retention of %q: %w", queue, err)
	}
	return nil
}

// GetRetention returns queue's retention policy: the zero Retention when it
// keeps everything.
func (a *Admin) GetRetention(ctx context.Context, queue string) (Retention, error) {
	q, err := a.GetQueue(ctx, queue)
	if err != nil {
		return Retention{}, err
	}
	var r Retention
	err = a.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		r, err = a.s.retention.get(ctx, db, q.ID)
		return err
	})
	if err != nil {
		return Retention{}, fmt.Errorf("retention of %q: %w", queue, err)
	}
	return r, nil
}

// ExpireArchive deletes queue's archived messages older than r.Archived and
// its dead letters older than r.DeadLetters (a zero duration leaves that
// kind alone), in batches of at most a thousand rows, each its own short
// transaction, until none is left or ctx ends. An empty queue name expires
// every queue's archive. It returns how many of each it deleted; after an
// error, what the batches before it deleted stays deleted.
//
// It is what a retention policy's Run loops do (see [Admin.SetRetention]),
// for one-off clean-ups and for processes that run no consumer.
func (a *Admin) ExpireArchive(ctx context.Context, queue string, r Retention) (archived, dead int64, err error) {
	if err := r.validate(); err != nil {
		return 0, 0, err
	}
	var queues []*Queue
	if queue == "" {
		if queues, err = a.ListQueues(ctx); err != nil {
			return 0, 0, err
		}
	} else {
		q, err := a.GetQueue(ctx, queue)
		if err != nil {
			return 0, 0, err
		}
		queues = []*Queue{q}
	}
	for _, q := range queues {
		n, d, err := a.s.expire(ctx, q.ID, r, -1)
		archived, dead = archived+n, dead+d
		if err != nil {
			return archived, dead, fmt.Errorf("expire archive of %q: %w", q.Name, err)
		}
	}
	return archived, dead, nil
}

// expire applies r to queue queueID in batches of expireBatch, at most
// maxBatches per kind (negative: until done).
func (s *Store) expire(ctx context.Context, queueID int64, r Retention, maxBatches int) (archived, dead int64, err error) {
	for _, kind := range []struct {
		dead bool
		age  time.Duration
		n    *int64
	}{{false, r.Archived, &archived}, {true, r.DeadLetters, &dead}} {
		if kind.age == 0 {
			continue
		}
		for i := 0; maxBatches < 0 || i < maxBatches; i++ {
			var n int64
			err := s.write(ctx, nil, func(ctx context.Context, db querier) (err error) {
				n, err = s.retention.expire(ctx, db, queueID, kind.dead, kind.age, expireBatch)
				return err
			})
			*kind.n += n
			if err != nil {
				return archived, dead, err
			}
			if n < expireBatch {
				break
			}
		}
	}
	return archived, dead, nil
}

// retain applies the queue's retention policy, at most every
// RetentionInterval and at most ten batches of each kind per call, so a
// large backlog of expired rows is worked off over several heartbeats
// without delaying this one much.
func (r *runner) retain() {
	if r.o.RetentionInterval < 0 || time.Since(r.retained) < r.o.RetentionInterval {
		return
	}
	r.retained = time.Now()
	var p Retention
	err := r.c.s.read(r.bg, func(ctx context.Context, db querier) (err error) {
		p, err = r.c.s.retention.get(ctx, db, r.c.queueID)
		return err
	})
	if err != nil {
		r.log.Error("pgqrs: reading the retention policy failed", "err", err)
		return
	}
	if p == (Retention{}) {
		return
	}
	archived, dead, err := r.c.s.expire(r.bg, r.c.queueID, p, 10)
	switch {
	case err != nil:
		r.log.Error("pgqrs: applying the retention policy failed", "err", err, "archived", archived, "dead_letters", dead)
	case archived+dead > 0:
		r.log.Debug("pgqrs: retention expired archived messages", "archived", archived, "dead_letters", dead)
	}
}
