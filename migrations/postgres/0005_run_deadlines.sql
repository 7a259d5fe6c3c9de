-- A run's deadline, set at trigger time (Timeout): a run not finished by
-- then ends CANCELLED, whether it is running, sleeping or paused.
ALTER TABLE pgqrs_runs ADD COLUMN IF NOT EXISTS deadline_at TIMESTAMPTZ;
