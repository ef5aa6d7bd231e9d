-- The identity store on PostgreSQL (schema bh_identity): the tables of
-- schema/core/001..004 for SQLite, in one migration. Credential hashes
-- (SHA-256) are hex text; times are unix seconds.
CREATE TABLE sessions (
  id              TEXT PRIMARY KEY,
  user_id         TEXT NOT NULL,
  scopes          TEXT NOT NULL DEFAULT '',
  created_at      BIGINT NOT NULL,
  last_refresh_at BIGINT NOT NULL,
  revoked_at      BIGINT,
  revoke_reason   TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);
-- every instance reads the sessions revoked since its last look (the
-- revoked-session set): a range read
CREATE INDEX sessions_revoked ON sessions (revoked_at)
  WHERE revoked_at IS NOT NULL;

CREATE TABLE refresh_tokens (
  hash       TEXT PRIMARY KEY,
  session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  rotated_at BIGINT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE api_keys (
  id           TEXT PRIMARY KEY,
  user_id      TEXT NOT NULL,
  name         TEXT NOT NULL DEFAULT '',
  prefix       TEXT NOT NULL,
  hash         TEXT NOT NULL UNIQUE,
  scopes       TEXT NOT NULL DEFAULT '',
  created_at   BIGINT NOT NULL,
  last_used_at BIGINT,
  revoked_at   BIGINT
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE users (
  id            TEXT PRIMARY KEY,
  email         TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  disabled      INTEGER NOT NULL DEFAULT 0,
  created_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (lower(email));

CREATE TABLE login_failures (
  key          TEXT PRIMARY KEY,
  failures     BIGINT NOT NULL,
  window_start BIGINT NOT NULL,
  locked_until BIGINT NOT NULL DEFAULT 0
);
