-- Job features: priorities, unique keys, headers, cancelled messages and
-- paused queues. (0003 is SQLite's archive-in-place; Postgres has no 0003.)

-- A paused queue keeps taking messages; no claim takes any from it.
ALTER TABLE pgqrs_queues ADD COLUMN IF NOT EXISTS paused_at TIMESTAMPTZ;

-- priority: 0 is the most urgent, 9 the least; the default 0 keeps a queue
-- that never names a priority exactly as before. dedup_key: at most one
-- live message per queue and key. headers: string metadata, a JSON object.
ALTER TABLE pgqrs_messages
    ADD COLUMN IF NOT EXISTS priority  SMALLINT NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 9),
    ADD COLUMN IF NOT EXISTS dedup_key TEXT,
    ADD COLUMN IF NOT EXISTS headers   JSONB;

ALTER TABLE pgqrs_archive
    ADD COLUMN IF NOT EXISTS priority  SMALLINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS dedup_key TEXT,
    ADD COLUMN IF NOT EXISTS headers   JSONB,
    -- Removed by an administrator's cancel rather than processed.
    ADD COLUMN IF NOT EXISTS cancelled BOOLEAN NOT NULL DEFAULT false;

-- The claim reads one ordered range of this index per priority level
-- (queue_id = $1 AND priority = p AND vt <= now() ORDER BY vt, id), most
-- urgent first, and stops when it has the batch: its cost does not grow
-- with the backlog or with the messages waiting at other levels. Rebuilding
-- it locks pgqrs_messages for the length of one index build.
DROP INDEX IF EXISTS pgqrs_messages_claim;
CREATE INDEX IF NOT EXISTS pgqrs_messages_claim ON pgqrs_messages (queue_id, priority, vt, id);

-- Live messages only: pgqrs_messages holds no archived rows on Postgres.
CREATE UNIQUE INDEX IF NOT EXISTS pgqrs_messages_key ON pgqrs_messages (queue_id, dedup_key)
    WHERE dedup_key IS NOT NULL;

-- For keys unique over a period: the archived messages of a key, newest last.
CREATE INDEX IF NOT EXISTS pgqrs_archive_key ON pgqrs_archive (queue_id, dedup_key, enqueued_at)
    WHERE dedup_key IS NOT NULL;
