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
    -- Set to leave the table other than by archiving; see the triggers below.
    archive_as         TEXT CHECK (archive_as IN ('dead', 'gone'))
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

-- Leaving the live table goes through these two triggers, inside the
-- statement that triggers them, so every batch operation stays one atomic
-- statement and one round trip:
-- * archive is a plain DELETE ... RETURNING id: the row moves to the archive;
-- * dead-lettering sets archive_as = 'dead' and delete sets it to 'gone':
--   the row is deleted at once, into the archive as a dead letter, or not.
CREATE TRIGGER IF NOT EXISTS pgqrs_messages_leave
AFTER UPDATE OF archive_as ON pgqrs_messages
WHEN NEW.archive_as IS NOT NULL
BEGIN
    DELETE FROM pgqrs_messages WHERE id = NEW.id;
END;

CREATE TRIGGER IF NOT EXISTS pgqrs_messages_archive
AFTER DELETE ON pgqrs_messages
WHEN OLD.archive_as IS NULL OR OLD.archive_as = 'dead'
BEGIN
    INSERT INTO pgqrs_archive (id, queue_id, payload, enqueued_at, read_ct, dequeued_at,
                               producer_worker_id, consumer_worker_id, last_error, dead)
    VALUES (OLD.id, OLD.queue_id, OLD.payload, OLD.enqueued_at, OLD.read_ct, OLD.dequeued_at,
            OLD.producer_worker_id, OLD.consumer_worker_id, OLD.last_error, OLD.archive_as IS 'dead');
END;
