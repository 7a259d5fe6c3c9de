-- Retention (Admin.SetRetention, Admin.ExpireArchive): how long a queue keeps
-- its archived messages and its dead letters. Run loops of the queue apply
-- the policy in bounded batches; NULL keeps that kind forever.

CREATE TABLE IF NOT EXISTS pgqrs_retention (
    queue_id      BIGINT PRIMARY KEY REFERENCES pgqrs_queues (id) ON DELETE CASCADE,
    archived_secs DOUBLE PRECISION CHECK (archived_secs >= 0),
    dead_secs     DOUBLE PRECISION CHECK (dead_secs >= 0),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Rows enter the archive in archive-time order, so a BRIN index (a few
-- pages, next to nothing to maintain on the archive's insert path) finds
-- the block ranges that hold rows older than a retention's cutoff.
CREATE INDEX IF NOT EXISTS pgqrs_archive_archived_at ON pgqrs_archive USING brin (archived_at);
