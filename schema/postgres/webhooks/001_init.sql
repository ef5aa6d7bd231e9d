-- webhooks plugin on PostgreSQL (schema bh_webhooks), version 1: the
-- tables of schema/webhooks/001..003 as they stand after version 3, shared
-- by every instance. Times are unix milliseconds (wall clock).
CREATE TABLE endpoints (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  url TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  events TEXT NOT NULL,
  enabled INTEGER NOT NULL DEFAULT 1,
  disabled_reason TEXT,
  secret TEXT NOT NULL,
  old_secret TEXT,
  old_secret_until BIGINT NOT NULL DEFAULT 0,
  breaker_failures INTEGER NOT NULL DEFAULT 0,
  breaker_open_until BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  owner TEXT
);
CREATE INDEX endpoints_by_owner ON endpoints (owner, seq);

CREATE TABLE endpoint_events (
  event_type TEXT NOT NULL,
  endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
  PRIMARY KEY (event_type, endpoint_id)
);
CREATE INDEX endpoint_events_by_endpoint ON endpoint_events (endpoint_id);

CREATE TABLE events (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  payload TEXT NOT NULL,
  idempotency_key TEXT UNIQUE,
  deliveries INTEGER NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  owner TEXT,
  owner_idempotency_key TEXT
);
CREATE UNIQUE INDEX events_by_owner_key ON events (owner, owner_idempotency_key)
  WHERE owner_idempotency_key IS NOT NULL;

-- A pending delivery whose lease_until lies in the future is being sent by
-- lease_owner (a dispatcher of some instance); claims lock the candidate
-- rows FOR UPDATE SKIP LOCKED, so concurrent dispatchers never wait for
-- or take each other's rows. An expired lease (its instance died) makes
-- the delivery due again for every instance.
CREATE TABLE deliveries (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
  endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
  state TEXT NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'succeeded', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  round_attempts INTEGER NOT NULL DEFAULT 0,
  next_at BIGINT NOT NULL,
  lease_owner TEXT,
  lease_until BIGINT NOT NULL DEFAULT 0,
  last_status INTEGER,
  last_error TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  completed_at BIGINT,
  owner TEXT
);
CREATE INDEX deliveries_due ON deliveries (endpoint_id, next_at)
  WHERE state = 'pending';
CREATE INDEX deliveries_leased ON deliveries (lease_until)
  WHERE lease_until > 0;
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint_id, seq);
CREATE INDEX deliveries_by_owner ON deliveries (owner, seq);
CREATE INDEX deliveries_by_owner_state ON deliveries (owner, state, seq);

CREATE TABLE attempts (
  delivery_seq BIGINT NOT NULL REFERENCES deliveries (seq) ON DELETE CASCADE,
  n INTEGER NOT NULL,
  at BIGINT NOT NULL,
  duration_ms BIGINT NOT NULL,
  status INTEGER,
  error TEXT,
  PRIMARY KEY (delivery_seq, n)
);

CREATE TABLE dispatchers (
  owner TEXT PRIMARY KEY,
  alive_until BIGINT NOT NULL
);

-- Every state change of a delivery, for GET /v1/webhooks/deliveries/stream
-- on any instance. A stream reads the rows after the last seq it sent, so
-- a row must never commit below a seq a reader has already seen: each
-- writing transaction takes one transaction-level advisory lock before its
-- first change row and holds it to commit, so seqs commit in order.
CREATE TABLE delivery_changes (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner TEXT,
  delivery_seq BIGINT NOT NULL,
  change TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  next_at BIGINT NOT NULL,
  lease_until BIGINT NOT NULL,
  last_status INTEGER,
  last_error TEXT,
  updated_at BIGINT NOT NULL,
  completed_at BIGINT,
  at BIGINT NOT NULL
);
CREATE INDEX delivery_changes_by_owner ON delivery_changes (owner, seq);
CREATE INDEX delivery_changes_by_time ON delivery_changes (at);

CREATE FUNCTION record_change(d deliveries, what TEXT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(7720931);
  INSERT INTO delivery_changes (owner, delivery_seq, change, state, attempts,
    next_at, lease_until, last_status, last_error, updated_at, completed_at,
    at)
  VALUES (d.owner, d.seq, what, d.state, d.attempts, d.next_at,
    d.lease_until, d.last_status, d.last_error, d.updated_at, d.completed_at,
    (extract(epoch FROM clock_timestamp()) * 1000)::bigint);
END $$;

CREATE FUNCTION delivery_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM record_change(NEW, 'queued');
  ELSIF NEW.attempts > OLD.attempts THEN
    PERFORM record_change(NEW,
      CASE WHEN NEW.state = 'succeeded' THEN 'succeeded'
           WHEN NEW.state = 'failed' AND NEW.last_error = 'endpoint_gone'
             THEN 'endpoint_disabled'
           WHEN NEW.state = 'failed' THEN 'failed'
           ELSE 'retrying' END);
  ELSIF NEW.state = 'pending' AND NEW.lease_until > OLD.lease_until
      AND NEW.lease_owner IS NOT NULL THEN
    PERFORM record_change(NEW, 'attempting');
  ELSIF NEW.state = 'pending' AND NEW.lease_until = OLD.lease_until
      AND (OLD.state <> 'pending' OR NEW.next_at <> OLD.next_at) THEN
    PERFORM record_change(NEW, 'queued');
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER delivery_changed AFTER INSERT OR UPDATE ON deliveries
  FOR EACH ROW EXECUTE FUNCTION delivery_changed();

CREATE FUNCTION endpoint_disabled() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE d deliveries;
BEGIN
  IF OLD.enabled = 1 AND NEW.enabled = 0 THEN
    FOR d IN SELECT * FROM deliveries WHERE endpoint_id = NEW.id
        AND state = 'pending' ORDER BY seq LOOP
      PERFORM record_change(d, 'endpoint_disabled');
    END LOOP;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER endpoint_disabled AFTER UPDATE OF enabled ON endpoints
  FOR EACH ROW EXECUTE FUNCTION endpoint_disabled();
