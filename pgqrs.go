// Package pgqrs is a durable message queue and workflow engine on
// database/sql.
//
// It keeps queues, messages, workers and workflow runs in ordinary tables of the
// application's own PostgreSQL, SQLite or Turso (libSQL) database, so
// enqueueing can share a transaction with the application's writes (see
// [Producer.EnqueueTx]) and there is no broker to run.
//
// # Queues
//
// A [Producer] adds messages to a queue; a [Consumer] claims them with
// [Consumer.Dequeue], which leases each message for a visibility timeout, and
// settles each one with [Consumer.Archive], [Consumer.Delete] or
// [Consumer.Release]. A lease that expires makes the message visible again, so
// a consumer that dies loses nothing: the message is delivered again after its
// lease runs out. Leases are fenced: only the consumer that holds the current
// lease may settle a message; anyone else gets [ErrLeaseLost].
//
//	s, err := pgqrs.Open(ctx, "sqlite:app.db")
//	if err != nil { ... }
//	defer s.Close()
//	if err := s.Admin().Install(ctx); err != nil { ... }
//	if _, err := s.Admin().CreateQueue(ctx, "emails"); err != nil { ... }
//	p, _ := s.Producer(ctx, "emails")
//	id, _ := p.Enqueue(ctx, map[string]string{"to": "ada@example.com"})
//	c, _ := s.Consumer(ctx, "emails")
//	msgs, _ := c.Dequeue(ctx, 10)
//	for _, m := range msgs {
//		// ... do the work ...
//		_ = c.Archive(ctx, m.ID)
//	}
//
// # Priorities, unique jobs, headers
//
// Enqueue options shape each message: [Priority] (0, the default, is the
// most urgent; a claim takes the most urgent visible messages first),
// [Key] (at most one live message per queue and key, enforced by the
// database across processes; a duplicate enqueue inserts nothing and
// returns the holder's ID with [ErrDuplicate]), [UniqueFor] (the key also
// stays taken by messages enqueued within a period, archived or not), and
// [Header] (string metadata delivered in [Message.Headers]).
// [Producer.EnqueueJobs] enqueues a batch whose jobs each have their own
// options, in one statement, with one [Enqueued] result per job:
//
//	id, err := p.Enqueue(ctx, invoice, pgqrs.Key("invoice-42"), pgqrs.Priority(1))
//	if errors.Is(err, pgqrs.ErrDuplicate) {
//		// already queued as message id; nothing was inserted
//	}
//
// # Running consumers
//
// Most services run [Consumer.Run], the poll loop: it claims in batches,
// runs handlers with bounded concurrency, extends leases while a handler is
// slow, archives successes, retries failures after an exponential backoff
// and dead-letters a message after its last attempt, wakes as soon as a
// message is enqueued (LISTEN/NOTIFY on Postgres, in-process on every
// backend) with a bounded poll as fallback, and shuts down gracefully when
// its context is cancelled:
//
//	err := c.Run(ctx, func(ctx context.Context, m *pgqrs.Message) error {
//		return send(ctx, m.Payload) // nil archives; an error retries later
//	}, &pgqrs.RunOptions{Concurrency: 8})
//
// [HandlerFor] adapts a function of the decoded payload to a [Handler]; a
// payload that does not decode is dead-lettered at once with the decode
// error instead of being retried, as is any message whose handler returns
// an error marked [Permanent]:
//
//	err := c.Run(ctx, pgqrs.HandlerFor(func(ctx context.Context, m *pgqrs.Message, e Email) error {
//		return send(ctx, e.To, e.Subject)
//	}), nil)
//
// Workers register in pgqrs_workers and heartbeat; [Admin] reports their
// health, reclaims the messages of workers that died
// ([Admin.ReclaimStale]), and manages dead letters.
//
// An operator can pause a queue for every process ([Admin.PauseQueue]:
// consumers claim nothing, running handlers finish, producers go on
// enqueueing) and resume it ([Admin.ResumeQueue], which wakes idle Run
// loops at once), and take back a message that should not run
// ([Admin.CancelMessage]): pending, delayed or leased, it leaves the queue
// for the archive, marked cancelled, and a Run loop cancels the context of
// a handler running it. See docs/operations.md.
//
// # Flow control
//
// A queue's limits live in the database and bind every consumer in every
// process ([Admin.SetLimits], [Limits]): at most MaxInFlight of its
// messages leased at once, at most Rate claims per RatePeriod (a Run loop
// waits for the next window), and key groups: messages enqueued with
// [Group] run in enqueue order, at most PerGroup (default 1) of one group
// at once, different groups in parallel. A queue without limits is claimed
// exactly as before. See docs/flow-control.md.
//
// # Workflows
//
// A [Workflow] is a named Go function of typed input and output whose
// [Step]s are persisted: after a crash or a suspension the run starts over
// and completed steps return their recorded results instead of running
// again. Steps retry by a [RetryPolicy] with the retry scheduled in the store,
// [Sleep] waits durably, a step can [Pause] its run, and runs are awaited
// with [Workflow.Result] and read, cancelled, resumed, retried, listed and
// purged through [Store.Runs]. Each workflow owns a queue of its name;
// [Workflow.Serve] runs its runs on [Consumer.Run]:
//
//	var greet = pgqrs.NewWorkflow("greet", func(ctx context.Context, run *pgqrs.Run, name string) (string, error) {
//		return pgqrs.Step(ctx, run, "hello", func(ctx context.Context) (string, error) {
//			return "hello, " + name, nil
//		})
//	})
//
//	greet.Register(ctx, s)
//	go greet.Serve(ctx, s, &pgqrs.RunOptions{Concurrency: 8})
//	id, err := greet.Trigger(ctx, s, "ada")
//	out, err := greet.Result(ctx, s, id)
//
// See docs/workflows.md for the guarantees, stated exactly.
//
// # Schedules
//
// A periodic schedule ([Schedules.Add]) enqueues a payload to a queue, or
// starts a run of a workflow, at every occurrence of a cron expression
// ("0 3 * * *", @daily, @every 10m) in a time zone. Schedules are rows in
// the database; a scheduler claims each occurrence with a compare-and-set
// in the transaction that enqueues it, so it is enqueued exactly once
// however many processes run one, and occurrences missed while none ran
// collapse into one message. Run a scheduler beside a consumer with
// [RunOptions].Scheduler, or alone with [Store.RunScheduler]:
//
//	s.Schedules().Add(ctx, pgqrs.Schedule{Name: "nightly", Cron: "0 3 * * *",
//		TimeZone: "Europe/Berlin", Queue: "reports", Payload: report{Kind: "daily"}})
//	err := c.Run(ctx, handle, &pgqrs.RunOptions{Scheduler: true})
//
// See docs/schedules.md for the cron syntax, daylight saving and the
// guarantees.
//
// # Backends
//
// pgqrs imports no SQL driver other than lib/pq, which it uses for LISTEN;
// the application imports the one it uses:
//
//	import _ "github.com/lib/pq"                                // Postgres
//	import _ "modernc.org/sqlite"                               // SQLite
//	import _ "github.com/tursodatabase/libsql-client-go/libsql" // Turso / libSQL
//
// [Open] picks the backend from the DSN and owns the pool it opens; [New]
// borrows a *sql.DB the application already has and never closes it.
// SQLite and Turso admit one writer at a time: a [Store] serialises its own
// writes inside the process, so producers and consumers sharing a Store never
// see "database is locked".
package pgqrs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// Dialect names the SQL backend behind a [Store].
type Dialect string

const (
	Postgres Dialect = "postgres" // github.com/lib/pq (driver name "postgres")
	SQLite   Dialect = "sqlite"   // modernc.org/sqlite (driver name "sqlite")
	Turso    Dialect = "turso"    // github.com/tursodatabase/libsql-client-go (driver name "libsql")
)

// allDialects are the backends, in the order Open tries their DSN schemes.
var allDialects = []Dialect{Postgres, SQLite, Turso}

// impl returns d's dialect for pgqrs's tables in schema ("" for the
// default place: the search_path on Postgres, the database elsewhere).
func (d Dialect) impl(schema string) (*dialect, error) {
	switch d {
	case Postgres:
		return newPostgresDialect(schema), nil
	case SQLite, Turso:
		if schema != "" {
			return nil, fmt.Errorf("%w: WithSchema is only supported on %s, not %s", ErrInvalidArgument, Postgres, d)
		}
		if d == SQLite {
			return newSQLiteDialect(), nil
		}
		return newTursoDialect(), nil
	}
	return nil, fmt.Errorf("%w: unknown dialect %q (want %q, %q or %q)", ErrInvalidArgument, string(d), Postgres, SQLite, Turso)
}

// Sentinel errors. Every error pgqrs returns wraps at most one of these, so
// callers can test with [errors.Is].
var (
	// ErrClosed is returned by every method of a Store, and of the producers,
	// consumers and admins made from it, after [Store.Close].
	ErrClosed = errors.New("pgqrs: store is closed")
	// ErrInvalidDSN is returned by Open for a DSN it cannot read or whose
	// scheme names no supported backend. The message shows the DSN without
	// its password, token or query, or not at all when it cannot be read.
	ErrInvalidDSN = errors.New("pgqrs: invalid DSN")
	// ErrDriverNotImported is returned by Open when the database/sql driver
	// for the DSN's backend is not registered; the message names the import
	// to add.
	ErrDriverNotImported = errors.New("pgqrs: database driver not imported")
	// ErrUnreachable is returned by Open when the database does not answer
	// a first query. The message never contains a password or token.
	ErrUnreachable = errors.New("pgqrs: database unreachable")
	// ErrAuthFailed is returned by Open when the database answers but
	// refuses the credentials: a wrong password, a role that may not log in
	// or has no pg_hba.conf entry (Postgres SQLSTATE 28P01, 28000), a
	// missing, expired or wrongly signed token (Turso: HTTP 401). The
	// message never contains the password or token.
	ErrAuthFailed = errors.New("pgqrs: authentication failed")
	// ErrInvalidArgument is returned for arguments that are out of range:
	// negative durations, a batch size below one, a nil *sql.DB or *sql.Tx,
	// an option that does not apply to the backend.
	ErrInvalidArgument = errors.New("pgqrs: invalid argument")
	// ErrInvalidName is returned for a queue, worker or schema name that is
	// empty, too long or contains characters outside the allowed set.
	ErrInvalidName = errors.New("pgqrs: invalid name")
	// ErrInvalidPayload is returned by the Enqueue methods for a payload that
	// is not valid JSON or cannot be marshalled to JSON, and for workflow
	// inputs, outputs and step results alike. Valid JSON means valid UTF-8
	// too, and no string may hold a NUL character (\u0000): Postgres cannot
	// store one, so every backend refuses it.
	ErrInvalidPayload = errors.New("pgqrs: invalid payload")
	// ErrPayloadTooLarge is returned by the Enqueue methods for a payload
	// larger than the store's limit (see [WithMaxPayloadBytes]).
	ErrPayloadTooLarge = errors.New("pgqrs: payload too large")
	// ErrBatchTooLarge is returned when a batch has more items than the
	// store's limit (see [WithMaxBatch]).
	ErrBatchTooLarge = errors.New("pgqrs: batch too large")
	// ErrDuplicate is returned by [Producer.Enqueue], [Producer.EnqueueTx],
	// [Producer.EnqueueBatch] and [Producer.EnqueueBatchTx] when a message
	// with a [Key] is not enqueued because another message holds the key.
	// The ID they return with it is the holder's; nothing was inserted.
	// [Producer.EnqueueJobs] reports duplicates per job instead
	// ([Enqueued.Duplicate]).
	ErrDuplicate = errors.New("pgqrs: duplicate key")
	// ErrQueueNotFound is returned when no queue has the given name.
	ErrQueueNotFound = errors.New("pgqrs: queue not found")
	// ErrQueueExists is returned by [Admin.CreateQueue] when the name is taken.
	ErrQueueExists = errors.New("pgqrs: queue already exists")
	// ErrQueueInUse is returned by [Admin.DeleteQueue] while live messages,
	// dead letters or live workers still reference the queue.
	ErrQueueInUse = errors.New("pgqrs: queue in use")
	// ErrMessageNotFound is returned when no live message has the given ID in
	// the consumer's queue (it never existed, or was archived or deleted), and
	// by the archive lookups for an unknown ID.
	ErrMessageNotFound = errors.New("pgqrs: message not found")
	// ErrMessageCancelled is returned by the single-message settle methods
	// of a [Consumer] (Archive, Delete, Release, ExtendVisibility and their
	// Tx forms) for a message an admin cancelled ([Admin.CancelMessage])
	// while the consumer held it; the call changed nothing. It is also the
	// cause ([context.Cause]) of a [Consumer.Run] handler's cancelled
	// context when its message was cancelled.
	ErrMessageCancelled = errors.New("pgqrs: message cancelled")
	// ErrLeaseLost is returned by the single-message settle methods of a
	// [Consumer] when the message exists but the consumer does not hold its
	// lease: the lease expired and another consumer claimed it, or it was
	// released. The call changed nothing.
	ErrLeaseLost = errors.New("pgqrs: lease lost")
	// ErrWorkerNameTaken is returned when a live (not stopped) worker already
	// has the requested name.
	ErrWorkerNameTaken = errors.New("pgqrs: worker name taken")
	// ErrWorkerNotFound is returned for a worker ID that does not exist.
	ErrWorkerNotFound = errors.New("pgqrs: worker not found")
	// ErrWorkerStopped is returned by a [Producer] or [Consumer] whose worker
	// has been shut down, and by operations that need a running worker.
	ErrWorkerStopped = errors.New("pgqrs: worker stopped")
	// ErrWorkerSuspended is returned by [Consumer.Dequeue] while the
	// consumer's worker is suspended or interrupted.
	ErrWorkerSuspended = errors.New("pgqrs: worker suspended")
	// ErrInterrupted is returned by [Consumer.Run] when the worker was
	// interrupted (see [Admin.InterruptWorker]); the worker ends suspended.
	ErrInterrupted = errors.New("pgqrs: worker interrupted")
	// ErrInvalidTransition is wrapped by [*TransitionError].
	ErrInvalidTransition = errors.New("pgqrs: invalid worker state transition")
	// ErrWorkflowNotFound is returned by [Workflow.TriggerTx] for a workflow
	// never registered ([Workflow.Register], [Workflow.Serve],
	// [Workflow.Trigger] register it), and by [Runs.List], [Runs.Purge]
	// and [Admin.DeleteWorkflow] for an unknown workflow name.
	ErrWorkflowNotFound = errors.New("pgqrs: workflow not registered")
	// ErrRunNotFound is returned for a run ID that does not exist.
	ErrRunNotFound = errors.New("pgqrs: run not found")
	// ErrRunFinished is returned by [Runs.Cancel] and [Runs.Resume]
	// for a run that already ended (SUCCESS, ERROR or CANCELLED).
	ErrRunFinished = errors.New("pgqrs: run already finished")
	// ErrRunState is returned when a run is not in a state the operation
	// needs: [Runs.Resume] of a run that is not paused, [Runs.Retry] of
	// one that did not fail.
	ErrRunState = errors.New("pgqrs: run is not in a state that allows this")
	// ErrRunCancelled is returned by [Step] and [Sleep] once the run was
	// cancelled, and by [Workflow.Result] for a cancelled run.
	ErrRunCancelled = errors.New("pgqrs: run cancelled")
	// ErrRunFailed is wrapped by [*RunError], the failure of a finished run.
	ErrRunFailed = errors.New("pgqrs: run failed")
	// ErrSuspended is returned by [Step] and [Sleep] once the run waits: for
	// a step's retry, a sleep's end, or a pause. The workflow function must
	// return it (wrapped or not); the run continues on a later delivery.
	ErrSuspended = errors.New("pgqrs: run suspended until later; return this error")
	// ErrDuplicateStep is returned by [Step] and [Sleep] for a step name the
	// run already used in this execution.
	ErrDuplicateStep = errors.New("pgqrs: duplicate step name")
	// ErrScheduleNotFound is returned by the methods of [Schedules] for a
	// schedule name that does not exist.
	ErrScheduleNotFound = errors.New("pgqrs: schedule not found")
	// ErrInvalidSchedule is wrapped by [*ScheduleError], returned by
	// [Schedules.Add] for a definition it cannot use.
	ErrInvalidSchedule = errors.New("pgqrs: invalid schedule")
	// ErrNondeterministic is wrapped by [*NondeterminismError], returned by
	// [Step] and [Sleep] when an execution of a run leaves the path of steps
	// the run recorded.
	ErrNondeterministic = errors.New("pgqrs: workflow replay diverged from the recorded steps")
	// ErrSchema is wrapped by [*SchemaError], returned by [Admin.Verify].
	ErrSchema = errors.New("pgqrs: schema check failed")
	// ErrSchemaNewer is returned by [Admin.Install] and [Admin.Verify] when
	// the database has migrations this version of pgqrs does not know: a
	// newer pgqrs upgraded it. Upgrade this program too; its statements may
	// no longer fit the tables.
	ErrSchemaNewer = errors.New("pgqrs: the database schema is newer than this pgqrs")
)

// SchemaError lists what [Admin.Verify] found missing or inconsistent.
type SchemaError struct {
	Problems []string
}

func (e *SchemaError) Error() string {
	return "pgqrs: schema check failed: " + strings.Join(e.Problems, "; ")
}

// Unwrap returns [ErrSchema].
func (e *SchemaError) Unwrap() error { return ErrSchema }

// TransitionError reports a worker state change that the worker's current
// state does not allow.
type TransitionError struct {
	WorkerID int64
	From, To WorkerStatus
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("pgqrs: worker %d cannot go from %s to %s", e.WorkerID, e.From, e.To)
}

// Unwrap returns [ErrInvalidTransition].
func (e *TransitionError) Unwrap() error { return ErrInvalidTransition }

// The result types below (Message, ArchivedMessage, Queue, QueueMetrics,
// SystemStats, WorkerInfo, WorkerHealth, RunInfo, StepInfo, WorkflowInfo)
// marshal to JSON with snake_case names, the documents `pgqrs … --json`
// prints: times in RFC 3339 (UTC), a time or text that does not apply
// omitted, payloads embedded as JSON.

// Message is one delivery of a queued message to a consumer.
type Message struct {
	ID      int64           `json:"id"`
	Queue   string          `json:"queue"`
	Payload json.RawMessage `json:"payload"`
	// ReadCount is the number of times the message has been claimed,
	// this delivery included.
	ReadCount  int       `json:"read_count"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	// VisibleAt is when the current lease expires and the message becomes
	// visible to other consumers again.
	VisibleAt time.Time `json:"visible_at"`
	// LastError is the error recorded by the last failed attempt, if any.
	LastError string `json:"last_error,omitempty"`
	// Priority is the message's priority, 0 (most urgent) to [MaxPriority].
	Priority int `json:"priority"`
	// Headers are the metadata given with [Header] or [Headers]; nil for
	// none.
	Headers map[string]string `json:"headers,omitempty"`
}

// ArchivedMessage is a message that was archived after it was processed, or
// dead-lettered because it failed too often.
type ArchivedMessage struct {
	ID         int64             `json:"id"`
	Queue      string            `json:"queue"`
	Payload    json.RawMessage   `json:"payload"`
	ReadCount  int               `json:"read_count"`
	EnqueuedAt time.Time         `json:"enqueued_at"`
	ArchivedAt time.Time         `json:"archived_at"`
	Dead       bool              `json:"dead"` // dead-lettered rather than archived on success
	LastError  string            `json:"last_error,omitempty"`
	Priority   int               `json:"priority"`
	Headers    map[string]string `json:"headers,omitempty"`
	// Cancelled: removed by an administrator's cancel rather than processed.
	Cancelled bool `json:"cancelled,omitempty"`
}

// Queue is a named queue.
type Queue struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Paused reports a queue paused by [Admin.PauseQueue]: no consumer
	// claims from it until [Admin.ResumeQueue]. PausedAt is since when
	// (zero when running).
	Paused   bool      `json:"paused"`
	PausedAt time.Time `json:"paused_at,omitzero"`
}

// Option configures a [Store]. Options are validated by [New] and [Open],
// which return the first invalid option's error.
type Option interface {
	apply(*config) error
}

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

type config struct {
	listenDSN       string
	schema          string
	maxPayloadBytes int
	maxBatch        int
	unprepared      bool
	mw              middleware   // WithMiddleware
	log             *slog.Logger // WithLogger; nil: slog.Default() when used
}

func defaultConfig() config {
	return config{maxPayloadBytes: 1 << 20, maxBatch: 1000}
}

// WithSchema places pgqrs's tables in the named PostgreSQL schema, which
// [Admin.Install] creates if needed. The name must be a plain identifier:
// a letter or underscore, then letters, digits or underscores, at most 63
// bytes. Postgres only; the default is the connection's current schema.
func WithSchema(name string) Option {
	return optionFunc(func(c *config) error {
		if err := validateIdent(name); err != nil {
			return err
		}
		c.schema = name
		return nil
	})
}

// WithListenDSN gives a Store made with [New] on Postgres the DSN for its
// LISTEN connection, so idle [Consumer.Run] loops wake as soon as a message
// is enqueued by any process. [Open] uses its own DSN. Without one, Run
// loops wake at once only for messages enqueued through the same Store, and
// otherwise within their poll interval.
func WithListenDSN(dsn string) Option {
	return optionFunc(func(c *config) error {
		if dsn == "" {
			return fmt.Errorf("%w: empty listen DSN", ErrInvalidArgument)
		}
		c.listenDSN = dsn
		return nil
	})
}

// WithMaxPayloadBytes limits the size of one message payload. Default 1 MiB.
func WithMaxPayloadBytes(n int) Option {
	return optionFunc(func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%w: max payload bytes must be positive, got %d", ErrInvalidArgument, n)
		}
		c.maxPayloadBytes = n
		return nil
	})
}

// WithMaxBatch limits how many messages one batch call may enqueue, claim or
// settle. Default 1000.
func WithMaxBatch(n int) Option {
	return optionFunc(func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%w: max batch must be positive, got %d", ErrInvalidArgument, n)
		}
		c.maxBatch = n
		return nil
	})
}

// WithLogger sets where the Store's background work logs: the Run loops
// of [Consumer.Run] and [Workflow.Serve] (unless [RunOptions.Logger] says
// otherwise), [Store.RunScheduler] and the Postgres LISTEN connection. The
// library logs only what an operator should see (errors, warnings, a few
// infos) and debug events. The default is [slog.Default], looked up when
// used; silencing is explicit: WithLogger(slog.New(slog.DiscardHandler)). A
// nil logger returns [ErrInvalidArgument].
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger (to silence the Store, pass slog.New(slog.DiscardHandler))", ErrInvalidArgument)
		}
		c.log = l
		return nil
	})
}

// logger is the Store's logger: WithLogger's, or slog.Default().
func (s *Store) logger() *slog.Logger {
	if s.cfg.log != nil {
		return s.cfg.log
	}
	return slog.Default()
}

// WithPreparedStatements(false) makes the Store send every statement as
// text instead of preparing it once per connection. Prepared statements are
// the default on PostgreSQL and SQLite (never on Turso): the database parses
// each statement once, and lib/pq saves a round trip per call. Turn them off
// when the pool goes through a pooler that does not keep prepared
// statements (PgBouncer in transaction mode before 1.21), or when something
// else runs DISCARD ALL / DEALLOCATE ALL on its connections.
// [Store.Close] releases the prepared statements; a Store on a borrowed
// pool should be closed when no longer needed.
func WithPreparedStatements(on bool) Option {
	return optionFunc(func(c *config) error {
		c.unprepared = !on
		return nil
	})
}

// Store is a handle on pgqrs's tables in one database. It is safe for
// concurrent use. Make one per database and share it.
type Store struct {
	db     *sql.DB
	pool   *stmtCache // db, running statements prepared once per connection
	d      *dialect
	cfg    config
	owns   bool // Close closes db
	closed atomic.Bool
	wmu    writeLock // serialises writes where d.serializeWrites

	notify     notifier // in-process wakeups of Run loops
	listenDSN  string   // Postgres: DSN for the LISTEN connection
	listenOnce sync.Once
	listenMu   sync.Mutex // guards stopListen against a concurrent Close
	stopListen func()
	listening  atomic.Bool // the LISTEN connection is up

	queues    queueRepo
	archive   archiveRepo
	workers   workerRepo
	messages  messageRepo
	stats     statsRepo
	runs      runRepo
	signals   signalRepo
	schema    schemaRepo
	schedules scheduleRepo
	retention retentionRepo
	flows     flowRepo
	hooks     *testHooks    // nil outside tests
	workflows sync.Map      // workflow name → workflowRef, once registered
	waitPoll  time.Duration // Runs.Wait's fixed poll (0: 10ms doubling to 1s); tests set an hour
}

// New returns a Store on db, which must be an open pool for the backend d.
// The Store borrows db: [Store.Close] leaves it open.
//
// For SQLite, open db with WAL, a busy timeout and foreign keys on (Open does
// this for you), for example
// "file:app.db?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)".
//
// For Turso, prefer Open: it bounds connects by the caller's deadline, which
// libSQL's WebSocket dial ignores on a pool you opened yourself (docs/turso.md).
func New(db *sql.DB, d Dialect, opts ...Option) (*Store, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: nil *sql.DB", ErrInvalidArgument)
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.apply(&cfg); err != nil {
			return nil, err
		}
	}
	impl, err := d.impl(cfg.schema)
	if err != nil {
		return nil, err
	}
	return &Store{db: db, pool: &stmtCache{db: db, off: !impl.prepare || cfg.unprepared}, d: impl, cfg: cfg, listenDSN: cfg.listenDSN,
		queues: queueRepo{impl}, archive: archiveRepo{impl}, workers: workerRepo{impl}, messages: messageRepo{impl}, stats: statsRepo{impl}, runs: runRepo{impl}, schema: schemaRepo{impl},
		schedules: scheduleRepo{impl}, signals: signalRepo{impl}, retention: retentionRepo{impl}, flows: flowRepo{impl}}, nil
}

// Open opens a pool for dsn, configures it for pgqrs and checks with a real
// query that the database answers. The Store owns the pool and closes it in
// [Store.Close].
//
// Recognised DSNs:
//
//	postgres://user:pass@host:5432/db?sslmode=disable   (also postgresql://)
//	host=/run/postgresql user=app password=... dbname=app  (libpq key=value)
//	sqlite:path/to/app.db, sqlite::memory:, file:path/to/app.db
//	libsql://host?authToken=..., http(s)://host:port, ws(s)://host:port
//
// A DSN that cannot be read returns [ErrInvalidDSN]; a server that does not
// answer [ErrUnreachable]; one that refuses the credentials [ErrAuthFailed].
// No error shows a password, a token or the DSN's query.
//
// SQLite files are opened with WAL, synchronous=NORMAL, a 10 s busy timeout,
// foreign keys on and immediate transactions. ":memory:" databases use a
// single connection (each connection would otherwise see its own database).
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	info, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	d, driver, source := info.dialect, info.driver, info.source
	if !slices.Contains(sql.Drivers(), driver) {
		impl, _ := d.impl("")
		return nil, fmt.Errorf("%w: no database/sql driver %q is registered for %s; add: import _ %q",
			ErrDriverNotImported, driver, d, impl.driverImport)
	}
	db, err := openPool(d, driver, source)
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %s", ErrInvalidDSN, info.shown, redactErr(err, info.secrets))
	}
	s, err := New(db, d, opts...)
	if err != nil {
		db.Close()
		return nil, err
	}
	// Idle = open: the libSQL WebSocket transport redials otherwise.
	db.SetMaxOpenConns(s.d.poolSize)
	db.SetMaxIdleConns(s.d.poolSize)
	if strings.Contains(source, ":memory:") {
		db.SetMaxOpenConns(1) // each connection would see its own database
	}
	s.owns = true
	if s.listenDSN == "" && s.d.listen != nil {
		s.listenDSN = dsn
	}
	// libSQL's Ping does nothing: check with a real query under a deadline.
	// Not every driver honours ctx while it connects (lib/pq's startup
	// handshake does not), so wait for the answer or ctx, whichever is first.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	answer := make(chan error, 1)
	go func() {
		var one int
		answer <- db.QueryRowContext(pctx, "SELECT 1").Scan(&one)
	}()
	var err2 error
	select {
	case err2 = <-answer:
	case <-pctx.Done():
		err2 = pctx.Err()
		go func() { <-answer; db.Close() }()
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, info.shown, err2)
	}
	if err2 != nil {
		db.Close()
		sentinel := ErrUnreachable
		if s.d.isAuthFailed(err2) {
			sentinel = ErrAuthFailed
		}
		return nil, fmt.Errorf("%w: %s: %w", sentinel, info.shown, &redactedError{err: err2, secrets: info.secrets})
	}
	return s, nil
}

// dsnInfo is what Open needs to know about a DSN.
type dsnInfo struct {
	dialect        Dialect
	driver, source string   // for sql.Open
	shown          string   // the DSN as errors show it: no password, token or query
	secrets        []string // texts that must never appear in an error
}

// parseDSN maps a DSN to its dialect, driver name and driver data source:
// the backend whose dialect lists the DSN's scheme reads it. No error it
// returns contains a password, a token or a query value.
func parseDSN(dsn string) (dsnInfo, error) {
	var all []*dialect
	for _, d := range allDialects {
		impl, _ := d.impl("")
		all = append(all, impl)
	}
	scheme, rest, ok := strings.Cut(dsn, ":")
	if !ok || !isScheme(scheme) {
		for _, d := range all {
			if d.keyValueDSN && strings.Contains(dsn, "=") {
				return d.readDSN(dsn, "", dsn)
			}
		}
		return dsnInfo{}, fmt.Errorf("%w: the DSN has no scheme (%s)", ErrInvalidDSN, wantSchemes(all))
	}
	for _, d := range all {
		if slices.Contains(d.schemes, strings.ToLower(scheme)) {
			return d.readDSN(dsn, strings.ToLower(scheme), rest)
		}
	}
	return dsnInfo{}, fmt.Errorf("%w: unknown scheme %q (%s)", ErrInvalidDSN, scheme, wantSchemes(all))
}

// wantSchemes lists the DSN forms the dialects read, for errors.
func wantSchemes(all []*dialect) string {
	var forms []string
	for _, d := range all {
		forms = append(forms, d.dsnForms)
	}
	return "want " + strings.Join(forms, ", ")
}

// isScheme reports whether s is a URL scheme: a letter, then letters,
// digits, "+", "-" or ".".
func isScheme(s string) bool {
	for i, r := range s {
		letter := (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return false
		}
	}
	return s != ""
}

// urlProblem says what url.Parse disliked without quoting the URL, whose
// text may be part of a password.
func urlProblem(err error) string {
	var esc url.EscapeError
	var host url.InvalidHostError
	switch msg := err.Error(); {
	case errors.As(err, &esc):
		return "cannot parse URL: a % escape is not two hex digits (percent-encode special characters in the password)"
	case errors.As(err, &host):
		return "cannot parse URL: invalid character in the host"
	case strings.Contains(msg, "invalid port"):
		return "cannot parse URL: invalid port"
	case strings.Contains(msg, "missing ']'"):
		return "cannot parse URL: unclosed [ in the host"
	case strings.Contains(msg, "control character"):
		return "cannot parse URL: control character in URL"
	}
	return "cannot parse URL"
}

// redactDSN returns a URL-shaped dsn without the password, the query and
// the fragment. It never falls back to the input: when it cannot tell the
// user info from the rest (an "@" after a "/", "?" or "#"), it shows only
// the scheme. A DSN without a scheme shows as "(DSN hidden)".
func redactDSN(dsn string) string {
	scheme, rest, ok := strings.Cut(dsn, ":")
	if !ok || !isScheme(scheme) {
		return "(DSN hidden)"
	}
	out := scheme + ":"
	if r, ok := strings.CutPrefix(rest, "//"); ok {
		out, rest = out+"//", r
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest, "@"); at > end {
		return out + "…"
	} else if at >= 0 {
		user, _, hasPassword := strings.Cut(rest[:at], ":")
		out += user
		if hasPassword {
			out += ":***"
		}
		out += "@"
		rest = rest[at+1:]
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i] + "?…"
	}
	return out + rest
}

// dsnSecrets returns the password and query values of a URL-shaped dsn,
// raw and decoded, for redactErr. Query values of keys that hold
// credentials count at any length, others from 8 bytes (shorter ones are
// words like "disable" that errors may legitimately contain).
func dsnSecrets(dsn string) []string {
	var secrets []string
	_, rest, _ := strings.Cut(dsn, ":")
	rest = strings.TrimPrefix(rest, "//")
	// The password runs from the first ":" of the user info to the last "@"
	// before the host. Where the DSN is ambiguous (a raw ":" or "@" in the
	// user name, the password or the query), take every candidate: from
	// any of the first few ":" to any of the first few "@" (short ones only
	// in the usual place, or they would garble whole messages).
	ats := []int{}
	for i, n := 0, 0; i < len(rest) && n < 8; i++ {
		if rest[i] == '@' {
			ats, n = append(ats, i), n+1
		}
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		ats = append(ats, at)
	}
	for _, at := range ats {
		for i, n := 0, 0; i < at && n < 8; i++ {
			if rest[i] != ':' {
				continue
			}
			n++
			pw := rest[i+1 : at]
			if n > 1 && len(pw) < 4 {
				continue
			}
			secrets = append(secrets, pw)
			if dec, err := url.PathUnescape(pw); err == nil {
				secrets = append(secrets, dec)
			}
		}
	}
	// The query's key=value pairs, split as a URL parser splits them, for
	// a query starting at any of the first few "?" or "#": which one starts
	// it is ambiguous when the user info holds them raw.
	var pairs []string
	for i, n := 0, 0; i < len(dsn) && n < 16; i++ {
		if dsn[i] != '?' && dsn[i] != '#' {
			continue
		}
		n++
		query, _, _ := strings.Cut(dsn[i+1:], "#")
		pairs = append(pairs, strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == ';' })...)
	}
	for _, kv := range pairs {
		k, v, _ := strings.Cut(kv, "=")
		dec, err := url.QueryUnescape(v)
		if err != nil {
			dec = v
		}
		if len(dec) >= 8 || isCredentialKey(k) {
			secrets = append(secrets, v, dec)
		}
	}
	return secrets
}

func isCredentialKey(k string) bool {
	k = strings.ToLower(k)
	for _, w := range []string{"pass", "token", "secret", "auth", "key", "jwt"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// redactedError is a driver error whose text has the DSN's secrets removed;
// errors.Is and errors.As still see the original (context.DeadlineExceeded,
// *pq.Error, ...).
type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string { return redactErr(e.err, e.secrets) }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr renders err with every secret removed, longest first (so a
// secret that contains another is removed whole).
func redactErr(err error, secrets []string) string {
	msg := err.Error()
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "***")
		}
	}
	return msg
}

// Close marks the Store closed, so later calls return [ErrClosed], releases
// its prepared statements, and closes the pool if [Open] made it. A pool
// passed to [New] stays open. Close does
// not stop workers; shut them down first.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.listenMu.Lock()
	if s.stopListen != nil {
		s.stopListen()
		s.stopListen = nil
	}
	s.listenMu.Unlock()
	s.pool.close()
	if s.owns {
		if err := s.db.Close(); err != nil && !s.d.isCloseNoise(err) {
			return err
		}
	}
	return nil
}

// DB returns the pool the Store uses, for running application transactions
// to pass to the Tx methods.
func (s *Store) DB() *sql.DB { return s.db }

// Dialect returns the Store's backend.
func (s *Store) Dialect() Dialect { return s.d.name }

// Admin returns the administrative API of the Store.
func (s *Store) Admin() *Admin { return &Admin{s: s} }

func validateIdent(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("%w: schema %q must be 1 to 63 bytes", ErrInvalidName, name)
	}
	for i, r := range name {
		letter := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !letter && (i == 0 || r < '0' || r > '9') {
			return fmt.Errorf("%w: schema %q: use a letter or underscore, then letters, digits or underscores", ErrInvalidName, name)
		}
	}
	return nil
}

// validateName checks queue, worker and workflow names: 1 to 128
// characters, each a letter or digit of any script, a combining mark, or one
// of "_-.:@/". Names are always bound as parameters, never spliced into SQL;
// the rule keeps them printable and unambiguous on a command line.
func validateName(kind, name string) error {
	if name == "" || utf8.RuneCountInString(name) > 128 || !utf8.ValidString(name) {
		return fmt.Errorf("%w: %s name %q must be 1 to 128 characters of valid UTF-8", ErrInvalidName, kind, name)
	}
	for _, r := range name {
		ok := unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || strings.ContainsRune("_-.:@/", r)
		if !ok {
			return fmt.Errorf("%w: %s name %q: use letters, digits and _-.:@/ only", ErrInvalidName, kind, name)
		}
	}
	return nil
}
