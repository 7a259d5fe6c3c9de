-- Workflow runs: deadlines, caller-chosen keys and parents.

-- A run's deadline, set at trigger time (Timeout): a run not finished by
-- then ends CANCELLED, whether it is running, sleeping or paused.
ALTER TABLE pgqrs_runs ADD COLUMN IF NOT EXISTS deadline_at TIMESTAMPTZ;

-- A run's caller-chosen key (Key at trigger time): triggering a workflow
-- again with the same key returns the same run, as long as the run exists.
ALTER TABLE pgqrs_runs ADD COLUMN IF NOT EXISTS run_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS pgqrs_runs_key ON pgqrs_runs (workflow_id, run_key) WHERE run_key IS NOT NULL;

-- A child run's parent (StartChild): the parent waits for its children
-- without a worker and is woken by the last one's end; cancelling a parent
-- cancels its unfinished children.
ALTER TABLE pgqrs_runs ADD COLUMN IF NOT EXISTS parent_run_id BIGINT;
CREATE INDEX IF NOT EXISTS pgqrs_runs_parent ON pgqrs_runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
