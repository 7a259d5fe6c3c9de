package pgqrs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Admin installs and checks the schema and manages queues, archives and
// workers. Get one from [Store.Admin]; it is safe for concurrent use and
// registers no worker.
type Admin struct {
	s *Store
}

// Install creates or upgrades pgqrs's tables. It is idempotent and safe to
// run from several processes at once: all of it runs in one transaction that
// holds an advisory lock (Postgres) or the write lock (SQLite, Turso), so
// later installers wait and then find nothing to do. A database that a newer
// pgqrs upgraded is left alone and reported with [ErrSchemaNewer].
func (a *Admin) Install(ctx context.Context) error {
	if err := a.s.check(); err != nil {
		return err
	}
	if err := a.s.migrate(ctx); err != nil {
		return err
	}
	// The archive's partitions of today and the next days (PostgreSQL).
	if err := a.s.partitionsAhead(ctx); err != nil {
		return fmt.Errorf("install: archive partitions: %w", err)
	}
	return nil
}

// Verify checks that every pgqrs table and index exists, that every migration
// is applied and that no message references a missing queue. It returns a
// [*SchemaError] listing every problem it found, or [ErrSchemaNewer] for a
// database a newer pgqrs upgraded.
func (a *Admin) Verify(ctx context.Context) error {
	s := a.s
	if err := s.check(); err != nil {
		return err
	}
	var problems []string
	exists := func(check func(context.Context, querier, string) (bool, error), name string) (ok bool, err error) {
		err = s.read(ctx, func(ctx context.Context, q querier) (err error) {
			ok, err = check(ctx, q, name)
			return err
		})
		return ok, err
	}
	allTables := true
	for _, t := range []string{"pgqrs_schema_version", "pgqrs_queues", "pgqrs_workers", "pgqrs_messages", "pgqrs_archive",
		"pgqrs_workflows", "pgqrs_runs", "pgqrs_steps", "pgqrs_schedules", "pgqrs_signals", "pgqrs_signal_waits", "pgqrs_events", "pgqrs_retention"} {
		ok, err := exists(s.schema.tableExists, t)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if !ok {
			allTables = false
			problems = append(problems, "missing table "+t)
		}
	}
	for _, ix := range s.d.indexes {
		ok, err := exists(s.schema.indexExists, ix)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if !ok {
			problems = append(problems, "missing index or trigger "+ix)
		}
	}
	for _, tr := range s.d.triggers {
		var ok bool
		err := s.read(ctx, func(ctx context.Context, q querier) (err error) {
			ok, err = s.schema.triggerEnabled(ctx, q, tr)
			return err
		})
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if !ok {
			problems = append(problems, "missing or disabled trigger "+tr.name+" on "+tr.table)
		}
	}
	if allTables {
		ms, err := s.d.loadMigrations()
		if err != nil {
			return err
		}
		var applied []int64
		err = s.read(ctx, func(ctx context.Context, q querier) (err error) {
			applied, err = s.schema.applied(ctx, q)
			return err
		})
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if err := newerThan(ms, applied); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		have := map[int64]bool{}
		for _, v := range applied {
			have[v] = true
		}
		for _, m := range ms {
			if !have[int64(m.version)] {
				problems = append(problems, "migration "+m.name+" not applied")
			}
		}
		var orphans int64
		err = s.read(ctx, func(ctx context.Context, q querier) (err error) {
			orphans, err = s.schema.orphans(ctx, q)
			return err
		})
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if orphans > 0 {
			problems = append(problems, fmt.Sprintf("%d messages reference a missing queue", orphans))
		}
	}
	if len(problems) > 0 {
		return &SchemaError{Problems: problems}
	}
	return nil
}

// CreateQueue creates a queue. Names are 1 to 128 characters of letters,
// digits and "_-.:@/". It returns [ErrQueueExists] if the name is taken and
// [ErrInvalidName] for a bad name.
func (a *Admin) CreateQueue(ctx context.Context, name string) (*Queue, error) {
	if err := validateName("queue", name); err != nil {
		return nil, err
	}
	var q *Queue
	err := a.s.write(ctx, nil, func(ctx context.Context, db querier) (err error) {
		q, err = a.s.queues.insert(ctx, db, name)
		return err
	})
	if errors.Is(err, errUnique) {
		return nil, fmt.Errorf("create queue %q: %w", name, ErrQueueExists)
	}
	if err != nil {
		return nil, fmt.Errorf("create queue %q: %w", name, err)
	}
	return q, nil
}

// GetQueue returns the queue called name, or [ErrQueueNotFound].
func (a *Admin) GetQueue(ctx context.Context, name string) (*Queue, error) {
	if err := validateName("queue", name); err != nil {
		return nil, err
	}
	var q *Queue
	err := a.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		q, err = a.s.queues.byName(ctx, db, name)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("queue %q: %w", name, ErrQueueNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get queue %q: %w", name, err)
	}
	return q, nil
}

// ListQueues returns every queue, ordered by name.
func (a *Admin) ListQueues(ctx context.Context) ([]*Queue, error) {
	var qs []*Queue
	err := a.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		qs, err = a.s.queues.list(ctx, db)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	return qs, nil
}

// DeleteQueue deletes the queue called name together with its archive of
// processed messages and its stopped workers. It refuses with
// [ErrQueueInUse], changing nothing, while the queue has live messages, dead
// letters or live workers; purge or replay them and shut the workers down
// first (a worker whose process is gone: [Admin.StopWorker], or
// [Admin.ReclaimStale] once it is stale). A workflow's queue is always in use. It returns [ErrQueueNotFound]
// for an unknown name.
func (a *Admin) DeleteQueue(ctx context.Context, name string) error {
	q, err := a.GetQueue(ctx, name)
	if err != nil {
		return err
	}
	s := a.s
	err = s.inTx(ctx, func(ctx context.Context, db querier) error {
		if err := s.notAWorkflowQueue(ctx, db, q.ID); err != nil {
			return err
		}
		return s.dropQueue(ctx, db, q.ID)
	})
	if errors.Is(err, errForeignKey) {
		err = fmt.Errorf("%w: new messages or workers arrived", ErrQueueInUse)
	}
	if err != nil {
		return fmt.Errorf("delete queue %q: %w", name, err)
	}
	return nil
}

// dropQueue deletes queue queueID with its archive and stopped workers,
// inside the caller's transaction, refusing with [ErrQueueInUse] while it has
// live messages, dead letters or live workers.
func (s *Store) dropQueue(ctx context.Context, q querier, queueID int64) error {
	live, dead, workers, err := s.queues.usage(ctx, q, queueID)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrQueueNotFound
	}
	if err != nil {
		return err
	}
	if live+dead+workers > 0 {
		return fmt.Errorf("%w: %d live messages, %d dead letters, %d live workers", ErrQueueInUse, live, dead, workers)
	}
	for _, drop := range []func(context.Context, querier, int64) (int64, error){
		s.queues.purgeArchive, s.queues.deleteStoppedWorkers, s.retention.clear, s.queues.deleteByID,
	} {
		if _, err := drop(ctx, q, queueID); err != nil {
			return err
		}
	}
	return nil
}

// notAWorkflowQueue refuses with [ErrQueueInUse] when a workflow owns the
// queue: its messages drive the workflow's runs.
func (s *Store) notAWorkflowQueue(ctx context.Context, q querier, queueID int64) error {
	wf, err := s.runs.workflowByQueue(ctx, q, queueID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("%w: the queue belongs to workflow %q and its messages drive its runs", ErrQueueInUse, wf)
}

// PurgeQueue deletes every message of the queue: live, archived and dead
// letters, in one transaction, and returns how many it deleted. A workflow's
// queue returns [ErrQueueInUse]. Consumers
// holding leases on purged messages get [ErrMessageNotFound] when they settle.
func (a *Admin) PurgeQueue(ctx context.Context, name string) (int64, error) {
	q, err := a.GetQueue(ctx, name)
	if err != nil {
		return 0, err
	}
	var total int64
	err = a.s.inTx(ctx, func(ctx context.Context, db querier) error {
		if err := a.s.notAWorkflowQueue(ctx, db, q.ID); err != nil {
			return err
		}
		live, err := a.s.queues.purgeMessages(ctx, db, q.ID)
		if err != nil {
			return err
		}
		archived, err := a.s.queues.purgeArchive(ctx, db, q.ID)
		total = live + archived
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge queue %q: %w", name, err)
	}
	return total, nil
}

// PauseQueue pauses the queue called name, for every process: from their
// next claim on, its consumers ([Consumer.Dequeue], [Consumer.Run],
// [Workflow.Serve]) claim nothing from it, while handlers already running
// finish and settle as usual and producers go on enqueueing. A Run loop on
// a paused queue waits as it does on an empty one, polling and woken by
// enqueues, and claims again once the queue is resumed. The pause is kept
// in the queue's row (see [Queue.Paused] and [QueueMetrics.Paused]), so it
// outlives restarts. Pausing a paused queue does nothing (the first pause's
// time is kept). It returns [ErrQueueNotFound] for an unknown name.
func (a *Admin) PauseQueue(ctx context.Context, name string) error {
	q, err := a.GetQueue(ctx, name)
	if err != nil {
		return err
	}
	err = a.s.write(ctx, nil, func(ctx context.Context, db querier) error {
		_, err := a.s.queues.pause(ctx, db, q.ID)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("pause queue %q: %w", name, ErrQueueNotFound)
	}
	if err != nil {
		return fmt.Errorf("pause queue %q: %w", name, err)
	}
	return nil
}

// ResumeQueue ends a pause of the queue called name (see
// [Admin.PauseQueue]) and wakes its idle Run loops at once: those of this
// Store, and on Postgres, by NOTIFY, those of every process listening.
// Elsewhere Run loops of other processes claim again within their poll
// interval. Resuming a running queue does nothing. It returns
// [ErrQueueNotFound] for an unknown name.
func (a *Admin) ResumeQueue(ctx context.Context, name string) error {
	q, err := a.GetQueue(ctx, name)
	if err != nil {
		return err
	}
	err = a.s.write(ctx, nil, func(ctx context.Context, db querier) error {
		return a.s.queues.resume(ctx, db, q.ID)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("resume queue %q: %w", name, ErrQueueNotFound)
	}
	if err != nil {
		return fmt.Errorf("resume queue %q: %w", name, err)
	}
	a.s.wake(queueWake(q.ID))
	return nil
}

// QueueMetrics counts a queue's messages by state. The live states partition
// the queue: Visible + Leased + Delayed messages are live; Pending is Visible
// + Delayed (live and not leased).
type QueueMetrics struct {
	Queue    string `json:"queue"`
	Pending  int64  `json:"pending"`  // Visible + Delayed
	Visible  int64  `json:"visible"`  // claimable now (including messages whose lease expired)
	Leased   int64  `json:"leased"`   // held by a consumer whose lease has not expired
	Delayed  int64  `json:"delayed"`  // not yet visible: enqueued with a delay, or released with one
	Archived int64  `json:"archived"` // processed (or cancelled) and archived
	Dead     int64  `json:"dead"`     // dead-lettered
	// Paused reports a queue paused by [Admin.PauseQueue], PausedAt since
	// when (zero when running).
	Paused   bool      `json:"paused"`
	PausedAt time.Time `json:"paused_at,omitzero"`
	// OldestPending is the enqueue time of the oldest message not leased;
	// OldestPendingAge is its age by the database clock. Both zero when none.
	// In JSON the age is "oldest_pending_age_seconds".
	OldestPending    time.Time     `json:"oldest_pending_at,omitzero"`
	OldestPendingAge time.Duration `json:"-"`
	NewestEnqueued   time.Time     `json:"newest_enqueued_at,omitzero"` // zero when the queue has no live messages
	// Limits are the queue's flow-control settings ([Admin.SetLimits]);
	// InFlight is how many of its messages limited claims hold unexpired
	// leases on. Messages of a key group waiting behind the group's limit
	// count as Delayed.
	Limits   Limits `json:"limits,omitzero"`
	InFlight int64  `json:"in_flight"`
}

// MarshalJSON writes the metrics with the oldest pending message's age in
// seconds ("oldest_pending_age_seconds", 0 when nothing is pending).
func (m QueueMetrics) MarshalJSON() ([]byte, error) {
	type fields QueueMetrics // without this method
	return json.Marshal(struct {
		fields
		OldestPendingAgeSeconds float64 `json:"oldest_pending_age_seconds"`
	}{fields(m), m.OldestPendingAge.Seconds()})
}

// QueueMetrics returns the counts of one queue, or [ErrQueueNotFound].
//
// On PostgreSQL the live, archived and dead counts are kept by triggers
// (one small upsert per statement that inserts or deletes messages), so
// this reads a few rows however long the backlog and the archive are; the
// split of the live messages into visible, leased and delayed reads the
// leased and delayed ones through the claim index, so its cost grows with
// them, not with the backlog. OldestPending there is the oldest enqueue
// time among the delayed messages and the next 1,000 visible ones of each
// priority in claim order, which misses only a message that waits behind
// 1,000 enqueued after it at its priority. On SQLite and Turso every call
// counts rows, and every figure is exact. See docs/scaling.md.
func (a *Admin) QueueMetrics(ctx context.Context, name string) (QueueMetrics, error) {
	if err := validateName("queue", name); err != nil {
		return QueueMetrics{}, err
	}
	var m QueueMetrics
	err := a.s.read(ctx, func(ctx context.Context, q querier) (err error) {
		m, err = a.s.stats.queue(ctx, q, name)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("metrics of queue %q: %w", name, ErrQueueNotFound)
	}
	if err != nil {
		return m, fmt.Errorf("metrics of queue %q: %w", name, err)
	}
	return m, a.addLimits(ctx, &m)
}

// addLimits fills in the flow-control part of m.
func (a *Admin) addLimits(ctx context.Context, m *QueueMetrics) error {
	l, err := a.Limits(ctx, m.Queue)
	if err != nil {
		return fmt.Errorf("metrics of queue %q: %w", m.Queue, err)
	}
	m.Limits, m.InFlight = l.Limits, l.InFlight
	return nil
}

// AllQueueMetrics returns [Admin.QueueMetrics] for every queue, by name.
func (a *Admin) AllQueueMetrics(ctx context.Context) ([]QueueMetrics, error) {
	var out []QueueMetrics
	err := a.s.read(ctx, func(ctx context.Context, q querier) (err error) {
		out, err = a.s.stats.queues(ctx, q)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("queue metrics: %w", err)
	}
	for i := range out {
		if err := a.addLimits(ctx, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SystemStats summarises the whole store.
type SystemStats struct {
	Queues        int64 `json:"queues"`
	LiveMessages  int64 `json:"live_messages"`
	Archived      int64 `json:"archived"`
	Dead          int64 `json:"dead"`
	LiveWorkers   int64 `json:"live_workers"`   // workers not stopped
	Workers       int64 `json:"workers"`        // all registered workers, stopped ones included
	SchemaVersion int64 `json:"schema_version"` // highest applied migration
}

// SystemStats returns counts across all queues (from the counters on
// PostgreSQL, as [Admin.QueueMetrics] reads them).
func (a *Admin) SystemStats(ctx context.Context) (SystemStats, error) {
	var st SystemStats
	err := a.s.read(ctx, func(ctx context.Context, q querier) (err error) {
		st, err = a.s.stats.system(ctx, q)
		return err
	})
	if err != nil {
		return st, fmt.Errorf("system stats: %w", err)
	}
	return st, nil
}

// GetArchived returns archived (or dead-lettered) message id of queue. It
// returns [ErrMessageNotFound] if the queue's archive has no such message.
func (a *Admin) GetArchived(ctx context.Context, queue string, id int64) (*ArchivedMessage, error) {
	q, err := a.GetQueue(ctx, queue)
	if err != nil {
		return nil, err
	}
	var m *ArchivedMessage
	err = a.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		m, err = a.s.archive.get(ctx, db, q, id)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("archived message %d in %q: %w", id, queue, ErrMessageNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("archived message %d in %q: %w", id, queue, err)
	}
	return m, nil
}

// ArchivePage selects one page of [Admin.ListArchived]: at most Limit
// messages (default 100, at most the store's batch limit) with IDs below
// BeforeID (0: from the newest). Pass the last ID of a page as the next
// page's BeforeID.
type ArchivePage struct {
	Limit    int
	BeforeID int64
}

// ListArchived returns a page of the queue's archived messages, newest
// first by message ID, which is enqueue order: a message enqueued earlier
// but archived later (after retries or a delay) comes after the messages
// enqueued since, whatever their archive time. Paging by ID stays stable
// while messages are archived. Dead letters are not included.
func (a *Admin) ListArchived(ctx context.Context, queue string, page ArchivePage) ([]*ArchivedMessage, error) {
	return a.listArchive(ctx, queue, false, page)
}

// pageBounds validates a listing's page (limit, before-ID) and returns it
// with its defaults: 100 rows, from the newest ID.
func (a *Admin) pageBounds(what, queue string, limit int, before int64) (int, int64, error) {
	if limit < 0 || before < 0 {
		return 0, 0, fmt.Errorf("%s of %q: %w: page limit and before-ID must not be negative", what, queue, ErrInvalidArgument)
	}
	if limit > a.s.cfg.maxBatch {
		return 0, 0, fmt.Errorf("%s of %q: %w: page of %d, limit %d", what, queue, ErrBatchTooLarge, limit, a.s.cfg.maxBatch)
	}
	if limit == 0 {
		limit = 100
	}
	if before == 0 {
		before = math.MaxInt64
	}
	return limit, before, nil
}

func (a *Admin) listArchive(ctx context.Context, queue string, dead bool, page ArchivePage) ([]*ArchivedMessage, error) {
	var err error
	if page.Limit, page.BeforeID, err = a.pageBounds("list archive", queue, page.Limit, page.BeforeID); err != nil {
		return nil, err
	}
	q, err := a.GetQueue(ctx, queue)
	if err != nil {
		return nil, err
	}
	var out []*ArchivedMessage
	err = a.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		out, err = a.s.archive.list(ctx, db, q, dead, page.BeforeID, page.Limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list archive of %q: %w", queue, err)
	}
	return out, nil
}

// CountArchived returns how many archived messages (dead letters excluded)
// the queue has: from the counters on PostgreSQL (see [Admin.Recount]).
func (a *Admin) CountArchived(ctx context.Context, queue string) (int64, error) {
	q, err := a.GetQueue(ctx, queue)
	if err != nil {
		return 0, err
	}
	var n int64
	err = a.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		n, err = a.s.archive.count(ctx, db, q.ID, false)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("count archive of %q: %w", queue, err)
	}
	return n, nil
}

// Recount counts the live messages and the archive again and replaces
// PostgreSQL's counters with the result; elsewhere it does nothing. The
// counters are kept by triggers, so only statements that bypass them
// (TRUNCATE, a DELETE straight on an archive partition, a restore with
// triggers disabled) call for it. Inserts, deletes and archiving wait
// while it counts (it holds SHARE locks on the messages and the archive);
// reads go on.
func (a *Admin) Recount(ctx context.Context) error {
	if err := a.s.check(); err != nil {
		return err
	}
	err := a.s.write(ctx, nil, func(ctx context.Context, q querier) error {
		return a.s.stats.recount(ctx, q)
	})
	if err != nil {
		return fmt.Errorf("recount: %w", err)
	}
	return nil
}

// ListWorkers returns the workers registered on queue ("" for all queues),
// stopped ones included, oldest first.
func (a *Admin) ListWorkers(ctx context.Context, queue string) ([]WorkerInfo, error) {
	var queueID int64
	if queue != "" {
		q, err := a.GetQueue(ctx, queue)
		if err != nil {
			return nil, err
		}
		queueID = q.ID
	}
	var out []WorkerInfo
	err := a.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		out, err = a.s.workers.list(ctx, db, queueID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	return out, nil
}

// GetWorker returns worker id, or [ErrWorkerNotFound].
func (a *Admin) GetWorker(ctx context.Context, id int64) (WorkerInfo, error) {
	var w WorkerInfo
	err := a.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		w, err = a.s.workers.get(ctx, db, id)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return w, fmt.Errorf("worker %d: %w", id, ErrWorkerNotFound)
	}
	return w, err
}

// ListDeadLetters returns a page of the queue's dead letters, newest first
// by message ID (enqueue order, as for [Admin.ListArchived]),
// each with its read count and last error.
func (a *Admin) ListDeadLetters(ctx context.Context, queue string, page ArchivePage) ([]*ArchivedMessage, error) {
	return a.listArchive(ctx, queue, true, page)
}

// CountDeadLetters returns how many dead letters the queue has.
func (a *Admin) CountDeadLetters(ctx context.Context, queue string) (int64, error) {
	q, err := a.GetQueue(ctx, queue)
	if err != nil {
		return 0, err
	}
	var n int64
	err = a.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		n, err = a.s.archive.count(ctx, db, q.ID, true)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("count dead letters of %q: %w", queue, err)
	}
	return n, nil
}

// ReplayDeadLetters puts the given dead letters of queue back in the queue,
// visible at once as if new: read count zero and no last error (the dead
// letter's reason goes with it; read it first with [Admin.GetArchived] if it
// matters), keeping their IDs. IDs that are not dead letters of
// the queue are ignored. It returns how many it replayed.
//
// A dead letter with a [Key] stays dead while a live message holds its key,
// and of several dead letters with one key only the newest is replayed (at
// most one live message has a key); the count leaves them out. Replay
// ignores [UniqueFor]: the period counts enqueues, and a replay is none.
func (a *Admin) ReplayDeadLetters(ctx context.Context, queue string, ids []int64) (int64, error) {
	if len(ids) > a.s.cfg.maxBatch {
		return 0, fmt.Errorf("replay dead letters of %q: %w: %d IDs, limit %d", queue, ErrBatchTooLarge, len(ids), a.s.cfg.maxBatch)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	return a.replay(ctx, queue, ids, false)
}

// ReplayAllDeadLetters replays every dead letter of queue, as
// [Admin.ReplayDeadLetters] does.
func (a *Admin) ReplayAllDeadLetters(ctx context.Context, queue string) (int64, error) {
	return a.replay(ctx, queue, nil, true)
}

func (a *Admin) replay(ctx context.Context, queue string, ids []int64, all bool) (int64, error) {
	q, err := a.GetQueue(ctx, queue)
	if err != nil {
		return 0, err
	}
	var n int64
	// A key taken by an enqueue that committed while the statement ran
	// fails it with a unique violation (Postgres), having changed nothing;
	// run again, it sees that message and leaves the dead letter be.
	for attempt := 1; ; attempt++ {
		err = a.s.write(ctx, nil, func(ctx context.Context, db querier) (err error) {
			n, err = a.s.archive.replay(ctx, db, q.ID, ids, all)
			return err
		})
		if !errors.Is(err, errUnique) || attempt == keyAttempts {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("replay dead letters of %q: %w", queue, err)
	}
	return n, nil
}

// PurgeDeadLetters deletes every dead letter of queue and returns how many.
func (a *Admin) PurgeDeadLetters(ctx context.Context, queue string) (int64, error) {
	q, err := a.GetQueue(ctx, queue)
	if err != nil {
		return 0, err
	}
	var n int64
	err = a.s.write(ctx, nil, func(ctx context.Context, db querier) (err error) {
		n, err = a.s.archive.purgeDead(ctx, db, q.ID)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge dead letters of %q: %w", queue, err)
	}
	return n, nil
}

// CancelMessage cancels live message id of queue: a pending or delayed
// message leaves the queue and is kept in its archive marked cancelled,
// where [Admin.GetArchived] and [Admin.ListArchived] show it with
// Cancelled set (it is no dead letter). A leased message is cancelled
// too, whoever holds it: its holder's Archive, Delete, Release and
// ExtendVisibility return [ErrMessageCancelled], and a [Consumer.Run]
// handler's context is cancelled at the loop's next lease extension
// (within a third of its visibility timeout), with ErrMessageCancelled as
// its cause, and its outcome is dropped.
//
// It returns [ErrMessageNotFound] when the queue has no live message id:
// one never enqueued, already archived (a dead letter included: it is out
// of the queue already; purge it with [Admin.PurgeDeadLetters]), cancelled
// or deleted. The messages of a workflow's queue drive its runs and are
// refused with [ErrInvalidArgument]: cancel the run with [Runs.Cancel].
func (a *Admin) CancelMessage(ctx context.Context, queue string, id int64) error {
	ok, err := a.cancel(ctx, queue, []int64{id})
	if err != nil {
		return err
	}
	if !ok[0] {
		return fmt.Errorf("cancel message %d in %q: %w", id, queue, ErrMessageNotFound)
	}
	return nil
}

// CancelMessages cancels every live message of ids in queue, as
// [Admin.CancelMessage] does, in one statement, and reports per ID (in the
// order of ids) whether it was cancelled.
func (a *Admin) CancelMessages(ctx context.Context, queue string, ids []int64) ([]bool, error) {
	if len(ids) > a.s.cfg.maxBatch {
		return nil, fmt.Errorf("cancel messages in %q: %w: %d IDs, limit %d", queue, ErrBatchTooLarge, len(ids), a.s.cfg.maxBatch)
	}
	return a.cancel(ctx, queue, ids)
}

func (a *Admin) cancel(ctx context.Context, queue string, ids []int64) ([]bool, error) {
	q, err := a.GetQueue(ctx, queue)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return []bool{}, nil
	}
	var done []int64
	err = a.s.inTx(ctx, func(ctx context.Context, db querier) (err error) {
		wf, err := a.s.runs.workflowByQueue(ctx, db, q.ID)
		switch {
		case err == nil:
			return fmt.Errorf("%w: queue %q belongs to workflow %q, whose runs its messages drive: cancel the run with Runs.Cancel (pgqrs workflow cancel)",
				ErrInvalidArgument, queue, wf)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		done, err = a.s.messages.cancel(ctx, db, q.ID, ids)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cancel messages in %q: %w", queue, err)
	}
	return hits(ids, done), nil
}

// MoveToDLQ dead-letters every visible message, of any queue, that has been
// claimed maxAttempts times or more without being archived: for consumers
// that use [Consumer.Dequeue] directly, which does not dead-letter unless
// given [MaxAttempts]. Leased messages are left to their holders. It returns
// how many it moved.
func (a *Admin) MoveToDLQ(ctx context.Context, maxAttempts int) (int64, error) {
	if maxAttempts < 1 {
		return 0, fmt.Errorf("%w: max attempts must be at least 1, got %d", ErrInvalidArgument, maxAttempts)
	}
	var moved []int64
	err := a.s.write(ctx, nil, func(ctx context.Context, db querier) (err error) {
		moved, err = a.s.messages.moveToDLQ(ctx, db, maxAttempts)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("move to dead-letter queue: %w", err)
	}
	return int64(len(moved)), nil
}

// WorkerHealth counts workers by state. Stale counts producers and
// consumers that are ready, polling or interrupted but have not heartbeated
// within the stale age given to [Admin.WorkerHealth].
type WorkerHealth struct {
	Queue       string `json:"queue,omitempty"` // "" for all queues
	Ready       int64  `json:"ready"`
	Polling     int64  `json:"polling"`
	Suspended   int64  `json:"suspended"`
	Interrupted int64  `json:"interrupted"`
	Stopped     int64  `json:"stopped"`
	Stale       int64  `json:"stale"`
}

// WorkerHealth returns worker counts for queue, or for all queues when queue
// is "". staleAfter must be positive.
func (a *Admin) WorkerHealth(ctx context.Context, queue string, staleAfter time.Duration) (WorkerHealth, error) {
	h := WorkerHealth{Queue: queue}
	if staleAfter <= 0 {
		return h, fmt.Errorf("%w: stale age must be positive, got %v", ErrInvalidArgument, staleAfter)
	}
	var queueID int64
	if queue != "" {
		q, err := a.GetQueue(ctx, queue)
		if err != nil {
			return h, err
		}
		queueID = q.ID
	}
	err := a.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		h, err = a.s.workers.health(ctx, db, queueID, staleAfter)
		return err
	})
	h.Queue = queue
	if err != nil {
		return h, fmt.Errorf("worker health: %w", err)
	}
	return h, nil
}

// ReclaimStale declares stale producers and consumers (ready, polling or
// interrupted, no heartbeat within staleAfter) stopped and releases every
// message the consumers hold, visible at once, in one transaction, without
// waiting for the leases to expire. Read counts are kept: the crashed attempt
// counts. It is safe to run from any number of processes at once. A consumer
// declared stale that is in fact alive loses its leases (its settle calls get
// [ErrLeaseLost]), claims nothing more ([ErrWorkerStopped]) and its Run loop
// ends. A producer declared stale that is in fact alive (one idle for
// longer than staleAfter) comes back at its next enqueue (see [Producer]).
// [Consumer.Run] reclaims the stale consumers of its own queue by itself
// (see [RunOptions.ReclaimAfter]). Time the call waits for the write lock
// does not count as the workers' silence. It returns the numbers of workers
// stopped and messages released.
func (a *Admin) ReclaimStale(ctx context.Context, staleAfter time.Duration) (workers, messages int64, err error) {
	if staleAfter <= 0 {
		return 0, 0, fmt.Errorf("%w: stale age must be positive, got %v", ErrInvalidArgument, staleAfter)
	}
	began := time.Now()
	err = a.s.inTx(ctx, func(ctx context.Context, db querier) error {
		stopped, err := a.s.workers.stopStale(ctx, db, staleAfter+time.Since(began))
		if err != nil {
			return err
		}
		workers, messages = int64(len(stopped)), 0
		if len(stopped) == 0 {
			return nil
		}
		messages, err = a.s.workers.release(ctx, db, stopped)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("reclaim stale workers: %w", err)
	}
	return workers, messages, nil
}

// reclaimQueue is the reclaim of a Run loop: it stops the consumers of
// queueID other than self that have not heartbeated within staleAfter and
// releases their messages, in one transaction, and returns how many of
// each. A read comes first, so when nobody is stale (nearly always) it
// writes nothing. The stop is one guarded UPDATE, so of many loops reclaiming
// at once each stale consumer is stopped, and its messages released, by one.
// The time the call took before its UPDATE ran (the read, and the wait for
// the write lock) is added to staleAfter:
// while this process waited, so did every other writer's heartbeat (on a
// single-writer backend, behind this very transaction), and that silence is
// not theirs.
func (s *Store) reclaimQueue(ctx context.Context, queueID, self int64, staleAfter time.Duration) (workers, messages int64, err error) {
	began := time.Now()
	var stale bool
	err = s.read(ctx, func(ctx context.Context, q querier) (err error) {
		stale, err = s.workers.anyStaleConsumer(ctx, q, queueID, self, staleAfter)
		return err
	})
	if err != nil || !stale {
		return 0, 0, err
	}
	err = s.inTx(ctx, func(ctx context.Context, db querier) error {
		workers, messages = 0, 0
		stopped, err := s.workers.stopStaleConsumers(ctx, db, queueID, self, staleAfter+time.Since(began))
		if err != nil || len(stopped) == 0 {
			return err
		}
		workers = int64(len(stopped))
		messages, err = s.workers.release(ctx, db, stopped)
		return err
	})
	return workers, messages, err
}

// StopWorker marks worker id stopped and releases every message it holds,
// visible at once with read counts kept, in one transaction: for a worker
// whose process is gone (a crashed producer blocks [Admin.DeleteQueue] until
// it is stopped). A consumer stopped this way claims nothing more
// ([ErrWorkerStopped]), its settle calls on the released messages get
// [ErrLeaseLost] and its Run loop ends; a producer that is in fact alive
// comes back at its next enqueue (see [Producer]). Stopping a stopped worker
// does nothing. It returns how many messages it released, and
// [ErrWorkerNotFound] for an unknown ID.
func (a *Admin) StopWorker(ctx context.Context, id int64) (int64, error) {
	info, err := a.GetWorker(ctx, id)
	if err != nil {
		return 0, err
	}
	w := &worker{s: a.s, id: id, name: info.Name}
	var released int64
	err = a.s.inTx(ctx, func(ctx context.Context, q querier) error {
		released = 0
		err := alreadyStopped(w.transition(ctx, q, WorkerStopped, WorkerReady, WorkerPolling, WorkerSuspended, WorkerInterrupted))
		if err != nil {
			return err
		}
		released, err = a.s.workers.releaseHeld(ctx, q, id)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("stop worker %d: %w", id, err)
	}
	return released, nil
}

// PurgeWorkers deletes the stopped workers that stopped olderThan ago or
// earlier (0: every stopped worker) and that no live message references,
// and returns how many.
func (a *Admin) PurgeWorkers(ctx context.Context, olderThan time.Duration) (int64, error) {
	if olderThan < 0 {
		return 0, fmt.Errorf("%w: age must not be negative, got %v", ErrInvalidArgument, olderThan)
	}
	var n int64
	err := a.s.write(ctx, nil, func(ctx context.Context, db querier) (err error) {
		n, err = a.s.workers.purge(ctx, db, olderThan)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge workers: %w", err)
	}
	return n, nil
}

// InterruptWorker asks worker id, which may run in another process, to
// finish its current work and end suspended (see [Consumer.Run]). It returns
// [ErrWorkerNotFound] or a [*TransitionError] unless the worker is ready or
// polling.
func (a *Admin) InterruptWorker(ctx context.Context, id int64) error {
	info, err := a.GetWorker(ctx, id)
	if err != nil {
		return err
	}
	w := &worker{s: a.s, id: id, name: info.Name}
	return w.Interrupt(ctx)
}
