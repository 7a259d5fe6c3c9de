-- Retention (Admin.SetRetention, Admin.ExpireArchive): how long a queue keeps
-- its archived messages and its dead letters. Run loops of the queue apply
-- the policy in bounded batches; NULL keeps that kind forever.

CREATE TABLE IF NOT EXISTS pgqrs_retention (
    queue_id      INTEGER PRIMARY KEY REFERENCES pgqrs_queues (id) ON DELETE CASCADE,
    archived_secs REAL CHECK (archived_secs >= 0),
    dead_secs     REAL CHECK (dead_secs >= 0),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
