-- webhooks plugin, schema version 1.
-- Times are unix milliseconds (wall clock: shared by every process).

-- Endpoints: where events go, and the state every process must agree on
-- (signing secrets, the circuit breaker).
CREATE TABLE endpoints (
  seq INTEGER PRIMARY KEY,               -- creation order, for pagination
  id TEXT NOT NULL UNIQUE,               -- "ep_..."
  url TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  events TEXT NOT NULL,                  -- JSON array of subscribed types
  enabled INTEGER NOT NULL DEFAULT 1,
  disabled_reason TEXT,                  -- 'gone' after a 410, 'manual'
  secret TEXT NOT NULL,                  -- "whsec_..."
  old_secret TEXT,                       -- still signs until old_secret_until
  old_secret_until INTEGER NOT NULL DEFAULT 0,
  breaker_failures INTEGER NOT NULL DEFAULT 0, -- consecutive
  breaker_open_until INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

-- Subscriptions, for an indexed fan-out ("*" subscribes to every type).
CREATE TABLE endpoint_events (
  event_type TEXT NOT NULL,
  endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
  PRIMARY KEY (event_type, endpoint_id)
) WITHOUT ROWID;
CREATE INDEX endpoint_events_by_endpoint ON endpoint_events(endpoint_id);

-- Events as accepted; payload is the exact body every delivery sends.
CREATE TABLE events (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,               -- "evt_...", the webhook-id header
  type TEXT NOT NULL,
  payload TEXT NOT NULL,
  idempotency_key TEXT UNIQUE,
  deliveries INTEGER NOT NULL DEFAULT 0, -- fan-out when accepted
  created_at INTEGER NOT NULL
);

-- One delivery per (event, endpoint). A pending delivery whose lease_until
-- lies in the future is being sent by lease_owner; an expired lease (its
-- process died) makes it due again.
CREATE TABLE deliveries (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,               -- "dlv_..."
  event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
  endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
  state TEXT NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'succeeded', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,   -- over the delivery's life
  round_attempts INTEGER NOT NULL DEFAULT 0, -- since the last manual retry
  next_at INTEGER NOT NULL,
  lease_owner TEXT,
  lease_until INTEGER NOT NULL DEFAULT 0,
  last_status INTEGER,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  completed_at INTEGER
);
CREATE INDEX deliveries_due ON deliveries(endpoint_id, next_at)
  WHERE state = 'pending';
CREATE INDEX deliveries_leased ON deliveries(lease_until)
  WHERE lease_until > 0;
CREATE INDEX deliveries_by_state ON deliveries(state, seq);
CREATE INDEX deliveries_by_endpoint ON deliveries(endpoint_id, seq);
-- (no index on event_id: events are never deleted, nothing looks them up)

-- Every attempt of a delivery, for its detail view.
CREATE TABLE attempts (
  delivery_seq INTEGER NOT NULL REFERENCES deliveries(seq) ON DELETE CASCADE,
  n INTEGER NOT NULL,                    -- 1-based
  at INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  status INTEGER,                        -- HTTP status, NULL when none came
  error TEXT,                            -- transport failure, NULL if none
  PRIMARY KEY (delivery_seq, n)
) WITHOUT ROWID;

-- The dispatchers alive (one per worker process), each renewing its row as
-- it works. Concurrency caps count only the leases of live dispatchers: a
-- process that died keeps its deliveries reserved until their leases
-- expire, but not the capacity.
CREATE TABLE dispatchers (
  owner TEXT PRIMARY KEY,
  alive_until INTEGER NOT NULL
) WITHOUT ROWID;
