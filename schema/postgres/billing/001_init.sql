-- billing plugin on PostgreSQL (schema bh_billing), version 1: the tables
-- of schema/billing/001_init.sql. Times are unix seconds.
CREATE TABLE customers (
  user_id TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL,
  subscription_id TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX customers_by_customer ON customers (customer_id);

-- every instance records the event ids it takes here: one instance's
-- event is a replay for all of them
CREATE TABLE provider_events (
  event_id TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  received_at BIGINT NOT NULL
);
CREATE INDEX provider_events_by_time ON provider_events (received_at);
