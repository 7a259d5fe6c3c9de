-- Flow control: a queue's limits (at most max_in_flight of its messages
-- leased at once, at most rate_limit claims per aligned window of
-- rate_period_ms), the rate window's count, and ordered key groups.

ALTER TABLE pgqrs_queues ADD COLUMN max_in_flight INTEGER CHECK (max_in_flight > 0);
ALTER TABLE pgqrs_queues ADD COLUMN group_limit INTEGER CHECK (group_limit > 0);
ALTER TABLE pgqrs_queues ADD COLUMN rate_limit INTEGER CHECK (rate_limit > 0);
ALTER TABLE pgqrs_queues ADD COLUMN rate_period_ms INTEGER CHECK (rate_period_ms > 0);
-- The rate window the count is for (its start), and the claims in it.
ALTER TABLE pgqrs_queues ADD COLUMN rate_window_at TEXT;
ALTER TABLE pgqrs_queues ADD COLUMN rate_count INTEGER NOT NULL DEFAULT 0;

-- group_key: the message's key group (Group). flow_lease: the message was
-- claimed by a limited claim, so a limited claim counts its lease.
ALTER TABLE pgqrs_messages ADD COLUMN group_key TEXT;
ALTER TABLE pgqrs_messages ADD COLUMN flow_lease INTEGER NOT NULL DEFAULT 0 CHECK (flow_lease IN (0, 1));

-- A limited claim counts the unexpired leases of its queue here: only live
-- messages a limited claim leased are in this index.
CREATE INDEX pgqrs_messages_flow ON pgqrs_messages (queue_id, vt) WHERE flow_lease = 1 AND archived_at IS NULL;

-- Key groups. A group's messages beyond the first group_limit (default 1)
-- live messages, by ID, are parked: their vt is 9999-01-01, past the end of
-- every claim's range, so no claim reads them. When a live message of a
-- group leaves (archived in place, deleted), a trigger makes the group's
-- oldest parked messages visible up to the limit. SQLite has one writer, so
-- the triggers' counts cannot race.
CREATE INDEX pgqrs_messages_group ON pgqrs_messages (queue_id, group_key, vt) WHERE group_key IS NOT NULL AND archived_at IS NULL;

CREATE TRIGGER pgqrs_group_park AFTER INSERT ON pgqrs_messages
WHEN NEW.group_key IS NOT NULL AND NEW.archived_at IS NULL
BEGIN
    UPDATE pgqrs_messages SET vt = '9999-01-01T00:00:00.000Z'
    WHERE id = NEW.id
      AND (SELECT count(*) FROM pgqrs_messages
           WHERE queue_id = NEW.queue_id AND group_key = NEW.group_key AND archived_at IS NULL
             AND vt < '9999-01-01T00:00:00.000Z' AND id <> NEW.id)
          >= (SELECT coalesce(group_limit, 1) FROM pgqrs_queues WHERE id = NEW.queue_id);
END;

-- A replayed dead letter re-enters its group as a new message would.
CREATE TRIGGER pgqrs_group_repark AFTER UPDATE OF archived_at ON pgqrs_messages
WHEN NEW.group_key IS NOT NULL AND OLD.archived_at IS NOT NULL AND NEW.archived_at IS NULL
BEGIN
    UPDATE pgqrs_messages SET vt = '9999-01-01T00:00:00.000Z'
    WHERE id = NEW.id
      AND (SELECT count(*) FROM pgqrs_messages
           WHERE queue_id = NEW.queue_id AND group_key = NEW.group_key AND archived_at IS NULL
             AND vt < '9999-01-01T00:00:00.000Z' AND id <> NEW.id)
          >= (SELECT coalesce(group_limit, 1) FROM pgqrs_queues WHERE id = NEW.queue_id);
END;

CREATE TRIGGER pgqrs_group_promote_archived AFTER UPDATE OF archived_at ON pgqrs_messages
WHEN OLD.group_key IS NOT NULL AND OLD.archived_at IS NULL AND NEW.archived_at IS NOT NULL
     AND OLD.vt < '9999-01-01T00:00:00.000Z'
BEGIN
    UPDATE pgqrs_messages SET vt = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE id IN (
        SELECT id FROM pgqrs_messages
        WHERE queue_id = OLD.queue_id AND group_key = OLD.group_key AND archived_at IS NULL
          AND vt = '9999-01-01T00:00:00.000Z'
        ORDER BY id
        LIMIT max(0, (SELECT coalesce(group_limit, 1) FROM pgqrs_queues WHERE id = OLD.queue_id)
                     - (SELECT count(*) FROM pgqrs_messages
                        WHERE queue_id = OLD.queue_id AND group_key = OLD.group_key AND archived_at IS NULL
                          AND vt < '9999-01-01T00:00:00.000Z')));
END;

CREATE TRIGGER pgqrs_group_promote_deleted AFTER DELETE ON pgqrs_messages
WHEN OLD.group_key IS NOT NULL AND OLD.archived_at IS NULL AND OLD.vt < '9999-01-01T00:00:00.000Z'
BEGIN
    UPDATE pgqrs_messages SET vt = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE id IN (
        SELECT id FROM pgqrs_messages
        WHERE queue_id = OLD.queue_id AND group_key = OLD.group_key AND archived_at IS NULL
          AND vt = '9999-01-01T00:00:00.000Z'
        ORDER BY id
        LIMIT max(0, (SELECT coalesce(group_limit, 1) FROM pgqrs_queues WHERE id = OLD.queue_id)
                     - (SELECT count(*) FROM pgqrs_messages
                        WHERE queue_id = OLD.queue_id AND group_key = OLD.group_key AND archived_at IS NULL
                          AND vt < '9999-01-01T00:00:00.000Z')));
END;
