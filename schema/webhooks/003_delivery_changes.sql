-- webhooks plugin, schema version 3: every state change of a delivery, in
-- order, for GET /v1/webhooks/deliveries/stream (server-sent events).
--
-- seq is the event id a stream sends (id:) and a client resumes from
-- (Last-Event-ID). AUTOINCREMENT: a seq is never reused, even after old
-- rows are pruned, and writers are serialised by SQLite's write lock, so a
-- reader that has seen seq N never later finds a committed row below N.
--
-- The rows are written by triggers, in the transaction that changes the
-- delivery, whichever process or connection runs it: the store is the
-- one source of truth, and a stream of any worker sees every change.
-- Each row is a snapshot of the columns that change; the rest (ids, event
-- type, creation time) are read from the delivery and its event.
CREATE TABLE delivery_changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  owner TEXT,                        -- the delivery's (NULL: nobody's)
  delivery_seq INTEGER NOT NULL,
  change TEXT NOT NULL,              -- queued, attempting, succeeded,
                                     -- retrying, failed, endpoint_disabled
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  next_at INTEGER NOT NULL,
  lease_until INTEGER NOT NULL,
  last_status INTEGER,
  last_error TEXT,
  updated_at INTEGER NOT NULL,
  completed_at INTEGER,
  at INTEGER NOT NULL                -- unix ms the change was recorded
);
CREATE INDEX delivery_changes_by_owner ON delivery_changes(owner, seq);
CREATE INDEX delivery_changes_by_time ON delivery_changes(at);

-- a new delivery (the fan-out of an event)
CREATE TRIGGER delivery_queued AFTER INSERT ON deliveries
BEGIN
  INSERT INTO delivery_changes (owner, delivery_seq, change, state, attempts,
    next_at, lease_until, last_status, last_error, updated_at, completed_at,
    at)
  VALUES (new.owner, new.seq, 'queued', new.state, new.attempts, new.next_at,
    new.lease_until, new.last_status, new.last_error, new.updated_at,
    new.completed_at, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

-- a dispatcher claimed it: an attempt starts
CREATE TRIGGER delivery_attempting AFTER UPDATE OF lease_until ON deliveries
WHEN new.state = 'pending' AND new.lease_until > old.lease_until
  AND new.lease_owner IS NOT NULL AND new.attempts = old.attempts
BEGIN
  INSERT INTO delivery_changes (owner, delivery_seq, change, state, attempts,
    next_at, lease_until, last_status, last_error, updated_at, completed_at,
    at)
  VALUES (new.owner, new.seq, 'attempting', new.state, new.attempts,
    new.next_at, new.lease_until, new.last_status, new.last_error,
    new.updated_at, new.completed_at,
    CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

-- an attempt's outcome was recorded
CREATE TRIGGER delivery_attempted AFTER UPDATE OF attempts ON deliveries
WHEN new.attempts > old.attempts
BEGIN
  INSERT INTO delivery_changes (owner, delivery_seq, change, state, attempts,
    next_at, lease_until, last_status, last_error, updated_at, completed_at,
    at)
  VALUES (new.owner, new.seq,
    CASE WHEN new.state = 'succeeded' THEN 'succeeded'
         WHEN new.state = 'failed' AND new.last_error = 'endpoint_gone'
           THEN 'endpoint_disabled'
         WHEN new.state = 'failed' THEN 'failed'
         ELSE 'retrying' END,
    new.state, new.attempts, new.next_at, new.lease_until, new.last_status,
    new.last_error, new.updated_at, new.completed_at,
    CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

-- a manual retry: back to pending (or due now), no attempt made
CREATE TRIGGER delivery_requeued AFTER UPDATE OF state, next_at ON deliveries
WHEN new.attempts = old.attempts AND new.state = 'pending'
  AND new.lease_until = old.lease_until
  AND (old.state <> 'pending' OR new.next_at <> old.next_at)
BEGIN
  INSERT INTO delivery_changes (owner, delivery_seq, change, state, attempts,
    next_at, lease_until, last_status, last_error, updated_at, completed_at,
    at)
  VALUES (new.owner, new.seq, 'queued', new.state, new.attempts, new.next_at,
    new.lease_until, new.last_status, new.last_error, new.updated_at,
    new.completed_at, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

-- an endpoint disabled (by its owner, or after a 410): its pending
-- deliveries wait until it is enabled again
CREATE TRIGGER endpoint_disabled AFTER UPDATE OF enabled ON endpoints
WHEN old.enabled = 1 AND new.enabled = 0
BEGIN
  INSERT INTO delivery_changes (owner, delivery_seq, change, state, attempts,
    next_at, lease_until, last_status, last_error, updated_at, completed_at,
    at)
  SELECT d.owner, d.seq, 'endpoint_disabled', d.state, d.attempts, d.next_at,
    d.lease_until, d.last_status, d.last_error, d.updated_at, d.completed_at,
    CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
  FROM deliveries d WHERE d.endpoint_id = new.id AND d.state = 'pending';
END;
