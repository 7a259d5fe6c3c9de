-- The archive, partitioned by archive time (declarative range partitioning
-- on archived_at): one partition per UTC day, pgqrs_archive_pYYYYMMDD,
-- created ahead by Install, by the Run loops' retention turn and by
-- Admin.CreateArchivePartitions (pgqrs_archive_add), plus a default
-- partition that takes any row no day partition covers, so an archive never
-- fails for lack of a partition. Retention drops a day's partition whole
-- once every row in it is past its queue's retention (pgqrs_archive_drop)
-- instead of deleting its rows. The existing rows move into the new table
-- inside the install transaction, one partition per day that has rows.

-- The old table's indexes give their names to the new table's.
ALTER TABLE pgqrs_archive DROP CONSTRAINT IF EXISTS pgqrs_archive_pkey;
DROP INDEX IF EXISTS pgqrs_archive_queue;
DROP INDEX IF EXISTS pgqrs_archive_key;
DROP INDEX IF EXISTS pgqrs_archive_archived_at;
ALTER TABLE pgqrs_archive RENAME TO pgqrs_archive_0008;

CREATE TABLE pgqrs_archive (
    id                 BIGINT NOT NULL,
    queue_id           BIGINT NOT NULL,
    payload            JSONB NOT NULL,
    enqueued_at        TIMESTAMPTZ NOT NULL,
    read_ct            INTEGER NOT NULL,
    dequeued_at        TIMESTAMPTZ,
    producer_worker_id BIGINT,
    consumer_worker_id BIGINT,
    last_error         TEXT,
    archived_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    dead               BOOLEAN NOT NULL DEFAULT false,
    priority           SMALLINT NOT NULL DEFAULT 0,
    dedup_key          TEXT,
    headers            JSONB,
    cancelled          BOOLEAN NOT NULL DEFAULT false,
    group_key          TEXT,
    -- A partitioned table's keys include its partition key: (id,
    -- archived_at) is unique, and its index serves lookups by ID (one probe
    -- per partition).
    PRIMARY KEY (id, archived_at)
) PARTITION BY RANGE (archived_at);

CREATE INDEX IF NOT EXISTS pgqrs_archive_queue ON pgqrs_archive (queue_id, dead, id);
CREATE INDEX IF NOT EXISTS pgqrs_archive_key ON pgqrs_archive (queue_id, dedup_key, enqueued_at)
    WHERE dedup_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS pgqrs_archive_archived_at ON pgqrs_archive USING brin (archived_at);

CREATE TABLE IF NOT EXISTS pgqrs_archive_default PARTITION OF pgqrs_archive DEFAULT;

-- pgqrs_archive_add(day) creates the partition of the UTC day day unless it
-- exists or the default partition holds rows of that day (they stay there,
-- and the day with them; retention deletes them row by row). It returns
-- whether it created one. It waits at most 100 ms for a lock and then
-- gives up (false): the next call tries again, and the default partition
-- takes the day's rows meanwhile.
CREATE OR REPLACE FUNCTION pgqrs_archive_add(day date) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    -- The row type's relation is the archive in its schema.
    parent regclass := (SELECT typrelid FROM pg_type WHERE oid = pg_typeof(CAST(NULL AS pgqrs_archive)));
    sch text;
    part text;
    lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
    timeout text := current_setting('lock_timeout');
BEGIN
    SELECT quote_ident(n.nspname), c.relname || '_p' || to_char(day, 'YYYYMMDD') INTO sch, part
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = parent;
    IF EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = parent AND c.relname = part) THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pgqrs.archive.' || parent::text));
    IF EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = parent AND c.relname = part) THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM pgqrs_archive WHERE archived_at >= lo AND archived_at < hi) THEN
        RETURN false;
    END IF;
    PERFORM set_config('lock_timeout', '100ms', true);
    BEGIN
        EXECUTE format('CREATE TABLE %s.%I (LIKE %s INCLUDING DEFAULTS)', sch, part, parent);
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s.%I FOR VALUES FROM (%L) TO (%L)', parent, sch, part, lo, hi);
    EXCEPTION WHEN lock_not_available THEN
        PERFORM set_config('lock_timeout', timeout, true);
        RETURN false;
    END;
    PERFORM set_config('lock_timeout', timeout, true);
    RETURN true;
END
$$;

-- pgqrs_archive_expired(lo, hi, policy, queue, age_archived, age_dead):
-- whether every row archived in [lo, hi) is past its retention: with
-- policy, each queue's policy (pgqrs_retention); else age_archived and
-- age_dead, in seconds (NULL: kept), for queue (0: every queue), the other queues'
-- rows being kept. One index probe per queue and kind.
CREATE OR REPLACE FUNCTION pgqrs_archive_expired(lo timestamptz, hi timestamptz, policy boolean, queue bigint,
                                                 age_archived float8, age_dead float8)
RETURNS boolean LANGUAGE sql STABLE AS $$
SELECT NOT EXISTS (
    SELECT 1
    FROM pgqrs_queues q
    LEFT JOIN pgqrs_retention r ON policy AND r.queue_id = q.id
    CROSS JOIN (VALUES (false), (true)) AS k (dead)
    WHERE NOT coalesce(hi <= now() - make_interval(secs => CASE
              WHEN policy THEN CASE WHEN k.dead THEN r.dead_secs ELSE r.archived_secs END
              WHEN queue = 0 OR queue = q.id THEN CASE WHEN k.dead THEN age_dead ELSE age_archived END END), false)
      AND EXISTS (SELECT 1 FROM pgqrs_archive a
                  WHERE a.queue_id = q.id AND a.dead = k.dead AND a.archived_at >= lo AND a.archived_at < hi))
$$;

-- pgqrs_archive_drop(policy, queue, age_archived, age_dead) drops the
-- oldest day partition whose rows are all past their retention (see
-- pgqrs_archive_expired) and returns its name and how many archived
-- messages and dead letters it held; no row when none can go. Dropping a
-- partition locks the archive (ACCESS EXCLUSIVE) for the drop: it waits at
-- most 100 ms for that lock, else it gives up (no row) and a later call
-- tries again; it checks the rows again under the lock.
CREATE OR REPLACE FUNCTION pgqrs_archive_drop(policy boolean, queue bigint, age_archived float8, age_dead float8)
RETURNS TABLE (dropped text, archived bigint, dead bigint) LANGUAGE plpgsql AS $$
DECLARE
    parent regclass := (SELECT typrelid FROM pg_type WHERE oid = pg_typeof(CAST(NULL AS pgqrs_archive)));
    p record;
    lo timestamptz;
    hi timestamptz;
    n_archived bigint;
    n_dead bigint;
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
        EXECUTE format('SELECT count(*) FILTER (WHERE NOT dead), count(*) FILTER (WHERE dead) FROM %s', p.rel)
            INTO n_archived, n_dead;
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
        archived := n_archived;
        dead := n_dead;
        RETURN NEXT;
        RETURN;
    END LOOP;
END
$$;

-- Partitions for the days the old archive has rows of, and for today and
-- the next two days; then the rows move.
SELECT pgqrs_archive_add(d)
FROM (SELECT DISTINCT (archived_at AT TIME ZONE 'UTC')::date AS d FROM pgqrs_archive_0008
      UNION SELECT (now() AT TIME ZONE 'UTC')::date + k FROM generate_series(0, 2) AS k) AS days
ORDER BY d;

INSERT INTO pgqrs_archive (id, queue_id, payload, enqueued_at, read_ct, dequeued_at, producer_worker_id,
                           consumer_worker_id, last_error, archived_at, dead, priority, dedup_key, headers, cancelled, group_key)
SELECT id, queue_id, payload, enqueued_at, read_ct, dequeued_at, producer_worker_id,
       consumer_worker_id, last_error, archived_at, dead, priority, dedup_key, headers, cancelled, group_key
FROM pgqrs_archive_0008;

DROP TABLE pgqrs_archive_0008;
