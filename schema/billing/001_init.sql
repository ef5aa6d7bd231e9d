-- billing plugin, schema version 1.
-- Times are unix seconds (wall clock: shared by every worker process).

-- Which payment-provider customer belongs to which user. A row appears when
-- the provider reports a completed checkout; an account without one has no
-- billing record (billing.no_billing_account), which is a different truth
-- from the provider being down (billing.payment_unavailable).
CREATE TABLE customers (
  user_id TEXT PRIMARY KEY,          -- the principal's user id
  customer_id TEXT NOT NULL,         -- the provider's "cus_..."
  subscription_id TEXT,              -- the provider's "sub_...", when known
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX customers_by_customer ON customers(customer_id);

-- Provider event ids already received: a signed event presented again is a
-- replay and is refused. Rows older than the retention are pruned.
CREATE TABLE provider_events (
  event_id TEXT PRIMARY KEY,         -- the provider's "evt_..."
  type TEXT NOT NULL,
  received_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX provider_events_by_time ON provider_events(received_at);
