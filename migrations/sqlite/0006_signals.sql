-- Signals and events (Runs.Send, Recv, SetEvent). A signal is a message
-- sent to one run on a topic; a Recv step of the run receives the oldest
-- unreceived one of its topic, marking it received by that step in the
-- transaction that records the step. A Recv that found none records its
-- wait (until when, on which topic), so that a Send knows to wake the run
-- and a replay keeps the first execution's deadline. An event is a
-- key/value pair a run publishes; the last value set wins.

CREATE TABLE IF NOT EXISTS pgqrs_signals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL REFERENCES pgqrs_runs (id) ON DELETE CASCADE,
    topic       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    sent_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- The Recv step that received the signal, and when (NULL: not yet).
    received_by TEXT,
    received_at TEXT
);

-- The claim: a run's oldest unreceived signal of a topic.
CREATE INDEX IF NOT EXISTS pgqrs_signals_unreceived ON pgqrs_signals (run_id, topic, id) WHERE received_at IS NULL;
-- Listing a run's signals, and deleting them with it.
CREATE INDEX IF NOT EXISTS pgqrs_signals_run ON pgqrs_signals (run_id, id);

CREATE TABLE IF NOT EXISTS pgqrs_signal_waits (
    run_id   INTEGER NOT NULL REFERENCES pgqrs_runs (id) ON DELETE CASCADE,
    step     TEXT NOT NULL,
    topic    TEXT NOT NULL,
    -- When the Recv times out.
    until_at TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS pgqrs_events (
    run_id     INTEGER NOT NULL REFERENCES pgqrs_runs (id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
