package pgqrs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// WorkerStatus is the state of a registered worker.
type WorkerStatus string

// Worker states. A worker starts ready; Run moves a consumer to polling while
// it waits for messages; suspended and interrupted workers claim nothing;
// stopped is final (the worker's name may then be reused).
const (
	WorkerReady       WorkerStatus = "ready"
	WorkerPolling     WorkerStatus = "polling"
	WorkerSuspended   WorkerStatus = "suspended"
	WorkerInterrupted WorkerStatus = "interrupted"
	WorkerStopped     WorkerStatus = "stopped"
)

// WorkerInfo describes a registered worker.
type WorkerInfo struct {
	ID          int64        `json:"id"`
	Name        string       `json:"name"`
	Queue       string       `json:"queue"` // "" for workers not bound to a queue
	Role        string       `json:"role"`  // "producer" or "consumer"
	Status      WorkerStatus `json:"status"`
	StartedAt   time.Time    `json:"started_at"`
	HeartbeatAt time.Time    `json:"heartbeat_at"`
	StoppedAt   time.Time    `json:"stopped_at,omitzero"` // zero unless stopped
}

// WorkerOption configures a [Producer] or [Consumer] when it is made.
type WorkerOption interface {
	applyWorker(*workerConfig) error
}

type workerOptionFunc func(*workerConfig) error

func (f workerOptionFunc) applyWorker(c *workerConfig) error { return f(c) }

type workerConfig struct {
	name string
}

// WithWorkerName names the worker a [Producer] or [Consumer] registers. The
// name must be unique among workers that are not stopped. The default is
// "<role>-<hostname>-<pid>-<n>".
func WithWorkerName(name string) WorkerOption {
	return workerOptionFunc(func(c *workerConfig) error {
		if err := validateName("worker", name); err != nil {
			return err
		}
		c.name = name
		return nil
	})
}

var workerSeq atomic.Int64

func defaultWorkerName(role string) string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, host)
	if host == "" {
		host = "host"
	}
	if len(host) > 64 {
		host = host[:64]
	}
	return role + "-" + host + "-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(workerSeq.Add(1), 10)
}

// worker is the registered-worker part shared by Producer and Consumer.
type worker struct {
	s       *Store
	id      int64
	name    string
	queueID int64
	queue   string
	role    string       // "producer" or "consumer"
	status  atomic.Value // WorkerStatus as last seen by this process
	// lastBeat is when this process last wrote the heartbeat (unix nanos).
	lastBeat atomic.Int64
	// shut is set by the producer's own Shutdown: only that ends a producer
	// for good (see [Producer]).
	shut atomic.Bool
}

// register looks up queue and inserts a worker row for it.
func (s *Store) register(ctx context.Context, queue, role string, opts []WorkerOption) (*worker, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := validateName("queue", queue); err != nil {
		return nil, err
	}
	var cfg workerConfig
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyWorker(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.name == "" {
		cfg.name = defaultWorkerName(role)
	}
	q, err := s.Admin().GetQueue(ctx, queue)
	if err != nil {
		return nil, err
	}
	w := &worker{s: s, name: cfg.name, queueID: q.ID, queue: q.Name, role: role}
	err = s.write(ctx, nil, func(ctx context.Context, db querier) (err error) {
		w.id, err = s.workers.register(ctx, db, cfg.name, q.ID, role)
		return err
	})
	switch {
	case errors.Is(err, errUnique):
		return nil, fmt.Errorf("register %s %q: %w", role, cfg.name, ErrWorkerNameTaken)
	case errors.Is(err, errForeignKey):
		return nil, fmt.Errorf("register %s on %q: %w", role, queue, ErrQueueNotFound)
	case err != nil:
		return nil, fmt.Errorf("register %s %q: %w", role, cfg.name, err)
	}
	w.status.Store(WorkerReady)
	w.lastBeat.Store(time.Now().UnixNano())
	return w, nil
}

// ID returns the worker's ID in pgqrs_workers.
func (w *worker) ID() int64 { return w.id }

// Name returns the worker's registered name.
func (w *worker) Name() string { return w.name }

// Queue returns the name of the worker's queue.
func (w *worker) Queue() string { return w.queue }

// usable reports why the worker may not act, as known in this process.
func (w *worker) usable() error {
	if err := w.s.check(); err != nil {
		return err
	}
	switch w.status.Load().(WorkerStatus) {
	case WorkerStopped:
		if w.role == "producer" && !w.shut.Load() {
			return nil // stopped from outside: its next heartbeat brings it back
		}
		return fmt.Errorf("worker %q: %w", w.name, ErrWorkerStopped)
	case WorkerSuspended, WorkerInterrupted:
		return fmt.Errorf("worker %q: %w", w.name, ErrWorkerSuspended)
	}
	return nil
}

// Heartbeat records that the worker is alive, with one narrow UPDATE, and
// learns the state an admin may have set (interrupted, suspended, stopped).
// A consumer's Heartbeat returns [ErrWorkerStopped] once the worker has been
// stopped, by this process or another, and [ErrWorkerNotFound] if its row
// was purged. A producer's Heartbeat brings a worker row stopped or purged
// from outside back (see [Producer]); it returns [ErrWorkerStopped] after the
// producer's own Shutdown. [Consumer.Run] heartbeats on its own;
// [Consumer.Dequeue] and the enqueue methods heartbeat when the last
// heartbeat is older than half the default interval.
func (w *worker) Heartbeat(ctx context.Context) error {
	return w.beat(ctx, nil)
}

// beat is Heartbeat, inside tx when tx is not nil (so an enqueue in the
// caller's transaction needs no second writer).
func (w *worker) beat(ctx context.Context, tx *sql.Tx) error {
	repo := w.s.workers
	beat := repo.heartbeat
	producer := w.role == "producer" && !w.shut.Load()
	if producer {
		beat = repo.producerBeat
	}
	var st WorkerStatus
	err := w.s.write(ctx, tx, func(ctx context.Context, q querier) (err error) {
		st, err = beat(ctx, q, w.id)
		if producer && errors.Is(err, sql.ErrNoRows) {
			// Purged (or its name taken): register again under the same ID.
			st, err = repo.rejoin(ctx, q, w.id, w.name, w.queueID, w.role)
			if errors.Is(err, sql.ErrNoRows) {
				st, err = WorkerStopped, nil
			}
		}
		return err
	})
	switch {
	case errors.Is(err, errForeignKey):
		err = ErrQueueNotFound
	case errors.Is(err, errUnique): // a racing registration took the name
		err = ErrWorkerNameTaken
	case errors.Is(err, sql.ErrNoRows):
		err = ErrWorkerNotFound
	}
	if err != nil {
		return fmt.Errorf("heartbeat worker %q: %w", w.name, err)
	}
	w.lastBeat.Store(time.Now().UnixNano())
	w.status.Store(WorkerStatus(st))
	if WorkerStatus(st) == WorkerStopped {
		if producer {
			// Another live worker has its name now: this one stays stopped.
			w.shut.Store(true)
		}
		return fmt.Errorf("heartbeat worker %q: %w", w.name, ErrWorkerStopped)
	}
	return nil
}

// DefaultHeartbeatInterval is how often a running worker heartbeats unless
// [RunOptions.HeartbeatInterval] says otherwise.
const DefaultHeartbeatInterval = 5 * time.Second

// touch heartbeats (inside tx when not nil) when the last heartbeat is older
// than half the default interval, so a worker that is used keeps looking
// alive without a loop. Of concurrent calls one heartbeats.
func (w *worker) touch(ctx context.Context, tx *sql.Tx) error {
	last := w.lastBeat.Load()
	if time.Since(time.Unix(0, last)) < DefaultHeartbeatInterval/2 ||
		!w.lastBeat.CompareAndSwap(last, time.Now().UnixNano()) {
		return nil
	}
	return w.beat(ctx, tx)
}

// alreadyStopped turns the refusal to stop a stopped worker into success.
func alreadyStopped(err error) error {
	var te *TransitionError
	if errors.As(err, &te) && te.From == WorkerStopped {
		return nil
	}
	return err
}

// IsHealthy reports whether the worker is not stopped and heartbeated within
// maxAge, by its row in the database.
func (w *worker) IsHealthy(ctx context.Context, maxAge time.Duration) (bool, error) {
	info, err := w.s.Admin().GetWorker(ctx, w.id)
	if err != nil {
		return false, err
	}
	return info.Status != WorkerStopped && time.Since(info.HeartbeatAt) <= maxAge, nil
}

// Interrupt asks the worker to finish its current work and end suspended: a
// running [Consumer.Run] stops claiming at its next heartbeat, lets in-flight
// handlers finish and returns an error wrapping [ErrInterrupted]. Allowed
// from ready and polling. Use [Admin.InterruptWorker] from another process.
func (w *worker) Interrupt(ctx context.Context) error {
	return w.transition(ctx, nil, WorkerInterrupted, WorkerReady, WorkerPolling)
}

// Status reads the worker's current state from the database.
func (w *worker) Status(ctx context.Context) (WorkerStatus, error) {
	st, err := w.s.workerStatus(ctx, w.s.pool, w.id)
	if err != nil {
		return "", fmt.Errorf("status of worker %q: %w", w.name, err)
	}
	w.status.Store(st)
	return st, nil
}

// Suspend stops the worker from claiming messages until Resume.
// Allowed from ready, polling and interrupted.
func (w *worker) Suspend(ctx context.Context) error {
	return w.transition(ctx, nil, WorkerSuspended, WorkerReady, WorkerPolling, WorkerInterrupted)
}

// Resume returns a suspended worker to ready.
func (w *worker) Resume(ctx context.Context) error {
	return w.transition(ctx, nil, WorkerReady, WorkerSuspended)
}

func (s *Store) workerStatus(ctx context.Context, q querier, id int64) (WorkerStatus, error) {
	var st WorkerStatus
	err := s.read(ctx, func(ctx context.Context, _ querier) (err error) {
		st, err = s.workers.status(ctx, q, id)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("worker %d: %w", id, ErrWorkerNotFound)
	}
	return st, err
}

// transition moves the worker to state to if its current state is one of
// from, as one guarded UPDATE; otherwise it returns a *TransitionError naming
// the state it found. tx, when not nil, is the transaction to run in.
func (w *worker) transition(ctx context.Context, q querier, to WorkerStatus, from ...WorkerStatus) error {
	var moved bool
	run := func(ctx context.Context, q querier) (err error) {
		moved, err = w.s.workers.transition(ctx, q, w.id, to, from)
		return err
	}
	var err error
	if q != nil {
		err = w.s.translate(run(ctx, q))
	} else {
		err = w.s.write(ctx, nil, run)
		q = w.s.pool
	}
	if err != nil {
		return fmt.Errorf("worker %q to %s: %w", w.name, to, err)
	}
	if !moved {
		cur, err := w.s.workerStatus(ctx, q, w.id)
		if err != nil {
			return err
		}
		w.status.Store(cur)
		return &TransitionError{WorkerID: w.id, From: cur, To: to}
	}
	w.status.Store(to)
	return nil
}
