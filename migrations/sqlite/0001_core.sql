-- pgqrs core schema: queues, workers, live messages and the archive.
-- Times are TEXT in one fixed UTC format, 'YYYY-MM-DDTHH:MM:SS.sssZ', written
-- by strftime('%Y-%m-%dT%H:%M:%fZ', 'now') here and by pgqrs alike, so text
-- order is time order.

CREATE TABLE IF NOT EXISTS pgqrs_queues (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS pgqrs_workers (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    queue_id     INTEGER REFERENCES pgqrs_queues (id),
    role         TEXT NOT NULL CHECK (role IN ('producer', 'consumer', 'admin', 'workflow')),
    status       TEXT NOT NULL DEFAULT 'ready'
                 CHECK (status IN ('ready', 'polling', 'suspended', 'interrupted', 'stopped')),
    started_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    heartbeat_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    stopped_at   TEXT
);

-- A name is unique among live workers; a stopped worker's name may be reused.
CREATE UNIQUE INDEX IF NOT EXISTS pgqrs_workers_live_name ON pgqrs_workers (name) WHERE status <> 'stopped';

CREATE INDEX IF NOT EXISTS pgqrs_workers_queue ON pgqrs_workers (queue_id, status);

-- AUTOINCREMENT: an ID is never reused, even after its row moved to the archive.
CREATE TABLE IF NOT EXISTS pgqrs_messages (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_id           INTEGER NOT NULL REFERENCES pgqrs_queues (id),
    payload            TEXT NOT NULL,
    vt                 TEXT NOT NULL,
    enqueued_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    read_ct            INTEGER NOT NULL DEFAULT 0,
    dequeued_at        TEXT,
    producer_worker_id INTEGER,
    consumer_worker_id INTEGER,
    last_error         TEXT,
    -- Set by the archive statements; the trigger below moves the row.
    archive_as         TEXT CHECK (archive_as IN ('archived', 'dead'))
);

-- The claim is WHERE queue_id = ? AND vt <= now ORDER BY vt, id LIMIT n: an
-- ordered range scan of this index with no sort step.
CREATE INDEX IF NOT EXISTS pgqrs_messages_claim ON pgqrs_messages (queue_id, vt, id);

CREATE TABLE IF NOT EXISTS pgqrs_archive (
    id                 INTEGER PRIMARY KEY,
    -- No foreign key: rows only arrive from pgqrs_messages (whose key is
    -- checked), DeleteQueue removes them first, and a per-row check costs
    -- every archive.
    queue_id           INTEGER NOT NULL,
    payload            TEXT NOT NULL,
    enqueued_at        TEXT NOT NULL,
    read_ct            INTEGER NOT NULL,
    dequeued_at        TEXT,
    producer_worker_id INTEGER,
    consumer_worker_id INTEGER,
    last_error         TEXT,
    archived_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    dead               INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS pgqrs_archive_queue ON pgqrs_archive (queue_id, dead, id);

-- Archiving is one UPDATE ... SET archive_as = ... RETURNING id; this trigger
-- moves each such row to the archive inside that same statement, so a batch
-- archive is atomic and one round trip.
CREATE TRIGGER IF NOT EXISTS pgqrs_messages_archive
AFTER UPDATE OF archive_as ON pgqrs_messages
WHEN NEW.archive_as IS NOT NULL
BEGIN
    INSERT INTO pgqrs_archive (id, queue_id, payload, enqueued_at, read_ct, dequeued_at,
                               producer_worker_id, consumer_worker_id, last_error, dead)
    VALUES (NEW.id, NEW.queue_id, NEW.payload, NEW.enqueued_at, NEW.read_ct, NEW.dequeued_at,
            NEW.producer_worker_id, NEW.consumer_worker_id, NEW.last_error, NEW.archive_as = 'dead');
    DELETE FROM pgqrs_messages WHERE id = NEW.id;
END;
