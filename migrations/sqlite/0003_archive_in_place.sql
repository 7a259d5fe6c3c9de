-- Archive in place: an archived message keeps its row in pgqrs_messages,
-- marked by archived_at (NULL while it is live) and dead (a dead letter),
-- instead of moving to a table of its own. SQLite has no MVCC bloat, so
-- archived rows cost a live claim nothing as long as the claim reads a
-- partial index over live rows only; archiving becomes one UPDATE of one
-- row instead of a delete, a trigger and an insert into a second table.
-- pgqrs_archive stays as a view over the archived rows, so everything that
-- reads the archive reads it as before.
--
-- The upgrade rebuilds pgqrs_messages (dropping the archive_as column the
-- old triggers used) and keeps every live message, lease, archived message
-- and dead letter, and the AUTOINCREMENT counter, so no ID is ever reused.

DROP TRIGGER IF EXISTS pgqrs_messages_leave;
DROP TRIGGER IF EXISTS pgqrs_messages_archive;
DROP INDEX IF EXISTS pgqrs_messages_claim;
ALTER TABLE pgqrs_messages RENAME TO pgqrs_messages_0002;

CREATE TABLE pgqrs_messages (
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
    -- NULL while the message is live; when it was archived after that.
    archived_at        TEXT,
    -- An archived message that failed too often (a dead letter).
    dead               INTEGER NOT NULL DEFAULT 0 CHECK (dead IN (0, 1))
);

INSERT INTO pgqrs_messages (id, queue_id, payload, vt, enqueued_at, read_ct, dequeued_at,
                            producer_worker_id, consumer_worker_id, last_error)
SELECT id, queue_id, payload, vt, enqueued_at, read_ct, dequeued_at,
       producer_worker_id, consumer_worker_id, last_error
FROM pgqrs_messages_0002;

-- IDs never collide: an archived row left pgqrs_messages when it arrived
-- here, and a replayed one left the archive.
INSERT INTO pgqrs_messages (id, queue_id, payload, vt, enqueued_at, read_ct, dequeued_at,
                            producer_worker_id, consumer_worker_id, last_error, archived_at, dead)
SELECT id, queue_id, payload, archived_at, enqueued_at, read_ct, dequeued_at,
       producer_worker_id, consumer_worker_id, last_error, archived_at, dead <> 0
FROM pgqrs_archive;

-- The counter of the old table (renamed with it) is at least every ID it
-- ever gave, including messages deleted since.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'pgqrs_messages', 0
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'pgqrs_messages');
UPDATE sqlite_sequence
SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'pgqrs_messages_0002'), 0))
WHERE name = 'pgqrs_messages';

DROP TABLE pgqrs_messages_0002;
DROP TABLE pgqrs_archive;

-- The claim is WHERE queue_id = ? AND vt <= now AND archived_at IS NULL
-- ORDER BY vt, id LIMIT n: an ordered range scan of this index, which holds
-- live messages only. Every statement about live messages says
-- "archived_at IS NULL" so that SQLite may use it; archived_at among the
-- columns (always NULL here) makes it a covering index for the claim's
-- sub-select, which SQLite would otherwise check against each table row.
CREATE INDEX pgqrs_messages_claim ON pgqrs_messages (queue_id, vt, id, archived_at) WHERE archived_at IS NULL;

-- A queue's dead letters, for listing, counting, replaying and purging
-- them. Dead-lettering is rare, so this index costs the hot path nothing;
-- the rest of the archive has no index of its own (one would cost every
-- archive an insert), so listing or counting it reads the table by ID.
CREATE INDEX pgqrs_messages_dead ON pgqrs_messages (queue_id, id) WHERE dead = 1;

CREATE VIEW pgqrs_archive AS
SELECT id, queue_id, payload, enqueued_at, read_ct, dequeued_at, producer_worker_id,
       consumer_worker_id, last_error, archived_at, dead
FROM pgqrs_messages WHERE archived_at IS NOT NULL;
