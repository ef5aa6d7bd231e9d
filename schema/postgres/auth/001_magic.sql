-- auth plugin on PostgreSQL (schema bh_auth), version 1: the magic-link
-- tables of its SQLite file (plugins/auth/magic_db.c), shared by every
-- instance: a link sent by one opens on any. Hashes are BLAKE2b, stored
-- as lowercase hex; times are unix seconds.
CREATE TABLE accounts (
  email_hash TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  seen_at BIGINT NOT NULL
);
CREATE TABLE tokens (
  selector TEXT PRIMARY KEY,
  verifier TEXT NOT NULL,
  email_hash TEXT NOT NULL,
  user_id TEXT NOT NULL,
  redirect TEXT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX tokens_by_email ON tokens (email_hash);
CREATE INDEX tokens_by_expiry ON tokens (expires_at);
CREATE TABLE limits (
  key TEXT PRIMARY KEY,
  window_start BIGINT NOT NULL,
  count BIGINT NOT NULL
);
CREATE TABLE idp_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  down INTEGER NOT NULL,
  at BIGINT NOT NULL
);
