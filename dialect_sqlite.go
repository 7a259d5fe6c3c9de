package pgqrs

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// sqliteNow is the current time in the one text format SQLite and Turso
// store ('YYYY-MM-DDTHH:MM:SS.sssZ', UTC), so text order is time order.
const sqliteNow = `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`

// newSQLiteDialect returns the SQLite dialect. SQLite admits one writer at a
// time, so a claim needs no row locks: one UPDATE ... WHERE id IN (SELECT ...
// LIMIT n) RETURNING is atomic. ID lists and payload batches travel as one
// JSON array argument read with json_each, so every statement has a fixed
// text whatever the batch size.
//
// The schema (migrations/sqlite) does part of the work, which a reader of
// the statements below must know about:
//
//   - Messages are archived IN PLACE (0003_archive_in_place.sql): an
//     archived message keeps its pgqrs_messages row with archived_at set
//     (and dead = 1 for a dead letter), and pgqrs_archive is a view of those
//     rows. So every statement about live messages says "archived_at IS
//     NULL", which also lets SQLite use the partial claim index
//     pgqrs_messages_claim (live rows only); archive and dead-letter are
//     one UPDATE; delete and purges are plain DELETEs.
//   - Statements that look for a worker's messages without a queue (no
//     index covers consumer_worker_id) read them through the claim index
//     (INDEXED BY), so they scan live messages only, never the archive.
//   - Only dead letters have an index of their own (pgqrs_messages_dead,
//     WHERE dead = 1; SQLite re-plans a statement saying "dead = ?" for
//     the value bound). Listing the rest of a queue's archive walks the
//     table by ID, newest first, and counting it reads the table once: admin
//     reads, kept off the hot path, where an index would cost every archive.
//   - The first step recorded for a QUEUED run marks it RUNNING
//     (pgqrs_steps_start); Postgres does this inside the statement.
//   - A run's end is an INSERT into the view pgqrs_run_ends, whose INSTEAD OF
//     trigger records the last step and ends the run in one statement (a
//     writable CTE on Postgres).
func newSQLiteDialect() *dialect {
	return &dialect{
		name:         SQLite,
		migrations:   "sqlite",
		driver:       "sqlite",
		driverImport: "modernc.org/sqlite",
		schemes:      []string{"sqlite", "sqlite3", "file"},
		dsnForms:     "sqlite:, sqlite3:, file:",
		readDSN:      sqliteDSN,
		queue: queueSQL{
			insert:     `INSERT INTO pgqrs_queues (name) VALUES (?1) RETURNING id, name, created_at, paused_at`,
			byName:     `SELECT id, name, created_at, paused_at FROM pgqrs_queues WHERE name = ?1`,
			list:       `SELECT id, name, created_at, paused_at FROM pgqrs_queues ORDER BY name`,
			deleteByID: `DELETE FROM pgqrs_queues WHERE id = ?1`,
			pause:      `UPDATE pgqrs_queues SET paused_at = coalesce(paused_at, ` + sqliteNow + `) WHERE id = ?1 RETURNING paused_at`,
			resume:     `UPDATE pgqrs_queues SET paused_at = NULL WHERE id = ?1 RETURNING id`,
			usage: `
SELECT (SELECT count(*) FROM pgqrs_messages WHERE queue_id = q.id AND archived_at IS NULL),
       (SELECT count(*) FROM pgqrs_archive WHERE queue_id = q.id AND dead = 1),
       (SELECT count(*) FROM pgqrs_workers WHERE queue_id = q.id AND status <> 'stopped')
FROM pgqrs_queues q WHERE q.id = ?1`,
			purgeMessages:        `DELETE FROM pgqrs_messages WHERE queue_id = ?1 AND archived_at IS NULL`,
			purgeArchive:         `DELETE FROM pgqrs_messages WHERE queue_id = ?1 AND archived_at IS NOT NULL`,
			deleteStoppedWorkers: `DELETE FROM pgqrs_workers WHERE queue_id = ?1 AND status = 'stopped'`,
		},
		message: messageSQL{
			enqueue: `
INSERT INTO pgqrs_messages (queue_id, payload, vt, producer_worker_id, priority, headers, group_key)
VALUES (?1, ?2, coalesce(?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?3)), ?4, ?6, ?7, ?8)
RETURNING id`,
			// ?2 is a JSON array of strings, each one payload's JSON text, so
			// json_each hands back every payload exactly as sent.
			enqueueBatch: `
INSERT INTO pgqrs_messages (queue_id, payload, vt, producer_worker_id, priority, headers, group_key)
SELECT ?1, p.value, coalesce(?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?3)), ?4, ?6, ?7, ?8
FROM json_each(?2) AS p
ORDER BY p.key
RETURNING id`,
			// Jobs with keys: SQLite admits one writer at a time, so the
			// NOT EXISTS test against pgqrs_messages_key and the insert are
			// one atomic step; the select is computed before any row goes in
			// (it reads the table it fills), which is why the keys of one
			// array must be distinct. A key's period covers archived rows,
			// which stay in the table.
			enqueueJobs: `
INSERT INTO pgqrs_messages (queue_id, payload, vt, producer_worker_id, priority, headers, dedup_key, group_key)
SELECT ?1, j.value ->> '$.p', coalesce(j.value ->> '$.a', strftime('%Y-%m-%dT%H:%M:%fZ', 'now', j.value ->> '$.d')),
       ?3, j.value ->> '$.r', j.value -> '$.h', j.value ->> '$.k', j.value ->> '$.g'
FROM json_each(?2) AS j
WHERE j.value ->> '$.k' IS NULL OR NOT EXISTS (
    SELECT 1 FROM pgqrs_messages m INDEXED BY pgqrs_messages_key
    WHERE m.queue_id = ?1 AND m.dedup_key = j.value ->> '$.k'
      AND (m.archived_at IS NULL OR m.enqueued_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', j.value ->> '$.w')))
ORDER BY j.key
RETURNING id, dedup_key`,
			keyHolders: `
SELECT key, id FROM (
    SELECT k.value ->> '$.k' AS key, (
        SELECT m.id FROM pgqrs_messages m INDEXED BY pgqrs_messages_key
        WHERE m.queue_id = ?1 AND m.dedup_key = k.value ->> '$.k'
          AND (m.archived_at IS NULL OR m.enqueued_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', k.value ->> '$.w'))
        ORDER BY m.archived_at IS NOT NULL, m.enqueued_at DESC, m.id DESC LIMIT 1) AS id
    FROM json_each(?2) AS k
) WHERE id IS NOT NULL`,
			// The claim reads one ordered range of pgqrs_messages_claim per
			// priority level, most urgent first (sqliteClaimArms); SQLite runs
			// the arms of a UNION ALL in order and stops at its LIMIT, so a
			// queue whose messages all wait at one level reads one range. No
			// row locks exist or are needed: SQLite admits one writer at a
			// time, so this single UPDATE is the whole claim. The EXISTS tests
			// are constant subqueries, evaluated once: a worker that is not
			// ready or polling, or a paused queue, claims nothing.
			dequeue: `
UPDATE pgqrs_messages
SET vt = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?3),
    read_ct = read_ct + 1,
    dequeued_at = coalesce(dequeued_at, ` + sqliteNow + `),
    consumer_worker_id = ?4
WHERE id IN (` + sqliteClaimArms("?5") + `
    LIMIT ?2)
  AND EXISTS (SELECT 1 FROM pgqrs_workers WHERE id = ?4 AND status IN ('ready', 'polling'))
  AND EXISTS (SELECT 1 FROM pgqrs_queues WHERE id = ?1 AND paused_at IS NULL
              AND max_in_flight IS NULL AND rate_limit IS NULL)
RETURNING id, payload, read_ct, enqueued_at, vt, last_error, priority, headers, NULL`,
			// Archived in place: the row stays, out of the claim index.
			// Settle statements look rows up by primary key: the unary "+" on
			// queue_id keeps SQLite from walking the queue's whole range of
			// the claim index instead.
			archive: `
UPDATE pgqrs_messages SET archived_at = ` + sqliteNow + `
WHERE id IN (SELECT value FROM json_each(?1)) AND consumer_worker_id = ?2 AND +queue_id = ?3 AND archived_at IS NULL
RETURNING id`,
			delete: `
DELETE FROM pgqrs_messages
WHERE id IN (SELECT value FROM json_each(?1)) AND consumer_worker_id = ?2 AND +queue_id = ?3 AND archived_at IS NULL
RETURNING id`,
			release: `
UPDATE pgqrs_messages
SET vt = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?4), consumer_worker_id = NULL
WHERE id IN (SELECT value FROM json_each(?1)) AND consumer_worker_id = ?2 AND +queue_id = ?3 AND archived_at IS NULL
RETURNING id`,
			// A limited lease (flow_lease) is renewed only while unexpired: once
			// expired, a limited claim counted its slot free.
			extend: `
UPDATE pgqrs_messages
SET vt = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?4)
WHERE id IN (SELECT value FROM json_each(?1)) AND consumer_worker_id = ?2 AND +queue_id = ?3 AND archived_at IS NULL
  AND (flow_lease = 0 OR vt > ` + sqliteNow + `)
RETURNING id`,
			fail: `
UPDATE pgqrs_messages
SET vt = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?4), consumer_worker_id = NULL, last_error = ?5
WHERE id IN (SELECT value FROM json_each(?1)) AND consumer_worker_id = ?2 AND +queue_id = ?3 AND archived_at IS NULL
RETURNING id`,
			deadLetter: `
UPDATE pgqrs_messages SET archived_at = ` + sqliteNow + `, dead = 1, last_error = coalesce(?4, last_error)
WHERE id IN (SELECT value FROM json_each(?1)) AND consumer_worker_id = ?2 AND +queue_id = ?3 AND archived_at IS NULL
RETURNING id`,
			exhaust: `
UPDATE pgqrs_messages
SET archived_at = ` + sqliteNow + `, dead = 1, read_ct = max(read_ct - 1, 0),
    last_error = ?4 || coalesce('; last handler error: ' || last_error, '')
WHERE id IN (SELECT value FROM json_each(?1)) AND consumer_worker_id = ?2 AND +queue_id = ?3 AND archived_at IS NULL
RETURNING id`,
			unclaim: `
UPDATE pgqrs_messages
SET vt = ` + sqliteNow + `, consumer_worker_id = NULL, read_ct = max(read_ct - 1, 0)
WHERE id IN (SELECT value FROM json_each(?1)) AND consumer_worker_id = ?2 AND +queue_id = ?3 AND archived_at IS NULL
RETURNING id`,
			reschedule: `
UPDATE pgqrs_messages
SET vt = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?4), consumer_worker_id = NULL, read_ct = max(read_ct - 1, 0)
WHERE id IN (SELECT value FROM json_each(?1)) AND consumer_worker_id = ?2 AND +queue_id = ?3 AND archived_at IS NULL
RETURNING id`,
			holder:  `SELECT consumer_worker_id FROM pgqrs_messages WHERE id = ?1 AND +queue_id = ?2 AND archived_at IS NULL`,
			holders: `SELECT id, consumer_worker_id FROM pgqrs_messages WHERE id IN (SELECT value FROM json_each(?1)) AND +queue_id = ?2 AND archived_at IS NULL`,
			// A consumer's messages are those of its queue: the claim index
			// finds them among the queue's live messages.
			countHeld: `
SELECT count(*) FROM pgqrs_messages
WHERE queue_id = (SELECT queue_id FROM pgqrs_workers WHERE id = ?1) AND vt > ` + sqliteNow + ` AND archived_at IS NULL
  AND consumer_worker_id = ?1`,
			releaseHeld: `
UPDATE pgqrs_messages SET vt = ` + sqliteNow + `, consumer_worker_id = NULL
WHERE queue_id = (SELECT queue_id FROM pgqrs_workers WHERE id = ?1) AND archived_at IS NULL AND consumer_worker_id = ?1`,
			drop: `DELETE FROM pgqrs_messages WHERE id = ?1 AND consumer_worker_id IS NULL AND archived_at IS NULL`,
			// Archived in place, whoever holds the message: every settle
			// statement says "archived_at IS NULL", so its holder's settles
			// find it gone.
			cancel: `
UPDATE pgqrs_messages SET archived_at = ` + sqliteNow + `, cancelled = 1
WHERE id IN (SELECT value FROM json_each(?1)) AND +queue_id = ?2 AND archived_at IS NULL
RETURNING id`,
			list: `
SELECT id, payload, headers, priority, read_ct, enqueued_at, vt, dequeued_at,
       coalesce(consumer_worker_id, 0), coalesce(last_error, ''), state
FROM (SELECT m.*, CASE WHEN m.vt <= ` + sqliteNow + ` THEN 'visible'
                       WHEN m.consumer_worker_id IS NOT NULL THEN 'leased'
                       ELSE 'delayed' END AS state
      FROM pgqrs_messages m WHERE m.queue_id = ?1 AND m.archived_at IS NULL AND m.id < ?3)
WHERE ?2 = '' OR state = ?2
ORDER BY id DESC LIMIT ?4`,
			explain: `EXPLAIN QUERY PLAN `,
		},
		archive: archiveSQL{
			get: `
SELECT id, payload, read_ct, enqueued_at, archived_at, dead, coalesce(last_error, ''), priority, headers, cancelled
FROM pgqrs_archive WHERE queue_id = ?1 AND id = ?2`,
			list: `
SELECT id, payload, read_ct, enqueued_at, archived_at, dead, coalesce(last_error, ''), priority, headers, cancelled
FROM pgqrs_archive WHERE queue_id = ?1 AND dead = ?2 AND id < ?3
ORDER BY id DESC LIMIT ?4`,
			count: `SELECT count(*) FROM pgqrs_archive WHERE queue_id = ?1 AND dead = ?2`,
			cancelled: `
SELECT id FROM pgqrs_messages
WHERE id IN (SELECT value FROM json_each(?1)) AND +queue_id = ?2 AND archived_at IS NOT NULL AND cancelled = 1`,
		},
		worker: workerSQL{
			register: `
INSERT INTO pgqrs_workers (name, queue_id, role) VALUES (?1, ?2, ?3)
RETURNING id, started_at`,
			heartbeat: `UPDATE pgqrs_workers SET heartbeat_at = ` + sqliteNow + ` WHERE id = ?1 RETURNING status`,
			transition: `
UPDATE pgqrs_workers
SET status = ?2, heartbeat_at = ` + sqliteNow + `,
    stopped_at = CASE WHEN ?2 = 'stopped' THEN ` + sqliteNow + ` ELSE stopped_at END
WHERE id = ?1 AND instr(',' || ?3 || ',', ',' || status || ',') > 0`,
			producerBeat: `
UPDATE pgqrs_workers
SET heartbeat_at = ` + sqliteNow + `,
    status = CASE WHEN status = 'stopped' THEN 'ready' ELSE status END,
    stopped_at = CASE WHEN status = 'stopped' THEN NULL ELSE stopped_at END
WHERE id = ?1
  AND (status <> 'stopped' OR NOT EXISTS (
      SELECT 1 FROM pgqrs_workers o WHERE o.name = pgqrs_workers.name AND o.status <> 'stopped'))
RETURNING status`,
			rejoin: `
INSERT INTO pgqrs_workers (id, name, queue_id, role) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT DO NOTHING
RETURNING status`,
			status: `SELECT status FROM pgqrs_workers WHERE id = ?1`,
			get:    sqliteWorkerSelect + ` WHERE w.id = ?1`,
			list:   sqliteWorkerSelect + ` WHERE ?1 = 0 OR w.queue_id = ?1 ORDER BY w.id`,
		},
		admin: adminSQL{
			queueMetrics:    sqliteMetricsSelect + ` WHERE q.name = ?1`,
			allQueueMetrics: sqliteMetricsSelect + ` ORDER BY q.name`,
			throughput: `
SELECT substr(archived_at, 1, 16) || ':00.000Z', count(*),
       coalesce(avg((julianday(dequeued_at) - julianday(enqueued_at)) * 86400.0), 0.0),
       coalesce(max((julianday(dequeued_at) - julianday(enqueued_at)) * 86400.0), 0.0)
FROM (SELECT archived_at, enqueued_at, dequeued_at, cancelled FROM pgqrs_archive
      WHERE queue_id = ?1 AND dead = 0 ORDER BY id DESC LIMIT ?3)
WHERE cancelled = 0
  AND archived_at >= substr(strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2), 1, 16) || ':00.000Z'
GROUP BY 1 ORDER BY 1`,
			systemStats: `
SELECT (SELECT count(*) FROM pgqrs_queues),
       (SELECT count(*) FROM pgqrs_messages WHERE archived_at IS NULL),
       (SELECT count(*) FROM pgqrs_archive WHERE dead = 0),
       (SELECT count(*) FROM pgqrs_archive WHERE dead = 1),
       (SELECT count(*) FROM pgqrs_workers WHERE status <> 'stopped'),
       (SELECT count(*) FROM pgqrs_workers),
       (SELECT coalesce(max(version), 0) FROM pgqrs_schema_version)`,
			// pgqrs_archive is a view.
			tableExists:    `SELECT count(*) > 0 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?1`,
			indexExists:    `SELECT count(*) > 0 FROM sqlite_master WHERE type IN ('index', 'trigger') AND name = ?1`,
			triggerEnabled: `SELECT count(*) > 0 FROM sqlite_master WHERE type = 'trigger' AND name = ?1 AND tbl_name = ?2`,
			compactCounts:  `SELECT 0`,
			recount:        `SELECT 1 WHERE 0`,
			orphans: `
SELECT count(*) FROM pgqrs_messages m WHERE NOT EXISTS (SELECT 1 FROM pgqrs_queues q WHERE q.id = m.queue_id)`,
			moveToDLQ: `
UPDATE pgqrs_messages INDEXED BY pgqrs_messages_claim
SET archived_at = ` + sqliteNow + `, dead = 1,
    last_error = 'no success in ' || read_ct || CASE WHEN read_ct = 1 THEN ' attempt' ELSE ' attempts' END
                 || coalesce('; last handler error: ' || last_error, '')
WHERE read_ct >= ?1 AND vt <= ` + sqliteNow + ` AND archived_at IS NULL
RETURNING id`,
			// In place, a replay is two updates of the dead letters' rows:
			// first they become new messages (visible now, no read, no error,
			// no holder), then they leave the archive, which counts them.
			// A dead letter is live again where it lies: one UPDATE. One with a
			// key stays dead while a live message has the key, or a newer dead
			// letter being replayed does (see the Postgres statement).
			replay: `
UPDATE pgqrs_messages
SET archived_at = NULL, dead = 0, vt = ` + sqliteNow + `, read_ct = 0, dequeued_at = NULL,
    consumer_worker_id = NULL, last_error = NULL
WHERE queue_id = ?1 AND dead = 1 AND archived_at IS NOT NULL AND (?3 OR id IN (SELECT value FROM json_each(?2)))
  AND (dedup_key IS NULL OR (
      NOT EXISTS (SELECT 1 FROM pgqrs_messages l INDEXED BY pgqrs_messages_key
                  WHERE l.queue_id = ?1 AND l.dedup_key = pgqrs_messages.dedup_key AND l.archived_at IS NULL)
      AND NOT EXISTS (SELECT 1 FROM pgqrs_messages o INDEXED BY pgqrs_messages_key
                      WHERE o.queue_id = ?1 AND o.dedup_key = pgqrs_messages.dedup_key AND o.dead = 1
                        AND o.archived_at IS NOT NULL AND o.id > pgqrs_messages.id
                        AND (?3 OR o.id IN (SELECT value FROM json_each(?2))))))`,
			purgeDead: `DELETE FROM pgqrs_messages WHERE queue_id = ?1 AND dead = 1 AND archived_at IS NOT NULL`,
			workerHealth: `
SELECT count(*) FILTER (WHERE status = 'ready'),
       count(*) FILTER (WHERE status = 'polling'),
       count(*) FILTER (WHERE status = 'suspended'),
       count(*) FILTER (WHERE status = 'interrupted'),
       count(*) FILTER (WHERE status = 'stopped'),
       count(*) FILTER (WHERE role IN ('consumer', 'producer') AND status IN ('ready', 'polling', 'interrupted')
                        AND heartbeat_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2))
FROM pgqrs_workers WHERE ?1 = 0 OR queue_id = ?1`,
			stopStaleWorkers: `
UPDATE pgqrs_workers SET status = 'stopped', stopped_at = ` + sqliteNow + `
WHERE role IN ('consumer', 'producer') AND status IN ('ready', 'polling', 'interrupted')
  AND heartbeat_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)
RETURNING id`,
			staleConsumers: `
SELECT EXISTS (
    SELECT 1 FROM pgqrs_workers
    WHERE queue_id = ?1 AND status IN ('ready', 'polling', 'interrupted') AND role = 'consumer'
      AND heartbeat_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2) AND id <> ?3)`,
			stopStaleConsumers: `
UPDATE pgqrs_workers SET status = 'stopped', stopped_at = ` + sqliteNow + `
WHERE queue_id = ?1 AND status IN ('ready', 'polling', 'interrupted') AND role = 'consumer'
  AND heartbeat_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2) AND id <> ?3
RETURNING id`,
			releaseWorkers: `
UPDATE pgqrs_messages INDEXED BY pgqrs_messages_claim SET vt = ` + sqliteNow + `, consumer_worker_id = NULL
WHERE consumer_worker_id IN (SELECT value FROM json_each(?1)) AND archived_at IS NULL`,
			purgeWorkers: `
DELETE FROM pgqrs_workers
WHERE status = 'stopped' AND stopped_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)
  AND NOT EXISTS (SELECT 1 FROM pgqrs_messages m INDEXED BY pgqrs_messages_claim
                  WHERE m.archived_at IS NULL
                    AND (m.consumer_worker_id = pgqrs_workers.id OR m.producer_worker_id = pgqrs_workers.id))`,
		},
		version: versionSQL{
			createTable: `
CREATE TABLE IF NOT EXISTS pgqrs_schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (` + sqliteNow + `)
)`,
			applied: `SELECT version FROM pgqrs_schema_version ORDER BY version`,
			record:  `INSERT INTO pgqrs_schema_version (version, name) VALUES (?1, ?2)`,
		},
		// Single writer: a write transaction (BEGIN IMMEDIATE) already holds
		// every row it reads, so nothing needs FOR UPDATE; nobody listens.
		signal: sqliteSignalSQL(),
		retention: retentionSQL{
			get: `SELECT archived_secs, dead_secs FROM pgqrs_retention WHERE queue_id = ?1`,
			put: `
INSERT INTO pgqrs_retention (queue_id, archived_secs, dead_secs) VALUES (?1, ?2, ?3)
ON CONFLICT (queue_id) DO UPDATE SET archived_secs = excluded.archived_secs, dead_secs = excluded.dead_secs,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`,
			clear: `DELETE FROM pgqrs_retention WHERE queue_id = ?1`,
			// Archived rows stay in pgqrs_messages (migration 0003), marked
			// by archived_at. No index serves archived_at (one would cost
			// every archive a write): expireArchived walks the table from
			// the oldest ID and stops at limit matches, so a batch is cheap
			// when the old rows are at the head, as they are once the
			// archive ages. expireDead reads the queue's range of the
			// dead letters' partial index, oldest first.
			expireArchived: `
DELETE FROM pgqrs_messages WHERE id IN (
    SELECT id FROM pgqrs_messages
    WHERE queue_id = ?1 AND archived_at IS NOT NULL AND dead = 0 AND archived_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2)
    ORDER BY id LIMIT ?3)`,
			expireDead: `
DELETE FROM pgqrs_messages WHERE id IN (
    SELECT id FROM pgqrs_messages INDEXED BY pgqrs_messages_dead
    WHERE queue_id = ?1 AND dead = 1 AND archived_at IS NOT NULL AND archived_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2)
    ORDER BY id LIMIT ?3)`,
			addPartitions: `SELECT 0 WHERE ?1 IS NOT NULL OR ?2 IS NOT NULL`,
			partitions:    `SELECT '', NULL, NULL, 0 WHERE 0`,
			dropPartition: `SELECT '', 0, 0 WHERE 0 AND ?1 AND ?2 AND ?3 AND ?4`,
		},
		workflow: workflowSQL{
			byName:     `SELECT id, queue_id FROM pgqrs_workflows WHERE name = ?1`,
			byQueue:    `SELECT name FROM pgqrs_workflows WHERE queue_id = ?1`,
			unfinished: `SELECT count(*) FROM pgqrs_runs WHERE workflow_id = ?1 AND status NOT IN ('SUCCESS', 'ERROR', 'CANCELLED')`,
			deleteRuns: `DELETE FROM pgqrs_runs WHERE workflow_id = ?1`,
			purgeRuns: `
DELETE FROM pgqrs_runs
WHERE workflow_id = ?1 AND status IN ('SUCCESS', 'ERROR', 'CANCELLED') AND finished_at < ?2`,
			deleteByID: `DELETE FROM pgqrs_workflows WHERE id = ?1`,
			insert:     `INSERT INTO pgqrs_workflows (name, queue_id) VALUES (?1, ?2) RETURNING id`,
			insertRun: `
INSERT INTO pgqrs_runs (workflow_id, message_id, input, deadline_at, run_key, parent_run_id)
VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?4), ?5, ?6)
ON CONFLICT DO NOTHING
RETURNING id`,
			wakeParent: `
UPDATE pgqrs_messages SET vt = ` + sqliteNow + `
WHERE id = (SELECT p.message_id FROM pgqrs_runs c JOIN pgqrs_runs p ON p.id = c.parent_run_id WHERE c.id = ?1)
  AND vt > ` + sqliteNow + ` AND consumer_worker_id IS NULL AND archived_at IS NULL
RETURNING queue_id`,
			children: `
SELECT id, status, output, coalesce(error, '') FROM pgqrs_runs WHERE id IN (SELECT value FROM json_each(?1)) AND parent_run_id = ?2`,
			unfinishedChildren: `
SELECT id FROM pgqrs_runs WHERE parent_run_id = ?1 AND status NOT IN ('SUCCESS', 'ERROR', 'CANCELLED') ORDER BY id`,
			runByKey: `SELECT id FROM pgqrs_runs WHERE workflow_id = ?1 AND run_key = ?2`,
			insertRuns: `
INSERT INTO pgqrs_runs (workflow_id, message_id, input, deadline_at)
SELECT ?1, p.value ->> 0, p.value -> 1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?3)
FROM json_each(?2) AS p
ORDER BY p.key
RETURNING id`,
			runByMessage: `
SELECT id, status, input, resume_at, started_at IS NOT NULL, ` + sqliteNow + `, deadline_at, coalesce(parent_run_id, 0)
FROM pgqrs_runs WHERE message_id = ?1`,
			lock: `SELECT status, message_id FROM pgqrs_runs WHERE id = ?1`,
			lockMessage: `
SELECT consumer_worker_id IS NOT NULL AND vt > ` + sqliteNow + ` FROM pgqrs_messages WHERE id = ?1 AND archived_at IS NULL`,
			get:  sqliteRunSelect + ` WHERE r.id = ?1`,
			list: sqliteRunSelect + ` WHERE (?1 = '' OR r.name = ?1) AND (?2 = '' OR r.status = ?2) AND r.id < ?3 AND (?5 = 0 OR r.parent_run_id = ?5) ORDER BY r.id DESC LIMIT ?4`,
			start: `
UPDATE pgqrs_runs
SET status = 'RUNNING', started_at = coalesce(started_at, ` + sqliteNow + `), resume_at = NULL, updated_at = ` + sqliteNow + `
WHERE id = ?1 AND status = 'PAUSED'
RETURNING status`,
			pause: `
UPDATE pgqrs_runs
SET status = 'PAUSED', resume_at = ?2, started_at = coalesce(started_at, ` + sqliteNow + `), updated_at = ` + sqliteNow + `
WHERE id = ?1 AND status IN ('QUEUED', 'RUNNING')
RETURNING status`,
			// The pgqrs_run_ends_insert trigger records the last completed
			// step (?5, NULL for none) and ends the run, as one statement.
			finish: `
INSERT INTO pgqrs_run_ends (run_id, status, output, error, step_name, step_position, step_output, step_attempts)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)`,
			markWaited: `UPDATE pgqrs_runs SET waited = 1 WHERE id = ?1 AND NOT waited`,
			setStatus: `
UPDATE pgqrs_runs
SET status = ?2, resume_at = NULL, updated_at = ` + sqliteNow + `,
    finished_at = CASE WHEN ?2 = 'CANCELLED' THEN ` + sqliteNow + ` ELSE finished_at END
WHERE id = ?1
RETURNING status`,
			requeue: `
UPDATE pgqrs_runs
SET status = 'QUEUED', message_id = ?2, output = NULL, error = NULL, resume_at = NULL,
    finished_at = NULL, updated_at = ` + sqliteNow + `
WHERE id = ?1 AND status = 'ERROR'`,
			steps: `
SELECT name, position, status, output, coalesce(error, ''), attempts, retry_at, updated_at
FROM pgqrs_steps WHERE run_id = ?1 ORDER BY position`,
			// The pgqrs_steps_start trigger marks a QUEUED run RUNNING.
			stepDone: `
INSERT INTO pgqrs_steps (run_id, name, position, status, output, attempts)
SELECT r.id, ?2, ?3, 'SUCCESS', ?4, ?5
FROM pgqrs_runs r WHERE r.id = ?1 AND r.status IN ('QUEUED', 'RUNNING', 'CANCELLING')
ON CONFLICT (run_id, name) DO UPDATE
SET status = 'SUCCESS', output = excluded.output, error = NULL, retry_at = NULL,
    attempts = excluded.attempts, updated_at = ` + sqliteNow + `
WHERE pgqrs_steps.status = 'ERROR'
RETURNING (SELECT status FROM pgqrs_runs WHERE id = ?1)`,
			stepFailed: `
INSERT INTO pgqrs_steps (run_id, name, position, status, error, attempts, retry_at)
SELECT r.id, ?2, ?3, 'ERROR', ?4, ?5, ?6
FROM pgqrs_runs r WHERE r.id = ?1 AND r.status IN ('QUEUED', 'RUNNING', 'CANCELLING')
ON CONFLICT (run_id, name) DO UPDATE
SET status = 'ERROR', output = NULL, error = excluded.error, retry_at = excluded.retry_at,
    attempts = excluded.attempts, updated_at = ` + sqliteNow + `
WHERE pgqrs_steps.status = 'ERROR'
RETURNING (SELECT status FROM pgqrs_runs WHERE id = ?1)`,
			deleteFailedSteps: `DELETE FROM pgqrs_steps WHERE run_id = ?1 AND status = 'ERROR'`,
			wakeMessage: `
UPDATE pgqrs_messages SET vt = ` + sqliteNow + `
WHERE id = ?1 AND vt > ` + sqliteNow + ` AND consumer_worker_id IS NULL AND archived_at IS NULL`,
			listWorkflows: listWorkflowsSQL,
		},
		schedule: scheduleSQL{
			put: `
INSERT INTO pgqrs_schedules AS s (name, cron, timezone, queue_id, workflow_id, payload, priority, headers, next_run_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (name) DO UPDATE
SET cron = excluded.cron, timezone = excluded.timezone, queue_id = excluded.queue_id,
    workflow_id = excluded.workflow_id, payload = excluded.payload, priority = excluded.priority,
    headers = excluded.headers,
    next_run_at = CASE WHEN s.cron = excluded.cron AND s.timezone = excluded.timezone
                       THEN s.next_run_at ELSE excluded.next_run_at END,
    updated_at = ` + sqliteNow + `
RETURNING ` + sqliteScheduleReturning,
			get:  sqliteScheduleSelect + ` WHERE s.name = ?1`,
			list: sqliteScheduleSelect + ` ORDER BY s.name`,
			due: `
SELECT name, cron, timezone, next_run_at FROM pgqrs_schedules
WHERE paused = 0 AND next_run_at <= ?1 ORDER BY next_run_at LIMIT ?2`,
			// One writer at a time: the first claim of an occurrence moves
			// next_run_at, and every later one finds nothing to change.
			claim: `
UPDATE pgqrs_schedules SET next_run_at = ?3, last_run_at = ?4, updated_at = ` + sqliteNow + `
WHERE name = ?1 AND next_run_at = ?2 AND cron = ?5 AND timezone = ?6 AND paused = 0
RETURNING queue_id, workflow_id, payload, priority, headers`,
			ran: `
UPDATE pgqrs_schedules SET last_run_at = ?2, updated_at = ` + sqliteNow + ` WHERE name = ?1
RETURNING queue_id, workflow_id, payload, priority, headers`,
			pause: `UPDATE pgqrs_schedules SET paused = 1, updated_at = ` + sqliteNow + ` WHERE name = ?1`,
			resume: `
UPDATE pgqrs_schedules
SET next_run_at = CASE WHEN paused = 1 THEN ?2 ELSE next_run_at END, paused = 0, updated_at = ` + sqliteNow + `
WHERE name = ?1 AND cron = ?3 AND timezone = ?4`,
			delete: `DELETE FROM pgqrs_schedules WHERE name = ?1`,
		},
		flow: flowSQL{
			// SQLite has one writer: a transaction that will write holds the
			// write lock from BEGIN IMMEDIATE, so the lock statement only
			// reads (its time is after the lock).
			lock: `
SELECT max_in_flight, group_limit, rate_limit, rate_period_ms, rate_window_at, rate_count, ` + sqliteNow + `
FROM pgqrs_queues WHERE id = ?1`,
			settings: `
SELECT max_in_flight, group_limit, rate_limit, rate_period_ms, rate_window_at, rate_count, ` + sqliteNow + `,
       (SELECT count(*) FROM pgqrs_messages INDEXED BY pgqrs_messages_flow
        WHERE queue_id = q.id AND flow_lease = 1 AND archived_at IS NULL AND vt > ` + sqliteNow + `
          AND consumer_worker_id IS NOT NULL)
FROM pgqrs_queues q WHERE id = ?1`,
			claim: `
UPDATE pgqrs_messages
SET vt = strftime('%Y-%m-%dT%H:%M:%fZ', ?6, ?3),
    read_ct = read_ct + 1,
    dequeued_at = coalesce(dequeued_at, ?6),
    consumer_worker_id = ?4,
    flow_lease = 1
WHERE id IN (` + strings.ReplaceAll(sqliteClaimArms(""), sqliteNow, "?6") + `
    LIMIT max(0, min(?2, coalesce(?5 - (
        SELECT count(*) FROM pgqrs_messages INDEXED BY pgqrs_messages_flow
        WHERE queue_id = ?1 AND flow_lease = 1 AND archived_at IS NULL AND vt > ?6
          AND consumer_worker_id IS NOT NULL), ?2))))
  AND EXISTS (SELECT 1 FROM pgqrs_workers WHERE id = ?4 AND status IN ('ready', 'polling'))
  AND EXISTS (SELECT 1 FROM pgqrs_queues WHERE id = ?1 AND paused_at IS NULL)
RETURNING id, payload, read_ct, enqueued_at, vt, last_error, priority, headers, NULL`,
			count: `UPDATE pgqrs_queues SET rate_window_at = ?2, rate_count = ?3 WHERE id = ?1`,
			set: `
UPDATE pgqrs_queues SET max_in_flight = ?2, group_limit = ?3, rate_limit = ?4,
       rate_window_at = CASE WHEN rate_period_ms IS ?5 THEN rate_window_at END,
       rate_count = CASE WHEN rate_period_ms IS ?5 THEN rate_count ELSE 0 END,
       rate_period_ms = ?5
WHERE id = ?1 RETURNING id`,
			lockGroups: `SELECT ?1 WHERE 0`,
			promote: `
WITH g AS (
    SELECT id, vt = '9999-01-01T00:00:00.000Z' AS parked,
           row_number() OVER (PARTITION BY group_key, vt = '9999-01-01T00:00:00.000Z' ORDER BY id) AS rn,
           count(*) FILTER (WHERE vt < '9999-01-01T00:00:00.000Z') OVER (PARTITION BY group_key) AS unparked
    FROM pgqrs_messages WHERE queue_id = ?1 AND group_key IS NOT NULL AND archived_at IS NULL
)
UPDATE pgqrs_messages SET vt = ` + sqliteNow + `
FROM g, pgqrs_queues q
WHERE pgqrs_messages.id = g.id AND g.parked AND q.id = ?1 AND g.rn <= coalesce(q.group_limit, 1) - g.unparked`,
		},
		indexes: []string{"pgqrs_messages_claim", "pgqrs_workers_live_name", "pgqrs_workers_queue", "pgqrs_messages_dead",
			"pgqrs_runs_message", "pgqrs_runs_workflow", "pgqrs_steps_start", "pgqrs_run_ends_insert",
			"pgqrs_messages_key", "pgqrs_schedules_due", "pgqrs_signals_unreceived", "pgqrs_signals_run",
			"pgqrs_messages_flow", "pgqrs_messages_group", "pgqrs_group_park", "pgqrs_group_promote_archived"},
		poolSize:        8,
		prepare:         true,
		begin:           "BEGIN IMMEDIATE",
		serializeWrites: true,
		secondsArg:      func(d time.Duration) any { return fmt.Sprintf("%+.3f seconds", d.Seconds()) },
		timeArg:         func(t time.Time) any { return formatTextTime(t) },
		idsArg:          func(ids []int64) any { return "[" + idList(ids) + "]" },
		isUnique: func(err error) bool {
			c := sqliteCode(err)
			return c == 2067 || c == 1555 // SQLITE_CONSTRAINT_UNIQUE, _PRIMARYKEY
		},
		isForeignKey: func(err error) bool { return sqliteCode(err) == 787 }, // SQLITE_CONSTRAINT_FOREIGNKEY
		isCloseNoise: func(error) bool { return false },
		isAuthFailed: func(error) bool { return false }, // a file has no login
		isBadJSON:    func(error) bool { return false }, // payloads are validated before they are sent
		isBusy: func(err error) bool {
			c := sqliteCode(err) & 0xff
			return c == 5 || c == 6 // SQLITE_BUSY, SQLITE_LOCKED
		},
		qualify:  func(s string) string { return s },
		relation: func(name string) string { return name },
	}
}

// sqliteRunSelect: see pgRunSelect.
const sqliteRunSelect = `
SELECT * FROM (
    SELECT r.id, w.name,
           CASE WHEN r.status = 'QUEUED' AND m.consumer_worker_id IS NOT NULL AND m.vt > ` + sqliteNow + `
                THEN 'RUNNING' ELSE r.status END AS status,
           r.input, r.output, coalesce(r.error, '') AS error, r.resume_at, r.created_at,
           coalesce(r.started_at, CASE WHEN m.consumer_worker_id IS NOT NULL AND m.vt > ` + sqliteNow + ` THEN m.dequeued_at END) AS started_at,
           r.finished_at, r.updated_at, r.deadline_at, coalesce(r.run_key, '') AS run_key,
           coalesce(r.parent_run_id, 0) AS parent_run_id
    FROM pgqrs_runs r JOIN pgqrs_workflows w ON w.id = r.workflow_id
    LEFT JOIN pgqrs_messages m ON m.id = r.message_id AND m.archived_at IS NULL
) AS r`

// sqliteScheduleReturning is the schedule columns of a row just written.
// RETURNING cannot name the table's alias: queue_id and workflow_id are
// the new row's (the subqueries' tables have no such columns).
const sqliteScheduleReturning = `name, cron, timezone, (SELECT q.name FROM pgqrs_queues q WHERE q.id = queue_id),
       (SELECT w.name FROM pgqrs_workflows w WHERE w.id = workflow_id), payload, priority, headers, paused,
       next_run_at, last_run_at, created_at, updated_at`

// sqliteScheduleSelect reads the schedule columns.
const sqliteScheduleSelect = `
SELECT s.name, s.cron, s.timezone, q.name, w.name, s.payload, s.priority, s.headers, s.paused,
       s.next_run_at, s.last_run_at, s.created_at, s.updated_at
FROM pgqrs_schedules s JOIN pgqrs_queues q ON q.id = s.queue_id
LEFT JOIN pgqrs_workflows w ON w.id = s.workflow_id`

const sqliteWorkerSelect = `
SELECT w.id, w.name, coalesce(q.name, ''), w.role, w.status, w.started_at, w.heartbeat_at, w.stopped_at
FROM pgqrs_workers w LEFT JOIN pgqrs_queues q ON q.id = w.queue_id`

// sqliteMetricsSelect counts a queue's archive from one pass over the
// archived rows (they have no per-queue index; see newSQLiteDialect).
const sqliteMetricsSelect = `
SELECT q.name,
       (SELECT count(*) FROM pgqrs_messages m WHERE m.queue_id = q.id AND m.archived_at IS NULL),
       (SELECT count(*) FROM pgqrs_messages m WHERE m.queue_id = q.id AND m.vt <= ` + sqliteNow + ` AND m.archived_at IS NULL),
       (SELECT count(*) FROM pgqrs_messages m
        WHERE m.queue_id = q.id AND m.vt > ` + sqliteNow + ` AND m.archived_at IS NULL AND m.consumer_worker_id IS NOT NULL),
       coalesce(a.archived, 0), coalesce(a.dead, 0),
       (SELECT min(m.enqueued_at) FROM pgqrs_messages m
        WHERE m.queue_id = q.id AND m.archived_at IS NULL AND (m.consumer_worker_id IS NULL OR m.vt <= ` + sqliteNow + `)),
       (SELECT max(m.enqueued_at) FROM pgqrs_messages m WHERE m.queue_id = q.id AND m.archived_at IS NULL),
       ` + sqliteNow + `, q.paused_at
FROM pgqrs_queues q
LEFT JOIN (SELECT queue_id, count(*) FILTER (WHERE dead = 0) AS archived, count(*) FILTER (WHERE dead = 1) AS dead
           FROM pgqrs_archive GROUP BY queue_id) a ON a.queue_id = q.id`

// sqliteClaimArms is the claim's candidate IDs: for each priority level,
// most urgent first, one ordered range scan of pgqrs_messages_claim (?1
// queue, ?2 batch size), joined by UNION ALL, which the claim ends with its
// LIMIT. With floors (a parameter: a JSON array of visible-at lower bounds
// by level, or NULL) each level's range starts at its floor. SQLite removes
// an index entry with its row version, so no claim gets floors here (its
// claims return no claimed-from times), but the statement means what
// Postgres's does.
func sqliteClaimArms(floors string) string {
	arms := make([]string, 0, MaxPriority+1)
	for p := 0; p <= MaxPriority; p++ {
		floor := ""
		if floors != "" {
			floor = ` AND vt >= coalesce(json_extract(` + floors + `, '$[` + strconv.Itoa(p) + `]'), '')`
		}
		arms = append(arms, `
    SELECT id FROM (SELECT id FROM pgqrs_messages
                    WHERE queue_id = ?1 AND priority = `+strconv.Itoa(p)+` AND vt <= `+sqliteNow+` AND archived_at IS NULL`+floor+`
                    ORDER BY vt, id LIMIT ?2)`)
	}
	return strings.Join(arms, "\n    UNION ALL")
}

// sqliteDSN reads sqlite:PATH, sqlite3:PATH and file:PATH[?query] (rest is
// what follows the scheme) into modernc's file: DSN with pgqrs's pragmas:
// WAL, synchronous=NORMAL, a 10 s busy timeout, foreign keys on, and
// immediate transactions (so a transaction that will write takes the write
// lock at BEGIN instead of failing with SQLITE_BUSY at its first write). A
// ":memory:" database gets foreign keys only: it has no journal to set, and
// one connection (Open limits the pool).
func sqliteDSN(dsn, scheme, rest string) (dsnInfo, error) {
	info := dsnInfo{shown: redactDSN(dsn), secrets: dsnSecrets(dsn)}
	path := rest
	if scheme == "file" {
		path, _, _ = strings.Cut(rest, "?")
	}
	path = strings.TrimPrefix(path, "//")
	if path == "" {
		return dsnInfo{}, fmt.Errorf("%w: %s names no database file", ErrInvalidDSN, info.shown)
	}
	q := url.Values{}
	if scheme == "file" {
		if _, raw, ok := strings.Cut(rest, "?"); ok {
			var err error
			if q, err = url.ParseQuery(raw); err != nil {
				return dsnInfo{}, fmt.Errorf("%w: %s: cannot parse the query", ErrInvalidDSN, info.shown)
			}
		}
	}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(10000)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	if path == ":memory:" {
		q.Del("_pragma")
		q.Add("_pragma", "foreign_keys(1)")
	}
	q.Set("_txlock", "immediate")
	info.dialect, info.driver, info.source = SQLite, "sqlite", "file:"+path+"?"+q.Encode()
	return info, nil
}

// sqliteSignalSQL is the signal statements (see signalSQL). A Recv wait is
// pending while its step has no recorded success.
func sqliteSignalSQL() signalSQL {
	const pending = `NOT EXISTS (SELECT 1 FROM pgqrs_steps s WHERE s.run_id = w.run_id AND s.name = w.step AND s.status = 'SUCCESS')`
	wake := func(cond string) string {
		return `
UPDATE pgqrs_messages SET vt = ` + sqliteNow + `
WHERE id = (SELECT message_id FROM pgqrs_runs WHERE id = ?1)
  AND vt > ` + sqliteNow + ` AND consumer_worker_id IS NULL AND archived_at IS NULL` + cond + `
RETURNING queue_id`
	}
	return signalSQL{
		send: `
INSERT INTO pgqrs_signals (run_id, topic, payload) VALUES (?1, ?2, ?3)
RETURNING id, EXISTS (SELECT 1 FROM pgqrs_signal_waits w WHERE w.run_id = ?1 AND w.topic = ?2 AND ` + pending + `)`,
		wake: wake(""),
		wakeSignalled: wake(`
  AND EXISTS (SELECT 1 FROM pgqrs_signals s WHERE s.run_id = ?1 AND s.topic = ?2 AND s.received_at IS NULL)`),
		claim: `
UPDATE pgqrs_signals SET received_by = ?3, received_at = ` + sqliteNow + `
WHERE id = (SELECT id FROM pgqrs_signals
            WHERE run_id = ?1 AND topic = ?2 AND received_at IS NULL
            ORDER BY id LIMIT 1)
RETURNING id, payload`,
		wait: `
INSERT INTO pgqrs_signal_waits (run_id, step, topic, until_at)
SELECT ?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?4)
WHERE NOT EXISTS (SELECT 1 FROM pgqrs_steps WHERE run_id = ?1 AND name = ?2 AND status = 'SUCCESS')
ON CONFLICT (run_id, step) DO UPDATE SET until_at = until_at
RETURNING until_at, until_at <= ` + sqliteNow,
		list: `
SELECT id, topic, payload, sent_at, coalesce(received_by, ''), received_at
FROM pgqrs_signals WHERE run_id = ?1 ORDER BY id`,
		waits: `
SELECT w.step, w.topic, w.until_at FROM pgqrs_signal_waits w
WHERE w.run_id = ?1 AND ` + pending + `
ORDER BY w.until_at`,
		setEvent: `
INSERT INTO pgqrs_events (run_id, key, value) VALUES (?1, ?2, ?3)
ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, updated_at = ` + sqliteNow,
		getEvent: `SELECT value, updated_at FROM pgqrs_events WHERE run_id = ?1 AND key = ?2`,
		events:   `SELECT key, value, updated_at FROM pgqrs_events WHERE run_id = ?1 ORDER BY key`,
	}
}
