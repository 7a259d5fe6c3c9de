package pgqrs

import "time"

// dialect is everything that differs between backends: SQL text, grouped by
// table, and the few behaviours that really differ. Constructors in
// dialect_*.go return complete values; no other code switches on the backend.
//
// Conventions every dialect's statements keep:
//
//   - Arguments are positional and mean the same on every backend: $n on
//     Postgres is ?n on SQLite and Turso. Each statement field below says
//     "(arguments) → returned columns"; "→ n" is a statement run for its
//     count of affected rows, "→ ∅" one run for its effect only. The
//     repository method that runs a statement (repo_*.go) is its only
//     caller and gives the arguments their Go types.
//   - Fenced settle statements (archive, delete, release, extend, fail,
//     deadLetter, exhaust, unclaim, reschedule) take the ID list, the
//     consumer and the queue first ($1, $2, $3), then their own arguments,
//     and RETURNING id yields the IDs they changed: rows that consumer held.
//   - Times are computed by the database clock (now()); arguments that are
//     times go through timeArg (time.Time on Postgres, the fixed UTC text of
//     textTimeLayout on SQLite and Turso, whose schemas default to the same
//     text); durations go through secondsArg; ID lists through idsArg (a
//     Postgres array literal, or a JSON array read with json_each).
//   - Statements that create or change rows say what they did with
//     RETURNING, so that each repository call is one round trip.
//   - A statement that finds nothing returns no row (sql.ErrNoRows for a
//     single-row query), never an error of its own.
type dialect struct {
	name       Dialect
	migrations string // directory under migrations/ (Turso shares SQLite's)
	queue      queueSQL
	message    messageSQL
	archive    archiveSQL
	worker     workerSQL
	admin      adminSQL
	version    versionSQL
	workflow   workflowSQL
	schedule   scheduleSQL
	signal     signalSQL
	retention  retentionSQL
	flow       flowSQL

	// Connecting (Open): the database/sql driver name and the import that
	// registers it, the DSN schemes the backend reads (lower case), whether
	// it also reads scheme-less key=value DSNs, how errors show those forms
	// to the user, and readDSN, which turns a DSN whose scheme it owns (rest:
	// what follows "scheme:"; for key=value, the whole DSN) into what
	// sql.Open needs, without secrets in errors.
	driver, driverImport string
	schemes              []string
	keyValueDSN          bool
	dsnForms             string
	readDSN              func(dsn, scheme, rest string) (dsnInfo, error)

	// indexes are the indexes (and, on SQLite, the triggers) Verify
	// expects; triggers are PostgreSQL's triggers, each with its table.
	indexes  []string
	triggers []tableTrigger

	// installPrelude runs first inside Install's transaction: the advisory
	// lock and schema creation on Postgres; nothing elsewhere.
	installPrelude []string
	// begin, when set, is the statement that opens a write transaction on a
	// dedicated connection ("BEGIN IMMEDIATE": take the write lock first, on
	// SQLite and Turso), ended by COMMIT or ROLLBACK; "" uses sql.DB.BeginTx.
	begin string
	// serializeWrites makes a Store run its writes one at a time (single-writer
	// databases).
	serializeWrites bool
	// poolSize is the connection limit Open sets.
	poolSize int
	// prepare runs statements on the pool as prepared statements (see
	// stmtCache); off where the driver gains nothing from it.
	prepare bool
	// boundConnect runs the driver's connect under the caller's deadline
	// (libSQL's WebSocket dial ignores its context and waits up to 120 s).
	boundConnect bool
	// callTimeout bounds every statement when the caller's ctx has no deadline
	// (0: none). Turso's server can stall; a deadline turns that into an error.
	callTimeout time.Duration

	secondsArg func(time.Duration) any // a delay as the SQL expects it
	timeArg    func(time.Time) any     // an absolute time as stored
	idsArg     func([]int64) any       // a list of IDs for "id IN (list)"

	isUnique     func(error) bool
	isForeignKey func(error) bool
	isBusy       func(error) bool // retryable: the statement did not apply
	// isCloseNoise recognises errors from closing a pool that lost nothing
	// (sqld drops WebSockets without answering the close handshake).
	isCloseNoise func(error) bool
	// isAuthFailed recognises a server that refused the credentials.
	isAuthFailed func(error) bool
	// isBadJSON recognises a payload the database refuses although
	// encoding/json accepted it (Postgres jsonb rejects \u0000).
	isBadJSON func(error) bool

	// notifyChannel and listen: Postgres LISTEN/NOTIFY wakeups (listen is nil
	// where the backend has none; in-process wakeups work everywhere).
	notifyChannel string
	listen        func(dsn, channel string, notify func(payload string), connected func()) (stop func())

	// qualify names pgqrs's tables in schema in migration text (identity
	// when there is no schema: SQLite and Turso always). The dialect's own
	// statements were built with it.
	qualify func(string) string
	// relation names a pgqrs table or index as an argument of the
	// existence checks (tableExists, indexExists): quoted with the schema
	// on Postgres when there is one, else the plain name.
	relation func(name string) string
	schema   string // the Postgres schema of WithSchema, or ""
}

// queueSQL: pgqrs_queues, and what deleting or purging a queue removes.
type queueSQL struct {
	insert               string // (name) → id, name, created_at, paused_at
	byName               string // (name) → id, name, created_at, paused_at
	list                 string // () → id, name, created_at, paused_at per queue, by name
	pause                string // (queue) → paused_at: set now unless already paused (kept then); no row for a missing queue
	resume               string // (queue) → id: paused_at cleared; wakes the queue's Run loops on Postgres; no row for a missing queue
	deleteByID           string // (queue) → n
	usage                string // (queue) → live messages, dead letters, workers not stopped; locks the queue row on Postgres
	purgeMessages        string // (queue) → n: its live messages, gone without a trace
	purgeArchive         string // (queue) → n: its archived messages and dead letters
	deleteStoppedWorkers string // (queue) → n
}

// flowSQL: flow control (flow.go). A queue with max_in_flight or
// rate_limit set is claimed by claim, in a transaction that first runs lock;
// key groups need no claim of their own (their messages beyond the group's
// limit are parked past every claim's range by the triggers of migration
// 0007).
type flowSQL struct {
	// lock serialises a queue's limited claims: on Postgres a row lock that
	// does not block enqueues (FOR NO KEY UPDATE strength), taken before the
	// time is read, so that time is after the previous claim's commit.
	lock     string // (queue) → max_in_flight, group_limit, rate_limit, rate_period_ms, rate_window_at, rate_count, database time; no row for a missing queue
	settings string // (queue) → max_in_flight, group_limit, rate_limit, rate_period_ms, rate_window_at, rate_count, database time, unexpired limited leases; no row for a missing queue
	// claim is dequeue for a limited queue at time now (lock's time): at most
	// n messages, and no more than max_in_flight minus the unexpired leases
	// limited claims took (NULL: no such bound). It marks what it claims
	// flow_lease.
	claim      string // (queue, n, lease seconds, consumer, max_in_flight or NULL, now) → the columns of dequeue (claimed_from NULL: limited claims take no floors)
	count      string // (queue, window start, claims in it) → ∅: the rate window's count
	set        string // (queue, max_in_flight, group_limit, rate_limit, rate_period_ms; each NULL for none) → id; no row for a missing queue
	lockGroups string // (queue) → ∅: on Postgres the advisory lock the group triggers take; nothing on SQLite
	promote    string // (queue) → n: parked group messages made visible up to each group's limit (after the limit was raised)
}

// messageSQL: pgqrs_messages, the live messages. The fenced settle
// statements take (ids, consumer, queue, …) and return the IDs they changed
// (see the conventions on dialect).
type messageSQL struct {
	enqueue      string // (queue, payload JSON, delay seconds, producer or NULL, visible-at or NULL) → id; wakes the queue's Run loops on Postgres when visible now
	enqueueBatch string // (queue, JSON array of payload texts, delay, producer, visible-at) → id per payload, in array order
	// enqueueJobs: each element of the array is an object: "p" the
	// payload's JSON text, "d" delay (secondsArg), "a" visible-at (timeArg,
	// absent for none), "r" priority, "h" headers object, "k" key, "w" minus
	// the key's period (secondsArg; absent: taken only while live). A job
	// with a key is skipped when a live message has the key, or one
	// enqueued within its period; the keys in one array are distinct.
	enqueueJobs string // (queue, JSON array of jobs, producer or NULL) → id, dedup_key per inserted message, in array order; wakes the queue's Run loops on Postgres when a job is visible now
	keyHolders  string // (queue, JSON array of {"k": key, "w": minus period or absent}) → key, id: per taken key, the live message with it, or else the newest enqueued within the period
	// dequeue's floors ($5) are a JSON array, by priority level, of
	// visible-at times (timeArg's form; null or absent for none) below
	// which the claim does not look; NULL for none. claimed_from is the
	// visible-at time a claimed row had before the claim (NULL where the
	// backend has no use for floors: SQLite removes an index entry with
	// its row, Postgres leaves it behind until VACUUM).
	dequeue     string // (queue, n, lease seconds, consumer, floors) → id, payload, read_ct, enqueued_at, vt, last_error, priority, headers, claimed_from per claimed message; nothing unless the consumer's worker is ready or polling
	archive     string // fenced (ids, consumer, queue) → id: moved to the archive
	delete      string // fenced (ids, consumer, queue) → id: removed without archiving
	release     string // fenced (ids, consumer, queue, delay seconds) → id: visible after delay, read count kept
	extend      string // fenced (ids, consumer, queue, lease seconds) → id: lease renewed from now; a limited claim's lease (flow_lease) only while unexpired
	fail        string // fenced (ids, consumer, queue, delay seconds, error text) → id: released after delay with its error recorded
	deadLetter  string // fenced (ids, consumer, queue, reason or NULL) → id: archived as dead letters
	exhaust     string // fenced (ids, consumer, queue, reason) → id: dead-lettered past their last attempt; that claim was no delivery (read count restored), reason then any last handler error
	unclaim     string // fenced (ids, consumer, queue) → id: given back unseen, visible now, read count restored
	reschedule  string // fenced (ids, consumer, queue, delay seconds) → id: given back until delay, read count restored (a workflow run waiting for a timer)
	holder      string // (id, queue) → consumer_worker_id (NULL when none holds it); no row when the message is not live
	holders     string // (ids, queue) → id, consumer_worker_id (NULL: none) of each still live
	countHeld   string // (consumer) → unexpired leases it holds
	releaseHeld string // (consumer) → n: every message it holds, visible now
	drop        string // (id) → n: the message gone without a trace unless a consumer holds it (a keyed trigger's message when the key is taken, in the same transaction)
	cancel      string // (ids, queue) → id of each live message (pending, delayed or leased by anyone) moved to the archive marked cancelled; unfenced
	// list is for dashboards, not hot paths: it walks the queue's live
	// messages by ID, newest first, and filters by state.
	list string // (queue, state: "visible", "leased", "delayed" or "" for all, IDs below, limit) → id, payload, headers, priority, read_ct, enqueued_at, vt, dequeued_at, consumer_worker_id or 0, last_error or "", state
	// explain is the prefix that makes a statement report its plan instead
	// of its rows: on Postgres EXPLAIN (ANALYZE, BUFFERS), which runs it
	// (the caller rolls back), on SQLite and Turso EXPLAIN QUERY PLAN.
	explain string // prefix of (a statement's arguments) → one row per plan line, its text in the last column
}

// archiveSQL: pgqrs_archive, archived messages and dead letters.
type archiveSQL struct {
	get   string // (queue, id) → id, payload, read_ct, enqueued_at, archived_at, dead, last_error
	list  string // (queue, dead, IDs below, limit) → the same columns, newest first by message ID
	count string // (queue, dead) → count
	// cancelled tells a message cancelled by an admin from one settled
	// otherwise, for the holder that finds its lease gone.
	cancelled string // (ids, queue) → id of each archived as cancelled
}

// workerSQL: pgqrs_workers, one row per producer or consumer.
type workerSQL struct {
	register   string // (name, queue or NULL, role) → id, started_at; unique among live workers
	heartbeat  string // (worker) → status
	transition string // (worker, to, comma-separated from-statuses) → n: 1 when the worker was in one of them
	status     string // (worker) → status
	get        string // (worker) → id, name, queue name, role, status, started_at, heartbeat_at, stopped_at
	list       string // (queue, 0 for all) → the same columns per worker, by ID
	// producerBeat is a producer's heartbeat, which marks a row stopped from
	// outside ready again unless its name is taken; rejoin registers a
	// purged producer again under its ID.
	producerBeat string // (worker) → status
	rejoin       string // (worker, name, queue, role) → status
}

// tableTrigger names a trigger and its table.
type tableTrigger struct{ name, table string }

// adminSQL: the statements of Admin and Verify, over several tables.
type adminSQL struct {
	queueMetrics    string // (queue name) → name, live, visible, leased, archived, dead, oldest enqueued_at not leased, newest enqueued_at, now, paused_at
	allQueueMetrics string // () → the same columns per queue, by name
	systemStats     string // () → queues, live messages, archived, dead letters, workers not stopped, all workers, schema version
	// throughput reads at most the newest limit archived messages of the
	// queue (dead letters and cancelled ones left out) by the archive's
	// (queue_id, dead, id) index, so its cost is bounded however large the
	// archive is.
	throughput  string // (queue, minus window seconds, limit) → minute (start of the minute archived_at falls in), count, average and longest enqueued_at→dequeued_at seconds, per minute since now minus window, oldest first
	tableExists string // (relation) → bool
	indexExists string // (relation) → bool; triggers count as indexes on SQLite
	// triggerEnabled is PostgreSQL's (SQLite's triggers are in indexes,
	// and cannot be disabled): whether the trigger exists and fires.
	triggerEnabled string // (trigger name, its table's relation) → bool
	orphans        string // () → count of messages and archived rows whose queue is gone (a partial uninstall)
	// On PostgreSQL the counts of the metrics statements are kept by the
	// triggers of migration 0010 (pgqrs_live_counts, pgqrs_archive_counts);
	// elsewhere they are counted on each call and these do nothing.
	compactCounts string // () → counter rows folded into their queue's totals; 0 while another compaction runs
	recount       string // () → ∅: every counter row replaced by a fresh count; writes wait meanwhile

	moveToDLQ string // (max attempts) → id of each visible message of any queue claimed that often, dead-lettered
	replay    string // (queue, ids, all) → n: the dead letters (all of the queue's when all) live again under their IDs, visible now, read count 0, no last error; one with a key stays dead while a live message has the key, and of several with one key only the newest is replayed
	purgeDead string // (queue) → n

	workerHealth     string // (queue, 0 for all; minus stale age seconds) → ready, polling, suspended, interrupted, stopped, stale
	stopStaleWorkers string // (minus stale age seconds) → id of each live worker whose heartbeat is older, now stopped
	releaseWorkers   string // (worker ids) → n: their held messages, visible now
	purgeWorkers     string // (minus age seconds) → n: workers stopped at least that long ago that no live message references
	// One queue's stale consumers, for the reclaim of Run loops: whether
	// there are any, and the guarded stop.
	staleConsumers     string // (queue, minus stale age seconds, asking worker) → bool
	stopStaleConsumers string // (queue, minus stale age seconds, asking worker) → id of each stopped
}

// workflowSQL: workflows, their runs and the runs' steps. Statements that
// finish or cancel a run announce it (NOTIFY on Postgres) to result waiters.
type workflowSQL struct {
	// Workflows.
	byName     string // (name) → id, queue_id
	byQueue    string // (queue) → name of the workflow the queue belongs to
	insert     string // (name, queue) → id
	unfinished string // (workflow) → runs not yet ended
	deleteRuns string // (workflow) → n
	purgeRuns  string // (workflow, finished-before) → n: ended runs that finished before
	deleteByID string // (workflow) → n

	// Runs.
	insertRun          string // (workflow, message, input JSON, timeout seconds or NULL, key or NULL, parent run or NULL) → id; deadline_at = now + timeout; no row when the workflow has a run with the key
	wakeParent         string // (child run) → queue_id: its parent's waiting (delayed, unleased) message visible now; no row when the parent does not wait
	children           string // (run IDs, parent) → id, status, output, error of each that is the parent's child
	unfinishedChildren string // (parent) → id of each child not yet ended
	runByKey           string // (workflow, key) → id of its run with the key
	insertRuns         string // (workflow, JSON array of [message, input] pairs, timeout seconds or NULL) → ids, in array order
	runByMessage       string // (message) → id, status, input, resume_at, started, now, deadline_at, parent (0: none): the run a worker claimed
	lock               string // (run) → status, message_id; FOR UPDATE on Postgres
	lockMessage        string // (message) → whether a worker holds its lease now
	get                string // (run) → id, workflow, status, input, output, error, resume_at, created_at, started_at, finished_at, updated_at, deadline_at, run_key ('' for none), parent_run_id (0 for none)
	list               string // (workflow or "", status or "", IDs below, limit, parent or 0) → the same columns, newest first

	// Run transitions; each returns the status the run has afterwards.
	start      string // (run) → status: a PAUSED run becomes RUNNING; no row unless it was PAUSED
	pause      string // (run, resume-at) → status: PAUSED until resume-at
	finish     string // (run, status, output, error, last step name or NULL, its position, its output or NULL, its attempts) → ∅ (Postgres returns the status, unread): the last step and the run's end in one statement, announced when someone waits
	markWaited string // (run) → ∅: a result waiter exists, so finish announces
	setStatus  string // (run, status) → status; announced
	requeue    string // (run, message) → ∅: an ERROR run QUEUED again on a new message

	// Steps.
	steps             string // (run) → name, position, status, output, error, attempts, retry_at, updated_at per step, by position
	stepDone          string // (run, name, position, output JSON, attempts) → run status; no row unless the run may still take steps and the step has no success recorded
	stepFailed        string // (run, name, position, error text, attempts, retry-at or NULL) → run status; likewise
	deleteFailedSteps string // (run) → ∅: a retried run forgets its failed steps
	wakeMessage       string // (message) → ∅: a delayed, unleased message visible now
	listWorkflows     string // () → name, created_at, runs per status (QUEUED … ERROR) per workflow, by name
}

// listWorkflowsSQL is the same on every backend.
const listWorkflowsSQL = `
SELECT w.name, w.created_at,
       count(r.id) FILTER (WHERE r.status = 'QUEUED'),
       count(r.id) FILTER (WHERE r.status = 'RUNNING'),
       count(r.id) FILTER (WHERE r.status = 'PAUSED'),
       count(r.id) FILTER (WHERE r.status = 'CANCELLING'),
       count(r.id) FILTER (WHERE r.status = 'CANCELLED'),
       count(r.id) FILTER (WHERE r.status = 'SUCCESS'),
       count(r.id) FILTER (WHERE r.status = 'ERROR')
FROM pgqrs_workflows w LEFT JOIN pgqrs_runs r ON r.workflow_id = w.id
GROUP BY w.id, w.name, w.created_at ORDER BY w.name`

// scheduleSQL: pgqrs_schedules, periodic schedules. Unlike the other
// groups, their times come from Go's clock as arguments (timeArg): the cron
// arithmetic that computes them runs in Go. "Schedule columns" are name,
// cron, timezone, queue name, workflow name or NULL, payload, priority,
// headers, paused, next_run_at, last_run_at, created_at, updated_at;
// "target columns" are queue_id, workflow_id (NULL: a plain queue),
// payload, priority, headers: what one occurrence enqueues.
type scheduleSQL struct {
	// put creates the schedule or gives an existing one of the name the new
	// definition, keeping its paused state, its last run and, unless cron or
	// timezone changed, its next run time.
	put    string // (name, cron, timezone, queue, workflow or NULL, payload JSON, priority, headers JSON or NULL, next run at) → schedule columns
	get    string // (name) → schedule columns
	list   string // () → schedule columns per schedule, by name
	due    string // (before, limit) → name, cron, timezone, next_run_at of unpaused schedules due at or before, earliest first
	claim  string // (name, due, next, last, cron, timezone) → target columns: the occurrence at due is the caller's (next_run_at moves from due to next, last_run_at to last); no row when another scheduler took it or the schedule is paused, changed or gone
	ran    string // (name, at) → target columns: last_run_at set to at (a run triggered by hand)
	pause  string // (name) → n
	resume string // (name, next, cron, timezone) → n: unpaused, and a paused one's next_run_at set to next; 0 when cron or timezone changed meanwhile
	delete string // (name) → n
}

// signalSQL: pgqrs_signals (messages sent to a run on a topic),
// pgqrs_signal_waits (the Recv steps that waited for one) and pgqrs_events
// (key/value pairs a run publishes). A Recv wait is pending while its step
// has no recorded success.
type signalSQL struct {
	send          string // (run, topic, payload JSON) → id, whether a pending Recv wait of the run is on topic
	wake          string // (run) → queue of the run's message, made visible now if it was delayed and unleased; no row otherwise; wakes the queue's Run loops on Postgres
	wakeSignalled string // (run, topic) → the same, only while a signal on topic is unreceived
	claim         string // (run, topic, step) → id, payload of the run's oldest unreceived signal on topic, now received by step; no row when none
	wait          string // (run, step, topic, timeout seconds) → until, whether until has passed: the step's wait, recorded at its first call (until = now + timeout) and kept after; no row when the step has a recorded success
	list          string // (run) → id, topic, payload, sent_at, received_by, received_at per signal, by id
	waits         string // (run) → step, topic, until per pending Recv wait, by until
	setEvent      string // (run, key, value JSON) → ∅: the event set (the last value wins); announced on Postgres
	getEvent      string // (run, key) → value, updated_at; no row when unset
	events        string // (run) → key, value, updated_at per event, by key
}

// retentionSQL: pgqrs_retention (how long a queue keeps its archive and its
// dead letters) and the bounded deletes that apply it. Ages are seconds
// (secondsArg); "minus age" is the negated age, as elsewhere.
type retentionSQL struct {
	get   string // (queue) → archived seconds or NULL, dead letter seconds or NULL; no row when the queue has no policy
	put   string // (queue, archived seconds or NULL, dead letter seconds or NULL) → ∅: the policy set (created or replaced)
	clear string // (queue) → n
	// The expire statements delete at most limit rows, oldest IDs first,
	// so each is a short write however large the archive.
	expireArchived string // (queue, minus age seconds, limit) → n: archived messages that are no dead letters (done or cancelled), archived longer ago than age
	expireDead     string // (queue, minus age seconds, limit) → n: dead letters dead-lettered longer ago than age
	// Partitions of the archive (Postgres: one per UTC day, see migration
	// 0009). SQLite and Turso keep the archive in place: their statements
	// create, list and drop nothing.
	addPartitions string // (first day, last day: timeArg of a UTC midnight) → partitions created for the days from first to last
	partitions    string // () → name, from, to (NULL for the default partition), estimated rows, per partition, oldest first
	dropPartition string // (policy, queue or 0 for all, archived seconds or NULL, dead seconds or NULL) → name, archived, dead of the one partition dropped; no row when none could go
}

// versionSQL: pgqrs_schema_version, the applied migrations.
type versionSQL struct {
	createTable string // () → ∅
	applied     string // () → version per applied migration, in order
	record      string // (version, file name) → ∅
}
