-- Counts kept by triggers, so that metrics (Admin.QueueMetrics,
-- AllQueueMetrics, SystemStats, CountArchived, CountDeadLetters, the
-- Prometheus exposition) sum a few rows instead of counting the live table
-- and a ten-million-row archive on every call.
--
-- Each server session adds what its statements change to rows of its own,
-- keyed by its pg_backend_pid(), so writers never wait for each other's
-- counter rows: one small upsert per statement that inserts or deletes
-- messages or archive rows (claims, which update, fire nothing). A count is
-- the sum of its rows. A transaction moves on to a new slot (row) every 32
-- statements: every update of a row in one transaction adds a version the
-- next update must step over, so thousands of enqueues in one transaction
-- on one row would cost quadratic time. pgqrs_counts_compact folds the rows
-- of sessions that have gone, and the slots past the first, into the row of
-- backend 0; the Run loops call it at their retention turn. The archive's counts are kept per UTC day of archived_at,
-- the day partition the rows are in, so dropping a partition drops its
-- counts with it.
--
-- Statements that bypass the triggers (TRUNCATE, a DELETE straight on a
-- partition, a restore with triggers disabled) leave the counts wrong until
-- pgqrs_counts_rebuild (Admin.Recount) counts everything again.

CREATE TABLE IF NOT EXISTS pgqrs_live_counts (
    queue_id BIGINT NOT NULL REFERENCES pgqrs_queues (id) ON DELETE CASCADE,
    backend  INTEGER NOT NULL, -- pg_backend_pid() of the writer; 0: folded in by pgqrs_counts_compact
    slot     INTEGER NOT NULL, -- the writing transaction's statement number / 32
    live     BIGINT NOT NULL,  -- messages inserted minus messages deleted
    newest   TIMESTAMPTZ,      -- latest enqueued_at inserted
    PRIMARY KEY (queue_id, backend, slot)
);

CREATE TABLE IF NOT EXISTS pgqrs_archive_counts (
    queue_id BIGINT NOT NULL REFERENCES pgqrs_queues (id) ON DELETE CASCADE,
    day      DATE NOT NULL,    -- UTC day of archived_at
    backend  INTEGER NOT NULL,
    slot     INTEGER NOT NULL,
    archived BIGINT NOT NULL,  -- rows not dead
    dead     BIGINT NOT NULL,  -- dead letters
    PRIMARY KEY (queue_id, day, backend, slot)
);

-- pgqrs_counts_slot() counts the counting statements of the transaction
-- (a transaction-local setting) and returns the slot of this one.
CREATE OR REPLACE FUNCTION pgqrs_counts_slot() RETURNS integer LANGUAGE sql VOLATILE AS $$
SELECT (set_config('pgqrs.counts_seq',
                   (coalesce(nullif(current_setting('pgqrs.counts_seq', true), ''), '0')::integer + 1)::text,
                   true)::integer - 1) / 32
$$;

CREATE OR REPLACE FUNCTION pgqrs_count_live() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    this_slot integer := pgqrs_counts_slot();
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO pgqrs_live_counts AS c (queue_id, backend, slot, live, newest)
        SELECT queue_id, pg_backend_pid(), this_slot, count(*), max(enqueued_at) FROM pgqrs_inserted GROUP BY queue_id
        ON CONFLICT (queue_id, backend, slot)
        DO UPDATE SET live = c.live + excluded.live, newest = greatest(c.newest, excluded.newest);
    ELSE
        INSERT INTO pgqrs_live_counts AS c (queue_id, backend, slot, live)
        SELECT queue_id, pg_backend_pid(), this_slot, -count(*) FROM pgqrs_deleted GROUP BY queue_id
        ON CONFLICT (queue_id, backend, slot) DO UPDATE SET live = c.live + excluded.live;
    END IF;
    RETURN NULL;
END
$$;

-- An UPDATE of archive rows (pgqrs makes none; an operator's back-dating
-- of archived_at moves rows between partitions) counts as the deletion of
-- the old rows and the insertion of the new.
CREATE OR REPLACE FUNCTION pgqrs_count_archive() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    this_slot integer := pgqrs_counts_slot();
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO pgqrs_archive_counts AS c (queue_id, day, backend, slot, archived, dead)
        SELECT queue_id, (archived_at AT TIME ZONE 'UTC')::date, pg_backend_pid(), this_slot,
               count(*) FILTER (WHERE NOT dead), count(*) FILTER (WHERE dead)
        FROM pgqrs_inserted GROUP BY 1, 2
        ON CONFLICT (queue_id, day, backend, slot)
        DO UPDATE SET archived = c.archived + excluded.archived, dead = c.dead + excluded.dead;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        INSERT INTO pgqrs_archive_counts AS c (queue_id, day, backend, slot, archived, dead)
        SELECT queue_id, (archived_at AT TIME ZONE 'UTC')::date, pg_backend_pid(), this_slot,
               -count(*) FILTER (WHERE NOT dead), -count(*) FILTER (WHERE dead)
        FROM pgqrs_deleted GROUP BY 1, 2
        ON CONFLICT (queue_id, day, backend, slot)
        DO UPDATE SET archived = c.archived + excluded.archived, dead = c.dead + excluded.dead;
    END IF;
    RETURN NULL;
END
$$;

-- pgqrs_counts_lock() takes the lock that compaction, rebuild and partition
-- drops share (a transaction-level advisory lock of the schema), waiting for
-- it unless try, and returns whether it holds it.
CREATE OR REPLACE FUNCTION pgqrs_counts_lock(try boolean) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    -- The row type of the counts table, one per schema.
    k integer := (pg_typeof(CAST(NULL AS pgqrs_live_counts))::oid::bigint % 2147483647)::integer;
BEGIN
    IF try THEN
        RETURN pg_try_advisory_xact_lock(1886843508, k);
    END IF;
    PERFORM pg_advisory_xact_lock(1886843508, k);
    RETURN true;
END
$$;

-- pgqrs_counts_compact() folds the counter rows of sessions that are gone,
-- and every session's slots past the first, into the rows of backend 0 and
-- returns how many rows it folded. It skips
-- rows a transaction holds (never waiting for a writer) and returns 0 at
-- once while another compaction, rebuild or partition drop runs.
CREATE OR REPLACE FUNCTION pgqrs_counts_compact() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    m bigint;
BEGIN
    IF NOT pgqrs_counts_lock(true) THEN
        RETURN 0;
    END IF;
    WITH gone AS (
        DELETE FROM pgqrs_live_counts
        WHERE (queue_id, backend, slot) IN (
            SELECT queue_id, backend, slot FROM pgqrs_live_counts
            WHERE backend <> 0
              AND (slot > 0 OR backend NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL))
            FOR UPDATE SKIP LOCKED)
        RETURNING queue_id, live, newest
    ), folded AS (
        INSERT INTO pgqrs_live_counts AS c (queue_id, backend, slot, live, newest)
        SELECT queue_id, 0, 0, sum(live), max(newest) FROM gone GROUP BY queue_id
        ON CONFLICT (queue_id, backend, slot)
        DO UPDATE SET live = c.live + excluded.live, newest = greatest(c.newest, excluded.newest)
    )
    SELECT count(*) INTO n FROM gone;
    WITH gone AS (
        DELETE FROM pgqrs_archive_counts
        WHERE (queue_id, day, backend, slot) IN (
            SELECT queue_id, day, backend, slot FROM pgqrs_archive_counts
            WHERE backend <> 0
              AND (slot > 0 OR backend NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL))
            FOR UPDATE SKIP LOCKED)
        RETURNING queue_id, day, archived, dead
    ), folded AS (
        INSERT INTO pgqrs_archive_counts AS c (queue_id, day, backend, slot, archived, dead)
        SELECT queue_id, day, 0, 0, sum(archived), sum(dead) FROM gone GROUP BY queue_id, day
        ON CONFLICT (queue_id, day, backend, slot)
        DO UPDATE SET archived = c.archived + excluded.archived, dead = c.dead + excluded.dead
    )
    SELECT count(*) INTO m FROM gone;
    RETURN n + m;
END
$$;

-- pgqrs_counts_rebuild() counts the live messages and the archive again
-- and replaces every counter row with the result. It blocks writes to both
-- tables while it counts (SHARE locks; reads go on).
CREATE OR REPLACE FUNCTION pgqrs_counts_rebuild() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgqrs_counts_lock(false);
    LOCK TABLE pgqrs_messages, pgqrs_archive IN SHARE MODE;
    DELETE FROM pgqrs_live_counts;
    DELETE FROM pgqrs_archive_counts;
    INSERT INTO pgqrs_live_counts (queue_id, backend, slot, live, newest)
    SELECT queue_id, 0, 0, count(*), max(enqueued_at) FROM pgqrs_messages GROUP BY queue_id;
    INSERT INTO pgqrs_archive_counts (queue_id, day, backend, slot, archived, dead)
    SELECT a.queue_id, (a.archived_at AT TIME ZONE 'UTC')::date, 0, 0,
           count(*) FILTER (WHERE NOT a.dead), count(*) FILTER (WHERE a.dead)
    FROM pgqrs_archive a
    WHERE EXISTS (SELECT 1 FROM pgqrs_queues q WHERE q.id = a.queue_id)
    GROUP BY 1, 2;
END
$$;

-- pgqrs_live_state(queue) reads what the counters cannot hold, because it
-- changes as time passes: per priority, the messages whose vt is in the
-- future (leased, or delayed) through the claim index, one index descent
-- per priority level (a loose index scan), so its cost grows with the
-- leased and delayed messages, not with the backlog. oldest is the oldest
-- enqueued_at among the delayed messages and the next 1,000 visible ones of
-- each priority in claim order: exact unless a message visible now waits
-- behind 1,000 enqueued after it at its priority (a retry whose backoff
-- has passed, in a long backlog). It is PL/pgSQL, not SQL, so the planner
-- does not inline it: inlined, its estimate over a large table (millions
-- of rows, times every queue) crossed jit_above_cost, and compiling the
-- plan took 300 ms of a 10 ms read.
CREATE OR REPLACE FUNCTION pgqrs_live_state(queue bigint)
RETURNS TABLE (future bigint, leased bigint, oldest timestamptz) LANGUAGE plpgsql STABLE ROWS 1 COST 1000 AS $$
BEGIN
RETURN QUERY
WITH RECURSIVE p (priority) AS (
    SELECT min(priority) FROM pgqrs_messages WHERE queue_id = queue
    UNION ALL
    SELECT (SELECT min(m.priority) FROM pgqrs_messages m WHERE m.queue_id = queue AND m.priority > p.priority)
    FROM p WHERE p.priority IS NOT NULL
)
SELECT coalesce(sum(f.future), 0)::bigint, coalesce(sum(f.leased), 0)::bigint, min(least(f.oldest, h.oldest))
FROM p
CROSS JOIN LATERAL (
    SELECT count(*) AS future, count(*) FILTER (WHERE m.consumer_worker_id IS NOT NULL) AS leased,
           min(m.enqueued_at) FILTER (WHERE m.consumer_worker_id IS NULL) AS oldest
    FROM pgqrs_messages m
    WHERE m.queue_id = queue AND m.priority = p.priority AND m.vt > now()) AS f
CROSS JOIN LATERAL (
    SELECT min(v.enqueued_at) AS oldest
    FROM (SELECT m.enqueued_at FROM pgqrs_messages m
          WHERE m.queue_id = queue AND m.priority = p.priority AND m.vt <= now()
          ORDER BY m.vt, m.id LIMIT 1000) AS v) AS h
WHERE p.priority IS NOT NULL;
END
$$;

-- The archive's partition drop takes its counts from the counters now,
-- instead of counting the partition, and drops them with it.
CREATE OR REPLACE FUNCTION pgqrs_archive_drop(policy boolean, queue bigint, age_archived float8, age_dead float8)
RETURNS TABLE (dropped text, archived bigint, dead bigint) LANGUAGE plpgsql AS $$
DECLARE
    parent regclass := (SELECT typrelid FROM pg_type WHERE oid = pg_typeof(CAST(NULL AS pgqrs_archive)));
    p record;
    lo timestamptz;
    hi timestamptz;
    timeout text := current_setting('lock_timeout');
BEGIN
    FOR p IN
        SELECT c.oid::regclass AS rel, to_date(right(c.relname, 8), 'YYYYMMDD') AS day
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = parent AND c.relname ~ '_p[0-9]{8}$'
        ORDER BY 2
    LOOP
        lo := p.day::timestamp AT TIME ZONE 'UTC';
        hi := (p.day + 1)::timestamp AT TIME ZONE 'UTC';
        EXIT WHEN hi > now();
        CONTINUE WHEN NOT pgqrs_archive_expired(lo, hi, policy, queue, age_archived, age_dead);
        -- The counts' lock before the archive's, as pgqrs_counts_rebuild
        -- takes them: a compaction could hold the day's counter rows.
        PERFORM pgqrs_counts_lock(false);
        PERFORM set_config('lock_timeout', '100ms', true);
        BEGIN
            EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', parent);
        EXCEPTION WHEN lock_not_available THEN
            PERFORM set_config('lock_timeout', timeout, true);
            RETURN;
        END;
        PERFORM set_config('lock_timeout', timeout, true);
        IF NOT pgqrs_archive_expired(lo, hi, policy, queue, age_archived, age_dead) THEN
            RETURN;
        END IF;
        dropped := p.rel::regclass::text;  -- named before it is gone
        EXECUTE format('DROP TABLE %s', p.rel);
        WITH gone AS (DELETE FROM pgqrs_archive_counts c WHERE c.day = p.day RETURNING c.archived, c.dead)
        SELECT coalesce(sum(g.archived), 0), coalesce(sum(g.dead), 0) INTO archived, dead FROM gone g;
        RETURN NEXT;
        RETURN;
    END LOOP;
END
$$;

DROP TRIGGER IF EXISTS pgqrs_messages_count_in ON pgqrs_messages;
CREATE TRIGGER pgqrs_messages_count_in AFTER INSERT ON pgqrs_messages
    REFERENCING NEW TABLE AS pgqrs_inserted FOR EACH STATEMENT EXECUTE FUNCTION pgqrs_count_live();
DROP TRIGGER IF EXISTS pgqrs_messages_count_out ON pgqrs_messages;
CREATE TRIGGER pgqrs_messages_count_out AFTER DELETE ON pgqrs_messages
    REFERENCING OLD TABLE AS pgqrs_deleted FOR EACH STATEMENT EXECUTE FUNCTION pgqrs_count_live();
DROP TRIGGER IF EXISTS pgqrs_archive_count_in ON pgqrs_archive;
CREATE TRIGGER pgqrs_archive_count_in AFTER INSERT ON pgqrs_archive
    REFERENCING NEW TABLE AS pgqrs_inserted FOR EACH STATEMENT EXECUTE FUNCTION pgqrs_count_archive();
DROP TRIGGER IF EXISTS pgqrs_archive_count_out ON pgqrs_archive;
CREATE TRIGGER pgqrs_archive_count_out AFTER DELETE ON pgqrs_archive
    REFERENCING OLD TABLE AS pgqrs_deleted FOR EACH STATEMENT EXECUTE FUNCTION pgqrs_count_archive();
DROP TRIGGER IF EXISTS pgqrs_archive_count_update ON pgqrs_archive;
CREATE TRIGGER pgqrs_archive_count_update AFTER UPDATE ON pgqrs_archive
    REFERENCING OLD TABLE AS pgqrs_deleted NEW TABLE AS pgqrs_inserted FOR EACH STATEMENT EXECUTE FUNCTION pgqrs_count_archive();

-- The counts of what is already there, counted after the triggers exist
-- (their creation locked out writes until this transaction commits).
SELECT pgqrs_counts_rebuild();
