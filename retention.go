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
	// Whole partitions first (Postgres): a day whose rows all expire goes
	// at once.
	var dropQueue int64
	if queue != "" {
		dropQueue = queues[0].ID
	}
	archived, dead, err = a.s.dropPartitions(ctx, false, dropQueue, r, -1)
	if err != nil {
		return archived, dead, fmt.Errorf("expire archive: %w", err)
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

// dropPartitions drops the archive's day partitions (Postgres) whose rows
// are all past their retention, at most maxDrops (negative: until none
// can go), and returns how many archived messages and dead letters went
// with them. With policy, each queue's policy applies; else r applies to
// queue queueID (0: every queue) and the other queues' rows are kept.
func (s *Store) dropPartitions(ctx context.Context, policy bool, queueID int64, r Retention, maxDrops int) (archived, dead int64, err error) {
	for i := 0; maxDrops < 0 || i < maxDrops; i++ {
		var n, d int64
		var ok bool
		err := s.write(ctx, nil, func(ctx context.Context, db querier) (err error) {
			_, n, d, ok, err = s.retention.dropPartition(ctx, db, policy, queueID, r)
			return err
		})
		if err != nil {
			return archived, dead, fmt.Errorf("drop archive partition: %w", err)
		}
		if !ok {
			break
		}
		archived, dead = archived+n, dead+d
	}
	return archived, dead, nil
}

// ArchivePartitionsAhead is how many days past today Install and the Run
// loops keep archive partitions created for (PostgreSQL).
const ArchivePartitionsAhead = 2

// maxPartitionDays bounds one [Admin.CreateArchivePartitions] call.
const maxPartitionDays = 366

// ArchivePartition is one partition of the archive on PostgreSQL, as
// [Admin.ArchivePartitions] lists it: a UTC day [From, To), or the
// default partition (Default, no bounds), which takes the rows of days that
// have no partition of their own.
type ArchivePartition struct {
	Name    string    `json:"name"`
	From    time.Time `json:"from,omitzero"`
	To      time.Time `json:"to,omitzero"`
	Default bool      `json:"default,omitempty"`
	// EstimatedRows is the planner's estimate (pg_class.reltuples), as of
	// the last VACUUM or ANALYZE of the partition; 0 before one.
	EstimatedRows int64 `json:"estimated_rows"`
}

// CreateArchivePartitions creates the archive's partitions for the UTC
// days from the day of from to the day of to (at most 366 days), on
// PostgreSQL, where the archive is partitioned by day (elsewhere it does
// nothing and returns 0). Days that have a partition are left alone, and
// so are days whose rows the default partition already holds (they stay
// there). It returns how many partitions it created. Install and every Run
// loop's retention turn create today's and the next
// [ArchivePartitionsAhead] days', so this is for creating further ahead or
// for a process that runs neither.
func (a *Admin) CreateArchivePartitions(ctx context.Context, from, to time.Time) (int, error) {
	if to.Before(from) || to.Sub(from) > maxPartitionDays*24*time.Hour {
		return 0, fmt.Errorf("%w: archive partitions from %v to %v (want from ≤ to, at most %d days)", ErrInvalidArgument, from, to, maxPartitionDays)
	}
	if err := a.s.check(); err != nil {
		return 0, err
	}
	n, err := a.s.addPartitions(ctx, from, to)
	if err != nil {
		return 0, fmt.Errorf("create archive partitions: %w", err)
	}
	return int(n), nil
}

// ArchivePartitions lists the archive's partitions on PostgreSQL, the
// default partition first, then the days, oldest first. Elsewhere the
// archive is not partitioned and the list is empty.
func (a *Admin) ArchivePartitions(ctx context.Context) ([]ArchivePartition, error) {
	var out []ArchivePartition
	err := a.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		out, err = a.s.retention.partitions(ctx, db)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("archive partitions: %w", err)
	}
	return out, nil
}

// addPartitions creates the archive partitions of the days from to to.
func (s *Store) addPartitions(ctx context.Context, from, to time.Time) (n int64, err error) {
	err = s.write(ctx, nil, func(ctx context.Context, db querier) (err error) {
		n, err = s.retention.addPartitions(ctx, db, from.UTC().Truncate(24*time.Hour), to.UTC().Truncate(24*time.Hour))
		return err
	})
	return n, err
}

// partitionsAhead creates the partitions of today and the next
// ArchivePartitionsAhead days that are missing.
func (s *Store) partitionsAhead(ctx context.Context) error {
	now := time.Now()
	_, err := s.addPartitions(ctx, now, now.Add(ArchivePartitionsAhead*24*time.Hour))
	return err
}

// compactCounts folds the counter rows of sessions that are gone, and the
// slots of long transactions, into their queues' totals (PostgreSQL; see
// migration 0010), so a metrics read sums about one row per queue and live
// session.
func (s *Store) compactCounts(ctx context.Context) error {
	return s.write(ctx, nil, func(ctx context.Context, db querier) error {
		_, err := s.stats.compact(ctx, db)
		return err
	})
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
	if err := r.c.s.partitionsAhead(r.bg); err != nil {
		r.log.Error("pgqrs: creating archive partitions failed", "err", err)
	}
	if err := r.c.s.compactCounts(r.bg); err != nil {
		r.log.Error("pgqrs: compacting the metrics' counters failed", "err", err)
	}
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
	archived, dead, err := r.c.s.dropPartitions(r.bg, true, 0, Retention{}, 10)
	if err == nil {
		var n, d int64
		n, d, err = r.c.s.expire(r.bg, r.c.queueID, p, 10)
		archived, dead = archived+n, dead+d
	}
	switch {
	case err != nil:
		r.log.Error("pgqrs: applying the retention policy failed", "err", err, "archived", archived, "dead_letters", dead)
	case archived+dead > 0:
		r.log.Debug("pgqrs: retention expired archived messages", "archived", archived, "dead_letters", dead)
	}
}
