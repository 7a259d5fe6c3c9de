-- Durable workflows: a workflow owns a queue of the same name; each run is
-- started by one message of that queue; each completed (or failed) step of a
-- run is one row, keyed by the step's name.

CREATE TABLE IF NOT EXISTS pgqrs_workflows (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    queue_id   INTEGER NOT NULL UNIQUE REFERENCES pgqrs_queues (id),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS pgqrs_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id INTEGER NOT NULL REFERENCES pgqrs_workflows (id),
    -- The message that drives the run (a retried run gets a new one). No
    -- foreign key: the message moves to pgqrs_archive when the run ends.
    message_id  INTEGER NOT NULL,
    status      TEXT NOT NULL DEFAULT 'QUEUED'
                CHECK (status IN ('QUEUED', 'RUNNING', 'PAUSED', 'CANCELLING', 'CANCELLED', 'SUCCESS', 'ERROR')),
    input       TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    -- PAUSED: when the run resumes by itself (NULL: only when resumed).
    resume_at   TEXT,
    -- Someone waits for the run's end (Runs.Wait); used where ends are
    -- announced across processes (Postgres).
    waited      INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at  TEXT,
    finished_at TEXT,
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE UNIQUE INDEX IF NOT EXISTS pgqrs_runs_message ON pgqrs_runs (message_id);
CREATE INDEX IF NOT EXISTS pgqrs_runs_workflow ON pgqrs_runs (workflow_id, status, id);

CREATE TABLE IF NOT EXISTS pgqrs_steps (
    run_id     INTEGER NOT NULL REFERENCES pgqrs_runs (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    -- The order in which the run reached its steps.
    position   INTEGER NOT NULL,
    -- SUCCESS: output is the step's result. ERROR: the last attempt failed, and
    -- retry_at is when the next attempt may run (NULL: no more attempts).
    status     TEXT NOT NULL CHECK (status IN ('SUCCESS', 'ERROR')),
    output     TEXT,
    error      TEXT,
    attempts   INTEGER NOT NULL,
    retry_at   TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;

-- The first step a run records marks it RUNNING (Postgres does this in the
-- recording statement itself).
CREATE TRIGGER IF NOT EXISTS pgqrs_steps_start AFTER INSERT ON pgqrs_steps
BEGIN
    UPDATE pgqrs_runs
    SET status = 'RUNNING',
        started_at = coalesce(started_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE id = NEW.run_id AND status = 'QUEUED';
END;

-- A run's end, with its last completed step, as one statement (what a
-- writable CTE does on Postgres): INSERT INTO pgqrs_run_ends runs this
-- trigger, which records the step (step_name NULL: none) if the run may
-- still take steps, then ends the run unless another execution recorded
-- that step first. A run asked to cancel ends cancelled.
CREATE VIEW IF NOT EXISTS pgqrs_run_ends AS
SELECT id AS run_id, status, output, error, '' AS step_name, 0 AS step_position,
       NULL AS step_output, 0 AS step_attempts
FROM pgqrs_runs WHERE 0;

CREATE TRIGGER IF NOT EXISTS pgqrs_run_ends_insert INSTEAD OF INSERT ON pgqrs_run_ends
BEGIN
    INSERT INTO pgqrs_steps (run_id, name, position, status, output, attempts)
    SELECT r.id, NEW.step_name, NEW.step_position, 'SUCCESS', NEW.step_output, NEW.step_attempts
    FROM pgqrs_runs r
    WHERE r.id = NEW.run_id AND NEW.step_name IS NOT NULL AND r.status IN ('QUEUED', 'RUNNING', 'CANCELLING')
    ON CONFLICT (run_id, name) DO UPDATE
    SET status = 'SUCCESS', output = excluded.output, error = NULL, retry_at = NULL,
        attempts = excluded.attempts, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE pgqrs_steps.status = 'ERROR';
    UPDATE pgqrs_runs
    SET status = CASE WHEN status = 'CANCELLING' THEN 'CANCELLED' ELSE NEW.status END,
        output = CASE WHEN status = 'CANCELLING' THEN NULL ELSE NEW.output END,
        error = CASE WHEN status = 'CANCELLING' THEN NULL ELSE NEW.error END,
        resume_at = NULL,
        started_at = coalesce(started_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE id = NEW.run_id AND status IN ('QUEUED', 'RUNNING', 'PAUSED', 'CANCELLING')
      -- Not if another execution recorded the step first: it goes on from there.
      AND (NEW.step_name IS NULL OR EXISTS (
          SELECT 1 FROM pgqrs_steps s
          WHERE s.run_id = NEW.run_id AND s.name = NEW.step_name AND s.output IS NEW.step_output));
END;
