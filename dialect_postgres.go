package pgqrs

import (
	"errors"
	"fmt"
	"hash/fnv"
	neturl "net/url"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
)

// newPostgresDialect returns the PostgreSQL dialect for pgqrs's tables in
// schema ("" for the connection's search_path). Claims lock their rows with
// FOR UPDATE SKIP LOCKED, so any number of consumers in any number of
// processes claim disjoint messages.
//
// Every statement is written with pgqrs's plain table names and passes
// through t, which names the tables in schema; the statements that announce
// something include the NOTIFY fragments wakeQueue and wakeRun, which send on
// the schema's channel.
func newPostgresDialect(schema string) *dialect {
	t := pgQualifier(schema)
	channel := pgChannel(schema)
	wakeQueue, wakeRun := pgWake(channel)
	d := &dialect{
		name:         Postgres,
		migrations:   "postgres",
		driver:       "postgres",
		driverImport: "github.com/lib/pq",
		schemes:      []string{"postgres", "postgresql"},
		keyValueDSN:  true, // host=/run/postgresql user=app dbname=app
		dsnForms:     "postgres://, postgresql://, a Postgres key=value DSN",
		readDSN:      func(dsn, _, _ string) (dsnInfo, error) { return pgDSN(dsn) },
		queue: queueSQL{
			insert:     t(`INSERT INTO pgqrs_queues (name) VALUES ($1) RETURNING id, name, created_at, paused_at`),
			byName:     t(`SELECT id, name, created_at, paused_at FROM pgqrs_queues WHERE name = $1`),
			list:       t(`SELECT id, name, created_at, paused_at FROM pgqrs_queues ORDER BY name`),
			deleteByID: t(`DELETE FROM pgqrs_queues WHERE id = $1`),
			// A pause keeps the time of the first one. The claim reads
			// paused_at (see dequeue); a resume wakes the queue's idle Run
			// loops in every process.
			pause: t(`UPDATE pgqrs_queues SET paused_at = coalesce(paused_at, now()) WHERE id = $1 RETURNING paused_at`),
			resume: t(`
WITH u AS (
    UPDATE pgqrs_queues SET paused_at = NULL WHERE id = $1::bigint RETURNING id
)
SELECT u.id FROM u LEFT JOIN (SELECT ` + wakeQueue + `) AS wake ON true`),
			// FOR UPDATE on the queue row waits for enqueues in flight (their
			// foreign-key check holds a KEY SHARE lock) and blocks new ones
			// until the deleting transaction ends.
			usage: t(`
SELECT (SELECT count(*) FROM pgqrs_messages WHERE queue_id = q.id),
       (SELECT count(*) FROM pgqrs_archive WHERE queue_id = q.id AND dead),
       (SELECT count(*) FROM pgqrs_workers WHERE queue_id = q.id AND status <> 'stopped')
FROM pgqrs_queues q WHERE q.id = $1 FOR UPDATE`),
			purgeMessages:        t(`DELETE FROM pgqrs_messages WHERE queue_id = $1`),
			purgeArchive:         t(`DELETE FROM pgqrs_archive WHERE queue_id = $1`),
			deleteStoppedWorkers: t(`DELETE FROM pgqrs_workers WHERE queue_id = $1 AND status = 'stopped'`),
		},
		message: messageSQL{
			// Enqueue sends a NOTIFY (delivered at commit, coalesced per
			// transaction) so idle Run loops wake at once; not for delayed
			// messages, which nobody can claim yet.
			enqueue: t(`
WITH ins AS (
    INSERT INTO pgqrs_messages (queue_id, payload, vt, producer_worker_id, priority, headers, group_key)
    VALUES ($1::bigint, $2, coalesce($5::timestamptz, now() + make_interval(secs => $3::float8)), $4, $6, $7::jsonb, $8::text)
    RETURNING id
)
SELECT ins.id FROM ins LEFT JOIN (
    SELECT ` + wakeQueue + ` WHERE $5::timestamptz IS NULL AND $3::float8 = 0
) AS wake ON true`),
			// One statement for the whole batch: the payloads arrive as one
			// JSON array of strings (each a payload's JSON text) and are
			// inserted in array order.
			enqueueBatch: t(`
WITH ins AS (
    INSERT INTO pgqrs_messages (queue_id, payload, vt, producer_worker_id, priority, headers, group_key)
    SELECT $1::bigint, p.value::jsonb, coalesce($5::timestamptz, now() + make_interval(secs => $3::float8)), $4::bigint,
           $6::smallint, $7::jsonb, $8::text
    FROM jsonb_array_elements_text($2::jsonb) WITH ORDINALITY AS p (value, ord)
    ORDER BY p.ord
    RETURNING id
)
SELECT ins.id FROM ins LEFT JOIN (
    SELECT ` + wakeQueue + ` WHERE $5::timestamptz IS NULL AND $3::float8 = 0
) AS wake ON true`),
			// Jobs with keys: ON CONFLICT DO NOTHING on the unique index
			// pgqrs_messages_key skips a job whose key a live message holds,
			// even one committed after this statement's snapshot (the unique
			// check sees it; nothing else in the statement can, which is why
			// the holder is looked up by keyHolders, a statement of its own),
			// and never raises a unique violation, so a caller's transaction
			// survives a duplicate. A key's period is checked in the archive;
			// the live table needs no period (a live message always holds its
			// key).
			enqueueJobs: t(`
WITH ins AS (
    INSERT INTO pgqrs_messages (queue_id, payload, vt, producer_worker_id, priority, headers, dedup_key, group_key)
    SELECT $1::bigint, (j.value->>'p')::jsonb,
           coalesce((j.value->>'a')::timestamptz, now() + make_interval(secs => (j.value->>'d')::float8)),
           $3::bigint, (j.value->>'r')::smallint, j.value->'h', j.value->>'k', j.value->>'g'
    FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS j (value, ord)
    WHERE j.value->>'w' IS NULL OR NOT EXISTS (
        SELECT 1 FROM pgqrs_archive a
        WHERE a.queue_id = $1::bigint AND a.dedup_key = j.value->>'k'
          AND a.enqueued_at > now() + make_interval(secs => (j.value->>'w')::float8))
    ORDER BY j.ord
    ON CONFLICT (queue_id, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
    RETURNING id, dedup_key
)
SELECT ins.id, ins.dedup_key FROM ins LEFT JOIN (
    SELECT ` + wakeQueue + ` WHERE EXISTS (
        SELECT 1 FROM jsonb_array_elements($2::jsonb) AS e (value)
        WHERE e.value->>'a' IS NULL AND (e.value->>'d')::float8 = 0)
) AS wake ON true`),
			keyHolders: t(`
SELECT key, id FROM (
    SELECT k.value->>'k' AS key,
           coalesce((SELECT m.id FROM pgqrs_messages m WHERE m.queue_id = $1::bigint AND m.dedup_key = k.value->>'k'),
                    (SELECT a.id FROM pgqrs_archive a
                     WHERE k.value->>'w' IS NOT NULL AND a.queue_id = $1::bigint AND a.dedup_key = k.value->>'k'
                       AND a.enqueued_at > now() + make_interval(secs => (k.value->>'w')::float8)
                     ORDER BY a.enqueued_at DESC, a.id DESC LIMIT 1)) AS id
    FROM jsonb_array_elements($2::jsonb) AS k (value)
) AS h WHERE id IS NOT NULL`),
			// The claim must stay ordered range scans of pgqrs_messages_claim
			// whatever the statistics say: one per priority level, most urgent
			// first (a nested loop over pgClaimLevels; FOR UPDATE is allowed in
			// a lateral subquery, unlike in the arms of a UNION). The outer
			// LIMIT stops pulling rows, and so locking them, once it has the
			// batch, so a queue whose messages all wait at one level reads one
			// range. "LIMIT (SELECT $2)" hides the batch size from the planner
			// (a never-analyzed table otherwise gets a bitmap scan of the whole
			// queue plus a sort once the batch exceeds its row estimate), and
			// the ID array keeps the update a primary-key lookup rather than a
			// hash join. The EXISTS tests are InitPlans evaluated once, before
			// any level is read: a worker that is not ready or polling, or a
			// paused queue, claims nothing, and neither does a limited queue
			// (max_in_flight or rate_limit set), which flow.claim serves.
			dequeue: t(`
WITH picked AS (
    SELECT c.id, c.vt
    FROM (` + pgClaimLevels() + `) AS p (level)
    CROSS JOIN LATERAL (
        SELECT id, vt FROM pgqrs_messages
        WHERE queue_id = $1 AND priority = p.level AND vt <= now()
          AND vt >= coalesce(($5::jsonb ->> p.level)::timestamptz, '-infinity')
        ORDER BY vt, id LIMIT (SELECT $2::bigint) FOR UPDATE SKIP LOCKED
    ) AS c
    WHERE EXISTS (SELECT 1 FROM pgqrs_workers WHERE id = $4 AND status IN ('ready', 'polling'))
      AND EXISTS (SELECT 1 FROM pgqrs_queues WHERE id = $1 AND paused_at IS NULL
                  AND max_in_flight IS NULL AND rate_limit IS NULL)
    LIMIT (SELECT $2::bigint)
)
UPDATE pgqrs_messages m
SET vt = now() + make_interval(secs => $3::float8),
    read_ct = m.read_ct + 1,
    dequeued_at = coalesce(m.dequeued_at, now()),
    consumer_worker_id = $4
WHERE m.id = ANY (ARRAY(SELECT id FROM picked))
RETURNING m.id, m.payload, m.read_ct, m.enqueued_at, m.vt, m.last_error, m.priority, m.headers,
          (SELECT p.vt FROM picked p WHERE p.id = m.id)`),
			// Archive moves rows to pgqrs_archive in one statement; only rows
			// this consumer holds move. Settle statements look rows up by
			// primary key: "queue_id + 0" keeps the planner from scanning the
			// queue's whole range of the claim index instead.
			archive: t(pgSettleToArchive + `)
SELECT id, queue_id, payload, enqueued_at, read_ct, dequeued_at,
       producer_worker_id, consumer_worker_id, last_error, priority, dedup_key, headers, group_key
FROM gone
RETURNING id`),
			delete: t(`
DELETE FROM pgqrs_messages
WHERE id = ANY ($1::bigint[]) AND consumer_worker_id = $2 AND queue_id + 0 = $3
RETURNING id`),
			release: t(`
UPDATE pgqrs_messages
SET vt = now() + make_interval(secs => $4::float8), consumer_worker_id = NULL
WHERE id = ANY ($1::bigint[]) AND consumer_worker_id = $2 AND queue_id + 0 = $3
RETURNING id`),
			// A limited lease (flow_lease) is renewed only while unexpired: once
			// expired, a limited claim counted its slot free.
			extend: t(`
UPDATE pgqrs_messages
SET vt = now() + make_interval(secs => $4::float8)
WHERE id = ANY ($1::bigint[]) AND consumer_worker_id = $2 AND queue_id + 0 = $3
  AND (NOT flow_lease OR vt > now())
RETURNING id`),
			fail: t(`
UPDATE pgqrs_messages
SET vt = now() + make_interval(secs => $4::float8), consumer_worker_id = NULL, last_error = $5
WHERE id = ANY ($1::bigint[]) AND consumer_worker_id = $2 AND queue_id + 0 = $3
RETURNING id`),
			deadLetter: t(pgSettleToArchive + `, dead)
SELECT id, queue_id, payload, enqueued_at, read_ct, dequeued_at,
       producer_worker_id, consumer_worker_id, coalesce($4::text, last_error), priority, dedup_key, headers, group_key, true
FROM gone
RETURNING id`),
			exhaust: t(pgSettleToArchive + `, dead)
SELECT id, queue_id, payload, enqueued_at, greatest(read_ct - 1, 0), dequeued_at,
       producer_worker_id, consumer_worker_id, $4::text || coalesce('; last handler error: ' || last_error, ''),
       priority, dedup_key, headers, group_key, true
FROM gone
RETURNING id`),
			unclaim: t(`
UPDATE pgqrs_messages
SET vt = now(), consumer_worker_id = NULL, read_ct = greatest(read_ct - 1, 0)
WHERE id = ANY ($1::bigint[]) AND consumer_worker_id = $2 AND queue_id + 0 = $3
RETURNING id`),
			reschedule: t(`
UPDATE pgqrs_messages
SET vt = now() + make_interval(secs => $4::float8), consumer_worker_id = NULL, read_ct = greatest(read_ct - 1, 0)
WHERE id = ANY ($1::bigint[]) AND consumer_worker_id = $2 AND queue_id + 0 = $3
RETURNING id`),
			holder:      t(`SELECT consumer_worker_id FROM pgqrs_messages WHERE id = $1 AND queue_id = $2`),
			holders:     t(`SELECT id, consumer_worker_id FROM pgqrs_messages WHERE id = ANY ($1::bigint[]) AND queue_id + 0 = $2`),
			countHeld:   t(`SELECT count(*) FROM pgqrs_messages WHERE consumer_worker_id = $1 AND vt > now()`),
			releaseHeld: t(`UPDATE pgqrs_messages SET vt = now(), consumer_worker_id = NULL WHERE consumer_worker_id = $1`),
			drop:        t(`DELETE FROM pgqrs_messages WHERE id = $1 AND consumer_worker_id IS NULL`),
			// An admin's cancel: like archive, in one statement, but whoever
			// holds the message (its holder's settles then find it gone).
			cancel: t(`
WITH gone AS (
    DELETE FROM pgqrs_messages
    WHERE id = ANY ($1::bigint[]) AND queue_id + 0 = $2
    RETURNING id, queue_id, payload, enqueued_at, read_ct, dequeued_at,
              producer_worker_id, consumer_worker_id, last_error, priority, dedup_key, headers, group_key
)
INSERT INTO pgqrs_archive (id, queue_id, payload, enqueued_at, read_ct, dequeued_at,
                           producer_worker_id, consumer_worker_id, last_error, priority, dedup_key, headers, group_key, cancelled)
SELECT id, queue_id, payload, enqueued_at, read_ct, dequeued_at,
       producer_worker_id, consumer_worker_id, last_error, priority, dedup_key, headers, group_key, true
FROM gone
RETURNING id`),
			list: t(`
SELECT id, payload, headers, priority, read_ct, enqueued_at, vt, dequeued_at,
       coalesce(consumer_worker_id, 0), coalesce(last_error, ''), state
FROM (SELECT m.*, CASE WHEN m.vt <= now() THEN 'visible'
                       WHEN m.consumer_worker_id IS NOT NULL THEN 'leased'
                       ELSE 'delayed' END AS state
      FROM pgqrs_messages m WHERE m.queue_id = $1 AND m.id < $3) l
WHERE $2::text = '' OR state = $2::text
ORDER BY id DESC LIMIT $4`),
			explain: `EXPLAIN (ANALYZE, BUFFERS) `,
		},
		archive: archiveSQL{
			get: t(`
SELECT id, payload, read_ct, enqueued_at, archived_at, dead, coalesce(last_error, ''), priority, headers, cancelled
FROM pgqrs_archive WHERE queue_id = $1 AND id = $2`),
			list: t(`
SELECT id, payload, read_ct, enqueued_at, archived_at, dead, coalesce(last_error, ''), priority, headers, cancelled
FROM pgqrs_archive WHERE queue_id = $1 AND dead = $2 AND id < $3
ORDER BY id DESC LIMIT $4`),
			count: t(`SELECT coalesce(sum(CASE WHEN $2 THEN dead ELSE archived END), 0)::bigint
FROM pgqrs_archive_counts WHERE queue_id = $1`),
			cancelled: t(`SELECT id FROM pgqrs_archive WHERE id = ANY ($1::bigint[]) AND queue_id = $2 AND cancelled`),
		},
		worker: workerSQL{
			register: t(`
INSERT INTO pgqrs_workers (name, queue_id, role) VALUES ($1, $2, $3)
RETURNING id, started_at`),
			heartbeat: t(`UPDATE pgqrs_workers SET heartbeat_at = now() WHERE id = $1 RETURNING status`),
			transition: t(`
UPDATE pgqrs_workers
SET status = $2::text, heartbeat_at = now(),
    stopped_at = CASE WHEN $2::text = 'stopped' THEN now() ELSE stopped_at END
WHERE id = $1 AND status = ANY (string_to_array($3, ','))`),
			producerBeat: t(`
UPDATE pgqrs_workers w
SET heartbeat_at = now(),
    status = CASE WHEN w.status = 'stopped' THEN 'ready' ELSE w.status END,
    stopped_at = CASE WHEN w.status = 'stopped' THEN NULL ELSE w.stopped_at END
WHERE w.id = $1
  AND (w.status <> 'stopped' OR NOT EXISTS (
      SELECT 1 FROM pgqrs_workers o WHERE o.name = w.name AND o.status <> 'stopped'))
RETURNING w.status`),
			rejoin: t(`
INSERT INTO pgqrs_workers (id, name, queue_id, role) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
RETURNING status`),
			status: t(`SELECT status FROM pgqrs_workers WHERE id = $1`),
			get:    t(pgWorkerSelect + ` WHERE w.id = $1`),
			list:   t(pgWorkerSelect + ` WHERE $1::bigint = 0 OR w.queue_id = $1 ORDER BY w.id`),
		},
		admin: adminSQL{
			queueMetrics:    t(pgMetricsSelect + ` WHERE q.name = $1`),
			allQueueMetrics: t(pgMetricsSelect + ` ORDER BY q.name`),
			systemStats: t(`
SELECT (SELECT count(*) FROM pgqrs_queues),
       (SELECT coalesce(sum(live), 0) FROM pgqrs_live_counts),
       (SELECT coalesce(sum(archived), 0) FROM pgqrs_archive_counts),
       (SELECT coalesce(sum(dead), 0) FROM pgqrs_archive_counts),
       (SELECT count(*) FROM pgqrs_workers WHERE status <> 'stopped'),
       (SELECT count(*) FROM pgqrs_workers),
       (SELECT coalesce(max(version), 0) FROM pgqrs_schema_version)`),
			throughput: t(`
SELECT date_trunc('minute', archived_at), count(*),
       coalesce(extract(epoch FROM avg(dequeued_at - enqueued_at)), 0)::float8,
       coalesce(extract(epoch FROM max(dequeued_at - enqueued_at)), 0)::float8
FROM (SELECT archived_at, enqueued_at, dequeued_at, cancelled FROM pgqrs_archive
      WHERE queue_id = $1 AND NOT dead ORDER BY id DESC LIMIT $3) a
WHERE NOT cancelled AND archived_at >= date_trunc('minute', now() + make_interval(secs => $2::float8))
GROUP BY 1 ORDER BY 1`),
			tableExists:    t(`SELECT to_regclass($1) IS NOT NULL`),
			indexExists:    t(`SELECT to_regclass($1) IS NOT NULL`),
			triggerEnabled: t(`SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = $1 AND tgrelid = to_regclass($2) AND tgenabled <> 'D')`),
			compactCounts:  t(`SELECT pgqrs_counts_compact()`),
			recount:        t(`SELECT pgqrs_counts_rebuild()`),
			orphans: t(`
SELECT (SELECT count(*) FROM pgqrs_messages m WHERE NOT EXISTS (SELECT 1 FROM pgqrs_queues q WHERE q.id = m.queue_id))
     + (SELECT count(*) FROM pgqrs_archive a WHERE NOT EXISTS (SELECT 1 FROM pgqrs_queues q WHERE q.id = a.queue_id))`),
			// Visible messages only: a live lease is left to its holder.
			moveToDLQ: t(`
WITH gone AS (
    DELETE FROM pgqrs_messages
    WHERE read_ct >= $1 AND vt <= now()
    RETURNING id, queue_id, payload, enqueued_at, read_ct, dequeued_at,
              producer_worker_id, consumer_worker_id, last_error, priority, dedup_key, headers, group_key
)
INSERT INTO pgqrs_archive (id, queue_id, payload, enqueued_at, read_ct, dequeued_at,
                           producer_worker_id, consumer_worker_id, last_error, priority, dedup_key, headers, group_key, dead)
SELECT id, queue_id, payload, enqueued_at, read_ct, dequeued_at, producer_worker_id, consumer_worker_id,
       'no success in ' || read_ct || CASE WHEN read_ct = 1 THEN ' attempt' ELSE ' attempts' END
       || coalesce('; last handler error: ' || last_error, ''), priority, dedup_key, headers, group_key, true
FROM gone
RETURNING id`),
			// The dead letters leave the archive and return to the live table
			// in one statement, under their IDs. A dead letter whose key a live
			// message holds stays dead, and so does one whose key a newer dead
			// letter being replayed has (two live messages cannot share a
			// key). A key taken by an enqueue committed while this runs fails
			// the statement with a unique violation, and nothing changes.
			replay: t(`
WITH gone AS (
    DELETE FROM pgqrs_archive d
    WHERE d.queue_id = $1 AND d.dead AND ($3::boolean OR d.id = ANY ($2::bigint[]))
      AND (d.dedup_key IS NULL OR (
          NOT EXISTS (SELECT 1 FROM pgqrs_messages m WHERE m.queue_id = $1 AND m.dedup_key = d.dedup_key)
          AND NOT EXISTS (SELECT 1 FROM pgqrs_archive o
                          WHERE o.queue_id = $1 AND o.dedup_key = d.dedup_key AND o.dead AND o.id > d.id
                            AND ($3::boolean OR o.id = ANY ($2::bigint[])))))
    RETURNING id, queue_id, payload, enqueued_at, producer_worker_id, priority, dedup_key, headers, group_key
)
INSERT INTO pgqrs_messages (id, queue_id, payload, vt, enqueued_at, read_ct, producer_worker_id, last_error,
                            priority, dedup_key, headers, group_key)
SELECT id, queue_id, payload, now(), enqueued_at, 0, producer_worker_id, NULL, priority, dedup_key, headers, group_key FROM gone`),
			purgeDead: t(`DELETE FROM pgqrs_archive WHERE queue_id = $1 AND dead`),
			// $2 is minus the stale age, in seconds.
			workerHealth: t(`
SELECT count(*) FILTER (WHERE status = 'ready'),
       count(*) FILTER (WHERE status = 'polling'),
       count(*) FILTER (WHERE status = 'suspended'),
       count(*) FILTER (WHERE status = 'interrupted'),
       count(*) FILTER (WHERE status = 'stopped'),
       count(*) FILTER (WHERE role IN ('consumer', 'producer') AND status IN ('ready', 'polling', 'interrupted')
                        AND heartbeat_at < now() + make_interval(secs => $2::float8))
FROM pgqrs_workers WHERE $1::bigint = 0 OR queue_id = $1`),
			stopStaleWorkers: t(`
UPDATE pgqrs_workers SET status = 'stopped', stopped_at = now()
WHERE role IN ('consumer', 'producer') AND status IN ('ready', 'polling', 'interrupted')
  AND heartbeat_at < now() + make_interval(secs => $1::float8)
RETURNING id`),
			staleConsumers: t(`
SELECT EXISTS (
    SELECT 1 FROM pgqrs_workers
    WHERE queue_id = $1 AND status IN ('ready', 'polling', 'interrupted') AND role = 'consumer'
      AND heartbeat_at < now() + make_interval(secs => $2::float8) AND id <> $3)`),
			stopStaleConsumers: t(`
UPDATE pgqrs_workers SET status = 'stopped', stopped_at = now()
WHERE queue_id = $1 AND status IN ('ready', 'polling', 'interrupted') AND role = 'consumer'
  AND heartbeat_at < now() + make_interval(secs => $2::float8) AND id <> $3
RETURNING id`),
			releaseWorkers: t(`
UPDATE pgqrs_messages SET vt = now(), consumer_worker_id = NULL
WHERE consumer_worker_id = ANY ($1::bigint[])`),
			purgeWorkers: t(`
DELETE FROM pgqrs_workers w
WHERE w.status = 'stopped' AND w.stopped_at <= now() + make_interval(secs => $1::float8)
  AND NOT EXISTS (SELECT 1 FROM pgqrs_messages m
                  WHERE m.consumer_worker_id = w.id OR m.producer_worker_id = w.id)`),
		},
		version: versionSQL{
			createTable: t(`
CREATE TABLE IF NOT EXISTS pgqrs_schema_version (
    version    BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`),
			applied: t(`SELECT version FROM pgqrs_schema_version ORDER BY version`),
			record:  t(`INSERT INTO pgqrs_schema_version (version, name) VALUES ($1, $2)`),
		},
		signal: pgSignalSQL(t, channel),
		retention: retentionSQL{
			get: t(`SELECT archived_secs, dead_secs FROM pgqrs_retention WHERE queue_id = $1`),
			put: t(`
INSERT INTO pgqrs_retention (queue_id, archived_secs, dead_secs) VALUES ($1, $2, $3)
ON CONFLICT (queue_id) DO UPDATE SET archived_secs = EXCLUDED.archived_secs, dead_secs = EXCLUDED.dead_secs, updated_at = now()`),
			clear: t(`DELETE FROM pgqrs_retention WHERE queue_id = $1`),
			// The planner reads the oldest IDs of (queue_id, dead) from
			// pgqrs_archive_queue, or the old block ranges from the BRIN
			// index on archived_at (migration 0008: rows enter the archive
			// in archive-time order), whichever its statistics favour.
			//
			// The archive is partitioned by UTC day (migration 0009). An age
			// of a day or more is applied a whole day at a time: the cutoff
			// is the start of the UTC day that now minus age falls in, so
			// the rows of a day partition expire together and the partition
			// can be dropped whole (dropPartition, run first) rather than
			// emptied row by row. (A ctid is unique within one partition
			// only: the rows are matched by (id, archived_at), the primary
			// key.)
			expireArchived: t(`
DELETE FROM pgqrs_archive WHERE (id, archived_at) IN (
    SELECT id, archived_at FROM pgqrs_archive
    WHERE queue_id = $1 AND NOT dead AND archived_at < ` + pgRetentionCutoff + `
    LIMIT $3)`),
			expireDead: t(`
DELETE FROM pgqrs_archive WHERE (id, archived_at) IN (
    SELECT id, archived_at FROM pgqrs_archive
    WHERE queue_id = $1 AND dead AND archived_at < ` + pgRetentionCutoff + `
    LIMIT $3)`),
			addPartitions: t(`
SELECT count(*) FILTER (WHERE pgqrs_archive_add(d::date))
FROM generate_series(($1::timestamptz AT TIME ZONE 'UTC')::date, ($2::timestamptz AT TIME ZONE 'UTC')::date, interval '1 day') AS d`),
			partitions: t(`
SELECT c.relname,
       CASE WHEN c.relname ~ '_p[0-9]{8}$' THEN to_date(right(c.relname, 8), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC' END,
       CASE WHEN c.relname ~ '_p[0-9]{8}$' THEN (to_date(right(c.relname, 8), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' END,
       greatest(c.reltuples, 0)::bigint
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = (SELECT typrelid FROM pg_type WHERE oid = pg_typeof(CAST(NULL AS pgqrs_archive)))
ORDER BY 2 NULLS FIRST, 1`),
			dropPartition: t(`SELECT dropped, archived, dead FROM pgqrs_archive_drop($1::boolean, $2::bigint, $3::float8, $4::float8)`),
		},
		workflow: workflowSQL{
			byName:     t(`SELECT id, queue_id FROM pgqrs_workflows WHERE name = $1`),
			byQueue:    t(`SELECT name FROM pgqrs_workflows WHERE queue_id = $1`),
			unfinished: t(`SELECT count(*) FROM pgqrs_runs WHERE workflow_id = $1 AND status NOT IN ('SUCCESS', 'ERROR', 'CANCELLED')`),
			deleteRuns: t(`DELETE FROM pgqrs_runs WHERE workflow_id = $1`),
			// Finished runs that ended before $2 (their steps go with them).
			purgeRuns: t(`
DELETE FROM pgqrs_runs
WHERE workflow_id = $1 AND status IN ('SUCCESS', 'ERROR', 'CANCELLED') AND finished_at < $2`),
			deleteByID: t(`DELETE FROM pgqrs_workflows WHERE id = $1`),
			insert:     t(`INSERT INTO pgqrs_workflows (name, queue_id) VALUES ($1, $2) RETURNING id`),
			insertRun: t(`
INSERT INTO pgqrs_runs (workflow_id, message_id, input, deadline_at, run_key, parent_run_id)
VALUES ($1, $2, $3, now() + make_interval(secs => $4::float8), $5, $6)
ON CONFLICT DO NOTHING
RETURNING id`),
			// The parent's message, when it waits (delayed, unleased).
			wakeParent: t(`
UPDATE pgqrs_messages SET vt = now()
WHERE id = (SELECT p.message_id FROM pgqrs_runs c JOIN pgqrs_runs p ON p.id = c.parent_run_id WHERE c.id = $1)
  AND vt > now() AND consumer_worker_id IS NULL
RETURNING queue_id`),
			children: t(`
SELECT id, status, output, coalesce(error, '') FROM pgqrs_runs WHERE id = ANY ($1::bigint[]) AND parent_run_id = $2`),
			unfinishedChildren: t(`
SELECT id FROM pgqrs_runs WHERE parent_run_id = $1 AND status NOT IN ('SUCCESS', 'ERROR', 'CANCELLED') ORDER BY id`),
			runByKey: t(`SELECT id FROM pgqrs_runs WHERE workflow_id = $1 AND run_key = $2`),
			insertRuns: t(`
INSERT INTO pgqrs_runs (workflow_id, message_id, input, deadline_at)
SELECT $1, (p.e ->> 0)::bigint, p.e -> 1, now() + make_interval(secs => $3::float8)
FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS p (e, ord)
ORDER BY p.ord
RETURNING id`),
			runByMessage: t(`
SELECT id, status, input, resume_at, started_at IS NOT NULL, now(), deadline_at, coalesce(parent_run_id, 0)
FROM pgqrs_runs WHERE message_id = $1`),
			lock: t(`SELECT status, message_id FROM pgqrs_runs WHERE id = $1 FOR UPDATE`),
			// Whether a worker holds the run's message now. The row lock waits
			// for a give-back in flight, so the answer is the committed one.
			lockMessage: t(`
SELECT consumer_worker_id IS NOT NULL AND vt > now() FROM pgqrs_messages WHERE id = $1 FOR UPDATE`),
			get:  t(pgRunSelect + ` WHERE r.id = $1`),
			list: t(pgRunSelect + ` WHERE ($1 = '' OR r.name = $1) AND ($2 = '' OR r.status = $2) AND r.id < $3 AND ($5::bigint = 0 OR r.parent_run_id = $5) ORDER BY r.id DESC LIMIT $4`),
			// A paused run continues (a queued one is marked RUNNING by its
			// first recorded step).
			start: t(`
UPDATE pgqrs_runs
SET status = 'RUNNING', started_at = coalesce(started_at, now()), resume_at = NULL, updated_at = now()
WHERE id = $1 AND status = 'PAUSED'
RETURNING status`),
			pause: t(`
UPDATE pgqrs_runs
SET status = 'PAUSED', resume_at = $2, started_at = coalesce(started_at, now()), updated_at = now()
WHERE id = $1 AND status IN ('QUEUED', 'RUNNING')
RETURNING status`),
			// The run's end, with its last completed step ($5, NULL for none)
			// recorded in the same statement; a run asked to cancel ends
			// cancelled whatever it was finishing with. If another execution
			// recorded that step first, this one's end is not recorded: the
			// other execution goes on from the step's recorded result.
			finish: t(`
WITH step AS (
    INSERT INTO pgqrs_steps (run_id, name, position, status, output, attempts)
    SELECT r.id, $5::text, $6::integer, 'SUCCESS', $7::jsonb, $8::integer
    FROM pgqrs_runs r
    WHERE r.id = $1 AND $5::text IS NOT NULL AND r.status IN ('QUEUED', 'RUNNING', 'CANCELLING')
    ON CONFLICT (run_id, name) DO UPDATE
    SET status = 'SUCCESS', output = excluded.output, error = NULL, retry_at = NULL,
        attempts = excluded.attempts, updated_at = now()
    WHERE pgqrs_steps.status = 'ERROR'
    RETURNING 1
), u AS (
    UPDATE pgqrs_runs
    SET status = CASE WHEN status = 'CANCELLING' THEN 'CANCELLED' ELSE $2::text END,
        output = CASE WHEN status = 'CANCELLING' THEN NULL ELSE $3::jsonb END,
        error = CASE WHEN status = 'CANCELLING' THEN NULL ELSE $4::text END,
        resume_at = NULL, started_at = coalesce(started_at, now()), finished_at = now(), updated_at = now()
    WHERE id = $1 AND status IN ('QUEUED', 'RUNNING', 'PAUSED', 'CANCELLING')
      AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM step))
    RETURNING status, waited
)
SELECT u.status FROM u
LEFT JOIN LATERAL (SELECT ` + wakeRun + ` WHERE u.waited) AS wake ON true`),
			// A NOTIFY makes every committing transaction that sent one wait
			// for the others: a run's end announces itself only to waiters.
			markWaited: t(`UPDATE pgqrs_runs SET waited = true WHERE id = $1 AND NOT waited`),
			setStatus: t(`
WITH u AS (
    UPDATE pgqrs_runs
    SET status = $2::text, resume_at = NULL, updated_at = now(),
        finished_at = CASE WHEN $2::text = 'CANCELLED' THEN now() ELSE finished_at END
    WHERE id = $1
    RETURNING status
)
SELECT u.status FROM u LEFT JOIN (SELECT ` + wakeRun + `) AS wake ON true`),
			requeue: t(`
UPDATE pgqrs_runs
SET status = 'QUEUED', message_id = $2, output = NULL, error = NULL, resume_at = NULL,
    finished_at = NULL, updated_at = now()
WHERE id = $1 AND status = 'ERROR'`),
			steps: t(`
SELECT name, position, status, output, coalesce(error, ''), attempts, retry_at, updated_at
FROM pgqrs_steps WHERE run_id = $1 ORDER BY position`),
			// Steps are recorded only while the run may still take them; the
			// first recorded step marks a QUEUED run RUNNING. A recorded success
			// is never overwritten (the first result wins if a run ever ran
			// twice at once); a failed attempt is. The run's status comes back
			// so a requested cancel is seen at once; no row means nothing was
			// recorded.
			stepDone: t(pgStepRecord + `
    INSERT INTO pgqrs_steps (run_id, name, position, status, output, attempts)
    SELECT r.id, $2::text, $3::integer, 'SUCCESS', $4::jsonb, $5::integer FROM r
    ON CONFLICT (run_id, name) DO UPDATE
    SET status = 'SUCCESS', output = excluded.output, error = NULL, retry_at = NULL,
        attempts = excluded.attempts, updated_at = now()
    WHERE pgqrs_steps.status = 'ERROR'
    RETURNING run_id
)
SELECT r.status FROM r JOIN s ON true`),
			stepFailed: t(pgStepRecord + `
    INSERT INTO pgqrs_steps (run_id, name, position, status, error, attempts, retry_at)
    SELECT r.id, $2::text, $3::integer, 'ERROR', $4::text, $5::integer, $6::timestamptz FROM r
    ON CONFLICT (run_id, name) DO UPDATE
    SET status = 'ERROR', output = NULL, error = excluded.error, retry_at = excluded.retry_at,
        attempts = excluded.attempts, updated_at = now()
    WHERE pgqrs_steps.status = 'ERROR'
    RETURNING run_id
)
SELECT r.status FROM r JOIN s ON true`),
			deleteFailedSteps: t(`DELETE FROM pgqrs_steps WHERE run_id = $1 AND status = 'ERROR'`),
			// Make a waiting (delayed, unleased) message visible now.
			wakeMessage:   t(`UPDATE pgqrs_messages SET vt = now() WHERE id = $1 AND vt > now() AND consumer_worker_id IS NULL`),
			listWorkflows: t(listWorkflowsSQL),
		},
		schedule: scheduleSQL{
			put: t(`
INSERT INTO pgqrs_schedules AS s (name, cron, timezone, queue_id, workflow_id, payload, priority, headers, next_run_at)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8::jsonb, $9)
ON CONFLICT (name) DO UPDATE
SET cron = excluded.cron, timezone = excluded.timezone, queue_id = excluded.queue_id,
    workflow_id = excluded.workflow_id, payload = excluded.payload, priority = excluded.priority,
    headers = excluded.headers,
    next_run_at = CASE WHEN s.cron = excluded.cron AND s.timezone = excluded.timezone
                       THEN s.next_run_at ELSE excluded.next_run_at END,
    updated_at = now()
RETURNING ` + pgScheduleReturning),
			get:  t(pgScheduleSelect + ` WHERE s.name = $1`),
			list: t(pgScheduleSelect + ` ORDER BY s.name`),
			due: t(`
SELECT name, cron, timezone, next_run_at FROM pgqrs_schedules
WHERE NOT paused AND next_run_at <= $1 ORDER BY next_run_at LIMIT $2`),
			// Concurrent claims of one occurrence queue on the row lock; the
			// losers re-read the row, find next_run_at moved and change nothing.
			claim: t(`
UPDATE pgqrs_schedules SET next_run_at = $3, last_run_at = $4, updated_at = now()
WHERE name = $1 AND next_run_at = $2 AND cron = $5 AND timezone = $6 AND NOT paused
RETURNING queue_id, workflow_id, payload, priority, headers`),
			ran: t(`
UPDATE pgqrs_schedules SET last_run_at = $2, updated_at = now() WHERE name = $1
RETURNING queue_id, workflow_id, payload, priority, headers`),
			pause: t(`UPDATE pgqrs_schedules SET paused = true, updated_at = now() WHERE name = $1`),
			resume: t(`
UPDATE pgqrs_schedules
SET next_run_at = CASE WHEN paused THEN $2 ELSE next_run_at END, paused = false, updated_at = now()
WHERE name = $1 AND cron = $3 AND timezone = $4`),
			delete: t(`DELETE FROM pgqrs_schedules WHERE name = $1`),
		},
		flow: flowSQL{
			// An UPDATE that changes nothing: a row lock of FOR NO KEY UPDATE
			// strength, which limited claims of the queue wait on but
			// enqueues (whose foreign-key check takes KEY SHARE) do not, and
			// a RETURNING evaluated after the lock was granted, so its
			// clock_timestamp() is later than the previous holder's commit.
			lock: t(`
UPDATE pgqrs_queues SET rate_count = rate_count WHERE id = $1
RETURNING max_in_flight, group_limit, rate_limit, rate_period_ms, rate_window_at, rate_count, clock_timestamp()`),
			settings: t(`
SELECT max_in_flight, group_limit, rate_limit, rate_period_ms, rate_window_at, rate_count, clock_timestamp(),
       (SELECT count(*) FROM pgqrs_messages
        WHERE queue_id = q.id AND flow_lease AND vt > clock_timestamp() AND consumer_worker_id IS NOT NULL)
FROM pgqrs_queues q WHERE id = $1`),
			// The fast claim with two changes: the time is lock's ($6), and
			// the outer LIMIT is also bounded by max_in_flight minus the
			// unexpired limited leases, counted in pgqrs_messages_flow. The
			// statement runs after lock in the same transaction, so under
			// READ COMMITTED its snapshot holds every earlier limited claim
			// of the queue (they committed before lock was granted).
			claim: t(`
WITH picked AS (
    SELECT c.id
    FROM (` + pgClaimLevels() + `) AS p (level)
    CROSS JOIN LATERAL (
        SELECT id FROM pgqrs_messages
        WHERE queue_id = $1 AND priority = p.level AND vt <= $6::timestamptz
        ORDER BY vt, id LIMIT (SELECT $2::bigint) FOR UPDATE SKIP LOCKED
    ) AS c
    WHERE EXISTS (SELECT 1 FROM pgqrs_workers WHERE id = $4 AND status IN ('ready', 'polling'))
      AND EXISTS (SELECT 1 FROM pgqrs_queues WHERE id = $1 AND paused_at IS NULL)
    LIMIT (SELECT greatest(0, least($2::bigint, $5::bigint - (
        SELECT count(*) FROM pgqrs_messages
        WHERE queue_id = $1 AND flow_lease AND vt > $6::timestamptz AND consumer_worker_id IS NOT NULL))))
)
UPDATE pgqrs_messages m
SET vt = $6::timestamptz + make_interval(secs => $3::float8),
    read_ct = m.read_ct + 1,
    dequeued_at = coalesce(m.dequeued_at, $6::timestamptz),
    consumer_worker_id = $4,
    flow_lease = true
WHERE m.id = ANY (ARRAY(SELECT id FROM picked))
RETURNING m.id, m.payload, m.read_ct, m.enqueued_at, m.vt, m.last_error, m.priority, m.headers, NULL::timestamptz`),
			count: t(`UPDATE pgqrs_queues SET rate_window_at = $2, rate_count = $3 WHERE id = $1`),
			set: t(`
UPDATE pgqrs_queues SET max_in_flight = $2, group_limit = $3, rate_limit = $4, rate_period_ms = $5,
       rate_window_at = CASE WHEN rate_period_ms IS DISTINCT FROM $5 THEN NULL ELSE rate_window_at END,
       rate_count = CASE WHEN rate_period_ms IS DISTINCT FROM $5 THEN 0 ELSE rate_count END
WHERE id = $1 RETURNING id`),
			lockGroups: `SELECT pg_advisory_xact_lock(1886843507, ($1::bigint % 2147483647)::integer)`,
			promote: t(`
WITH g AS (
    SELECT id, vt = '9999-01-01 00:00:00+00' AS parked,
           row_number() OVER (PARTITION BY group_key, vt = '9999-01-01 00:00:00+00' ORDER BY id) AS rn,
           count(*) FILTER (WHERE vt < '9999-01-01 00:00:00+00') OVER (PARTITION BY group_key) AS unparked
    FROM pgqrs_messages WHERE queue_id = $1 AND group_key IS NOT NULL
)
UPDATE pgqrs_messages m SET vt = now()
FROM g, pgqrs_queues q
WHERE m.id = g.id AND g.parked AND q.id = $1 AND g.rn <= coalesce(q.group_limit, 1) - g.unparked`),
		},
		indexes: []string{"pgqrs_messages_claim", "pgqrs_workers_live_name", "pgqrs_workers_queue", "pgqrs_archive_queue",
			"pgqrs_runs_message", "pgqrs_runs_workflow", "pgqrs_messages_key", "pgqrs_archive_key", "pgqrs_schedules_due",
			"pgqrs_signals_unreceived", "pgqrs_signals_run", "pgqrs_archive_archived_at", "pgqrs_messages_flow", "pgqrs_messages_group"},
		triggers: []tableTrigger{
			{"pgqrs_messages_group_park", "pgqrs_messages"}, {"pgqrs_messages_group_promote", "pgqrs_messages"},
			{"pgqrs_messages_count_in", "pgqrs_messages"}, {"pgqrs_messages_count_out", "pgqrs_messages"},
			{"pgqrs_archive_count_in", "pgqrs_archive"}, {"pgqrs_archive_count_out", "pgqrs_archive"},
			{"pgqrs_archive_count_update", "pgqrs_archive"},
		},
		poolSize:       32,
		prepare:        true,
		installPrelude: pgInstallPrelude(schema),
		secondsArg:     func(d time.Duration) any { return d.Seconds() },
		timeArg:        func(t time.Time) any { return t.UTC() },
		idsArg:         func(ids []int64) any { return "{" + idList(ids) + "}" },
		notifyChannel:  channel,
		listen:         pgListen,
		isUnique:       func(err error) bool { return sqlState(err) == "23505" },
		isForeignKey:   func(err error) bool { return sqlState(err) == "23503" },
		isCloseNoise:   func(error) bool { return false },
		// 28P01: wrong password; 28000: no pg_hba.conf entry, or a role
		// that may not log in.
		isAuthFailed: func(err error) bool { s := sqlState(err); return s == "28P01" || s == "28000" },
		// 22P05: jsonb refuses \u0000; 22P02: text that is not JSON.
		isBadJSON: func(err error) bool { s := sqlState(err); return s == "22P05" || s == "22P02" },
		// Serialization failures and deadlocks roll the statement back.
		isBusy:  func(err error) bool { s := sqlState(err); return s == "40001" || s == "40P01" },
		qualify: t,
		schema:  schema,
		relation: func(name string) string {
			if schema == "" {
				return name
			}
			return `"` + schema + `".` + strings.TrimSpace(name)
		},
	}
	return d
}

// pgRetentionCutoff is the expire statements' cutoff for minus age $2 (in
// seconds): now minus age, or for an age of a day or more the start of the
// UTC day that falls in (see retentionSQL).
const pgRetentionCutoff = `CASE WHEN $2::float8 <= -86400
    THEN date_trunc('day', now() + make_interval(secs => $2::float8), 'UTC')
    ELSE now() + make_interval(secs => $2::float8) END`

// pgClaimLevels is the claim's list of priority levels, most urgent first,
// as a VALUES list the claim joins laterally: one ordered range scan of
// pgqrs_messages_claim per level, read lazily, so the claim's LIMIT stops
// at the batch and the less urgent levels are read (and locked) only when
// the more urgent ones run dry.
func pgClaimLevels() string {
	levels := make([]string, 0, MaxPriority+1)
	for p := 0; p <= MaxPriority; p++ {
		levels = append(levels, fmt.Sprintf("(%d)", p))
	}
	return "VALUES " + strings.Join(levels, ", ")
}

// pgSettleToArchive starts the statements that move messages the consumer
// holds ($1 IDs, $2 consumer, $3 queue) to pgqrs_archive in one statement:
// the deleted rows in CTE "gone", then the archive's column list, which
// the statement ends (with ", dead" for dead letters) before its SELECT.
const pgSettleToArchive = `
WITH gone AS (
    DELETE FROM pgqrs_messages
    WHERE id = ANY ($1::bigint[]) AND consumer_worker_id = $2 AND queue_id + 0 = $3
    RETURNING id, queue_id, payload, enqueued_at, read_ct, dequeued_at,
              producer_worker_id, consumer_worker_id, last_error, priority, dedup_key, headers, group_key
)
INSERT INTO pgqrs_archive (id, queue_id, payload, enqueued_at, read_ct, dequeued_at,
                           producer_worker_id, consumer_worker_id, last_error, priority, dedup_key, headers, group_key`

// pgStepRecord starts the step-recording statements: the run, if it may
// still take steps, marked RUNNING; the step row follows in CTE "s".
const pgStepRecord = `
WITH r AS (
    UPDATE pgqrs_runs
    SET status = CASE WHEN status = 'QUEUED' THEN 'RUNNING' ELSE status END,
        started_at = coalesce(started_at, now()), updated_at = now()
    WHERE id = $1 AND status IN ('QUEUED', 'RUNNING', 'CANCELLING')
    RETURNING id, status
), s AS (`

// pgSignalSQL is the signal statements (see signalSQL), their tables
// named by t; the wakes announce the run's queue, and setEvent the run's
// events, on channel. A Recv wait is pending while its step has no
// recorded success (the condition pending).
func pgSignalSQL(t func(string) string, channel string) signalSQL {
	const pending = `NOT EXISTS (SELECT 1 FROM pgqrs_steps s WHERE s.run_id = w.run_id AND s.name = w.step AND s.status = 'SUCCESS')`
	wake := func(cond string) string {
		return t(`
WITH u AS (
    UPDATE pgqrs_messages m SET vt = now()
    FROM pgqrs_runs r
    WHERE r.id = $1 AND m.id = r.message_id AND m.vt > now() AND m.consumer_worker_id IS NULL` + cond + `
    RETURNING m.queue_id
)
SELECT u.queue_id FROM u
LEFT JOIN LATERAL (SELECT pg_notify('` + channel + `', 'q' || u.queue_id)) AS wake ON true`)
	}
	return signalSQL{
		send: t(`
INSERT INTO pgqrs_signals (run_id, topic, payload) VALUES ($1, $2, $3::jsonb)
RETURNING id, EXISTS (SELECT 1 FROM pgqrs_signal_waits w WHERE w.run_id = $1 AND w.topic = $2 AND ` + pending + `)`),
		wake: wake(""),
		wakeSignalled: wake(`
      AND EXISTS (SELECT 1 FROM pgqrs_signals s WHERE s.run_id = $1 AND s.topic = $2 AND s.received_at IS NULL)`),
		// The row lock makes a second execution of the run (a lost lease)
		// wait, then find the signal received and take none.
		claim: t(`
UPDATE pgqrs_signals SET received_by = $3, received_at = now()
WHERE id = (SELECT id FROM pgqrs_signals
            WHERE run_id = $1 AND topic = $2 AND received_at IS NULL
            ORDER BY id LIMIT 1 FOR UPDATE)
  AND received_at IS NULL
RETURNING id, payload`),
		wait: t(`
INSERT INTO pgqrs_signal_waits (run_id, step, topic, until_at)
SELECT $1::bigint, $2::text, $3::text, now() + make_interval(secs => $4::float8)
WHERE NOT EXISTS (SELECT 1 FROM pgqrs_steps WHERE run_id = $1 AND name = $2 AND status = 'SUCCESS')
ON CONFLICT (run_id, step) DO UPDATE SET until_at = pgqrs_signal_waits.until_at
RETURNING until_at, until_at <= now()`),
		list: t(`
SELECT id, topic, payload, sent_at, coalesce(received_by, ''), received_at
FROM pgqrs_signals WHERE run_id = $1 ORDER BY id`),
		waits: t(`
SELECT w.step, w.topic, w.until_at FROM pgqrs_signal_waits w
WHERE w.run_id = $1 AND ` + pending + `
ORDER BY w.until_at`),
		setEvent: t(`
WITH u AS (
    INSERT INTO pgqrs_events (run_id, key, value) VALUES ($1, $2, $3::jsonb)
    ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, updated_at = now()
    RETURNING run_id
)
SELECT 1 FROM u LEFT JOIN LATERAL (SELECT pg_notify('` + channel + `', 'e' || u.run_id)) AS wake ON true`),
		getEvent: t(`SELECT value, updated_at FROM pgqrs_events WHERE run_id = $1 AND key = $2`),
		events:   t(`SELECT key, value, updated_at FROM pgqrs_events WHERE run_id = $1 ORDER BY key`),
	}
}

// pgRunSelect reports a QUEUED run whose message a worker holds as RUNNING,
// started when it was claimed: a run is marked RUNNING in the store only
// with its first recorded step, which saves a commit per run.
const pgRunSelect = `
SELECT * FROM (
    SELECT r.id, w.name,
           CASE WHEN r.status = 'QUEUED' AND m.consumer_worker_id IS NOT NULL AND m.vt > now()
                THEN 'RUNNING' ELSE r.status END AS status,
           r.input, r.output, coalesce(r.error, '') AS error, r.resume_at, r.created_at,
           coalesce(r.started_at, CASE WHEN m.consumer_worker_id IS NOT NULL AND m.vt > now() THEN m.dequeued_at END) AS started_at,
           r.finished_at, r.updated_at, r.deadline_at, coalesce(r.run_key, '') AS run_key,
           coalesce(r.parent_run_id, 0) AS parent_run_id
    FROM pgqrs_runs r JOIN pgqrs_workflows w ON w.id = r.workflow_id
    LEFT JOIN pgqrs_messages m ON m.id = r.message_id
) AS r`

const pgWorkerSelect = `
SELECT w.id, w.name, coalesce(q.name, ''), w.role, w.status, w.started_at, w.heartbeat_at, w.stopped_at
FROM pgqrs_workers w LEFT JOIN pgqrs_queues q ON q.id = w.queue_id`

const pgMetricsSelect = `
SELECT q.name, coalesce(lc.live, 0), coalesce(lc.live, 0) - ls.future, ls.leased,
       coalesce(ac.archived, 0), coalesce(ac.dead, 0),
       CASE WHEN lc.live > 0 THEN ls.oldest END, CASE WHEN lc.live > 0 THEN lc.newest END,
       now(), q.paused_at
FROM pgqrs_queues q
CROSS JOIN LATERAL (SELECT sum(c.live) AS live, max(c.newest) AS newest FROM pgqrs_live_counts c WHERE c.queue_id = q.id) AS lc
CROSS JOIN LATERAL (SELECT sum(c.archived) AS archived, sum(c.dead) AS dead FROM pgqrs_archive_counts c WHERE c.queue_id = q.id) AS ac
CROSS JOIN LATERAL pgqrs_live_state(q.id) AS ls`

// pgScheduleReturning is the schedule columns of a row just written.
const pgScheduleReturning = `name, cron, timezone, (SELECT q.name FROM pgqrs_queues q WHERE q.id = s.queue_id),
       (SELECT w.name FROM pgqrs_workflows w WHERE w.id = s.workflow_id), payload, priority, headers, paused,
       next_run_at, last_run_at, created_at, updated_at`

// pgScheduleSelect reads the schedule columns.
const pgScheduleSelect = `
SELECT s.name, s.cron, s.timezone, q.name, w.name, s.payload, s.priority, s.headers, s.paused,
       s.next_run_at, s.last_run_at, s.created_at, s.updated_at
FROM pgqrs_schedules s JOIN pgqrs_queues q ON q.id = s.queue_id
LEFT JOIN pgqrs_workflows w ON w.id = s.workflow_id`

// pgTableName matches the names of pgqrs's tables (and its one view) and
// functions:
// whole words, so index names such as pgqrs_messages_claim stay as they are
// (Postgres creates an index in its table's schema).
var pgTableName = regexp.MustCompile(`\bpgqrs_(queues|workers|messages|archive|schema_version|workflows|runs|steps|schedules|signals|signal_waits|events|retention|group_park|group_promote|archive_default|archive_0008|archive_add|archive_expired|archive_drop|live_counts|archive_counts|count_live|count_archive|counts_lock|counts_compact|counts_rebuild|counts_slot|live_state)\b`)

// pgDroppedIndex matches the index a migration drops: unlike CREATE INDEX,
// DROP INDEX finds its index through the search_path unless it is named
// with its schema.
var pgDroppedIndex = regexp.MustCompile(`\bDROP INDEX (IF EXISTS )?(pgqrs_\w+)`)

// pgQualifier returns the function that names pgqrs's tables in schema:
// "schema".pgqrs_messages for pgqrs_messages. With no schema it returns its
// text unchanged (the tables are found through the search_path). schema was
// validated as a plain identifier by WithSchema, so quoting it cannot break
// out of the identifier. The index a DROP INDEX names is qualified too.
// It runs once per statement, in newPostgresDialect,
// and on the migrations' text. A name right after "." (already qualified),
// ":" (the NOTIFY channel 'pgqrs:<schema>') or a quote is left alone, so a
// schema named like a table keeps its channel, and qualifying twice changes
// nothing.
func pgQualifier(schema string) func(string) string {
	if schema == "" {
		return func(s string) string { return s }
	}
	prefix := `"` + schema + `".`
	return func(s string) string {
		var b strings.Builder
		last := 0
		for _, loc := range pgTableName.FindAllStringIndex(s, -1) {
			if loc[0] > 0 && strings.ContainsRune(`.:"'`, rune(s[loc[0]-1])) {
				continue
			}
			// A new name (ALTER TABLE … RENAME TO name) takes no schema.
			if strings.HasSuffix(strings.ToUpper(s[:loc[0]]), "RENAME TO ") {
				continue
			}
			b.WriteString(s[last:loc[0]])
			b.WriteString(prefix)
			last = loc[0]
		}
		b.WriteString(s[last:])
		return pgDroppedIndex.ReplaceAllString(b.String(), "DROP INDEX $1"+prefix+"$2")
	}
}

// pgInstallPrelude is what Install runs first in its transaction: a lock
// that makes concurrent installs of one schema take turns, and the schema.
func pgInstallPrelude(schema string) []string {
	if schema == "" {
		return []string{`SELECT pg_advisory_xact_lock(hashtext('pgqrs.install.' || current_schema()))`}
	}
	return []string{
		`SELECT pg_advisory_xact_lock(hashtext('pgqrs.install.` + schema + `'))`,
		`CREATE SCHEMA IF NOT EXISTS "` + schema + `"`,
	}
}

// pgWake returns the NOTIFY fragments of the statements that announce
// something on channel: wakeQueue (new messages are visible in queue $1) and
// wakeRun (run $1 ended or changed status). Their payloads are the topics
// parseTopic reads: "q" or "r", then the ID. NOTIFY is sent at commit and
// coalesced per transaction.
func pgWake(channel string) (wakeQueue, wakeRun string) {
	return `pg_notify('` + channel + `', 'q' || $1::bigint)`, `pg_notify('` + channel + `', 'r' || $1::bigint)`
}

// pgChannel is the NOTIFY channel of a schema: "pgqrs" without one, else
// "pgqrs:" and the schema name while that fits Postgres's 63-byte identifier
// limit (pg_notify rejects longer names, LISTEN truncates them), else
// "pgqrs:", the name's first 40 bytes, ":" and a hash of the whole name.
// Every process derives the same channel from the same schema; a schema name
// cannot contain ":", so a hashed channel never equals a plain one.
func pgChannel(schema string) string {
	const limit = 63
	if schema == "" {
		return "pgqrs"
	}
	if ch := "pgqrs:" + schema; len(ch) <= limit {
		return ch
	}
	h := fnv.New64a()
	h.Write([]byte(schema))
	return fmt.Sprintf("pgqrs:%s:%016x", schema[:40], h.Sum64())
}

// pgListen keeps a dedicated LISTEN connection on channel (lib/pq's Listener
// reconnects by itself). It calls notify with each notification's payload,
// and connected when the LISTEN is in place, first and after every
// reconnect, so the caller can fetch what it missed.
func pgListen(dsn, channel string, notify func(payload string), connected func()) (stop func()) {
	l := pq.NewListener(dsn, 50*time.Millisecond, 5*time.Second, nil)
	done := make(chan struct{})
	go func() {
		if err := l.Listen(channel); err == nil {
			connected()
		}
	}()
	go func() {
		for {
			select {
			case n := <-l.Notify:
				if n == nil { // the connection was re-established
					connected()
				} else {
					notify(n.Extra)
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		l.Close()
	}
}

// pgDSN reads a Postgres DSN, URL or key=value, with lib/pq's own parser
// (the environment's PG* variables included), so a DSN lib/pq would refuse
// is refused here as [ErrInvalidDSN], before anything connects. lib/pq's
// complaint is kept without its quoted parts, which may be pieces of the
// password.
func pgDSN(dsn string) (dsnInfo, error) {
	info := dsnInfo{dialect: Postgres, driver: "postgres", shown: redactDSN(dsn), secrets: dsnSecrets(dsn)}
	url := strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		var problem string
		if ue := (*neturl.Error)(nil); errors.As(err, &ue) {
			problem = urlProblem(ue.Err)
		} else {
			problem = pgQuoted.ReplaceAllStringFunc(err.Error(), func(q string) string {
				if q == `"="` || pgSettings()[strings.Trim(q, `"`)] {
					return q
				}
				return `"…"`
			})
		}
		if !url {
			info.shown = "(key=value DSN)"
		}
		return dsnInfo{}, fmt.Errorf("%w: %s: %s", ErrInvalidDSN, info.shown, problem)
	}
	info.secrets = append(info.secrets, cfg.Password)
	if !url {
		// Also a "password=..." that an empty value before it swallowed
		// ("user= password=x" sets user "password=x", which the server
		// may quote back).
		for _, f := range strings.Fields(dsn) {
			if k, v, ok := strings.Cut(f, "="); ok && isCredentialKey(k) {
				// lib/pq reads runes: an invalid byte becomes U+FFFD.
				for _, v := range []string{v, strings.Trim(v, `'`)} {
					info.secrets = append(info.secrets, v, string([]rune(v)))
				}
			}
		}
	}
	for k, v := range cfg.Runtime {
		if isCredentialKey(k) {
			info.secrets = append(info.secrets, v)
		}
	}
	if !url {
		// "user= password=x" makes "password=x" the user name: a value
		// with "=" in it is shown as "…".
		show := func(v string) string {
			if strings.Contains(v, "=") {
				return "…"
			}
			return v
		}
		info.shown = fmt.Sprintf("host=%s port=%d dbname=%s user=%s", show(cfg.Host), cfg.Port, show(cfg.Database), show(cfg.User))
	}
	// Bound lib/pq's connection handshake, which ignores contexts.
	info.source = dsn
	switch {
	case strings.Contains(dsn, "connect_timeout"):
	case !url:
		// First, so that an unterminated last value cannot swallow it.
		info.source = "connect_timeout=10 " + dsn
	case strings.Contains(dsn, "?"):
		info.source = dsn + "&connect_timeout=10"
	default:
		info.source = dsn + "?connect_timeout=10"
	}
	return info, nil
}

// pgQuoted matches the %q-quoted parts of lib/pq's DSN errors.
var pgQuoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// pgSettings are the names of lib/pq's connection settings, which its
// errors may quote and pgDSN keeps.
var pgSettings = sync.OnceValue(func() map[string]bool {
	names := map[string]bool{}
	t := reflect.TypeFor[pq.Config]()
	for i := range t.NumField() {
		if name := t.Field(i).Tag.Get("postgres"); name != "" && name != "-" {
			names[name] = true
		}
	}
	return names
})
