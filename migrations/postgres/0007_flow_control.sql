-- Flow control: a queue's limits (at most max_in_flight of its messages
-- leased at once, at most rate_limit claims per aligned window of
-- rate_period_ms), the rate window's count, and ordered key groups.

ALTER TABLE pgqrs_queues
    ADD COLUMN IF NOT EXISTS max_in_flight  INTEGER CHECK (max_in_flight > 0),
    ADD COLUMN IF NOT EXISTS group_limit    INTEGER CHECK (group_limit > 0),
    ADD COLUMN IF NOT EXISTS rate_limit     INTEGER CHECK (rate_limit > 0),
    ADD COLUMN IF NOT EXISTS rate_period_ms BIGINT CHECK (rate_period_ms > 0),
    -- The rate window the count is for (its start), and the claims in it.
    ADD COLUMN IF NOT EXISTS rate_window_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS rate_count     INTEGER NOT NULL DEFAULT 0;

-- group_key: the message's key group (Group). flow_lease: the message was
-- claimed by a limited claim, so a limited claim counts its lease.
ALTER TABLE pgqrs_messages
    ADD COLUMN IF NOT EXISTS group_key  TEXT,
    ADD COLUMN IF NOT EXISTS flow_lease BOOLEAN NOT NULL DEFAULT false;

ALTER TABLE pgqrs_archive ADD COLUMN IF NOT EXISTS group_key TEXT;

-- A limited claim counts the unexpired leases of its queue here: only
-- messages a limited claim leased are in this index, so an unlimited
-- queue's claims never write to it.
CREATE INDEX IF NOT EXISTS pgqrs_messages_flow ON pgqrs_messages (queue_id, vt) WHERE flow_lease;

-- Key groups. A group's messages beyond the first group_limit (default 1)
-- live messages, by ID, are parked: their vt is 9999-01-01, past the end of
-- every claim's range, so no claim reads them. When a live message of a
-- group leaves (archived, deleted, dead-lettered, cancelled), the trigger
-- pgqrs_group_promote makes the group's oldest parked messages visible up to
-- the limit. Both triggers take one transaction-scoped advisory lock per
-- queue (two-key form: class 1886843507, 'pgrs') and their queries run
-- after it, each with a fresh snapshot, so concurrent enqueues and removals
-- of one queue's groups take turns and each sees the others' commits.
CREATE INDEX IF NOT EXISTS pgqrs_messages_group ON pgqrs_messages (queue_id, group_key, vt, id)
    WHERE group_key IS NOT NULL;

CREATE OR REPLACE FUNCTION pgqrs_group_park() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1886843507, (NEW.queue_id % 2147483647)::integer);
    IF (SELECT count(*) FROM pgqrs_messages
        WHERE queue_id = NEW.queue_id AND group_key = NEW.group_key AND vt < '9999-01-01 00:00:00+00')
       >= (SELECT coalesce(group_limit, 1) FROM pgqrs_queues WHERE id = NEW.queue_id) THEN
        NEW.vt := '9999-01-01 00:00:00+00';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION pgqrs_group_promote() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1886843507, (OLD.queue_id % 2147483647)::integer);
    UPDATE pgqrs_messages SET vt = now()
    WHERE id IN (
        SELECT id FROM pgqrs_messages
        WHERE queue_id = OLD.queue_id AND group_key = OLD.group_key AND vt = '9999-01-01 00:00:00+00'
        ORDER BY id
        LIMIT greatest(0, (SELECT coalesce(group_limit, 1) FROM pgqrs_queues WHERE id = OLD.queue_id)
                          - (SELECT count(*) FROM pgqrs_messages
                             WHERE queue_id = OLD.queue_id AND group_key = OLD.group_key
                               AND vt < '9999-01-01 00:00:00+00')));
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pgqrs_messages_group_park ON pgqrs_messages;
CREATE TRIGGER pgqrs_messages_group_park BEFORE INSERT ON pgqrs_messages
    FOR EACH ROW WHEN (NEW.group_key IS NOT NULL) EXECUTE FUNCTION pgqrs_group_park();

DROP TRIGGER IF EXISTS pgqrs_messages_group_promote ON pgqrs_messages;
CREATE TRIGGER pgqrs_messages_group_promote AFTER DELETE ON pgqrs_messages
    FOR EACH ROW WHEN (OLD.group_key IS NOT NULL AND OLD.vt < '9999-01-01 00:00:00+00')
    EXECUTE FUNCTION pgqrs_group_promote();
