-- The embedded identity provider (idp = local in [plugin.auth]): users with
-- Argon2id password hashes (libsodium crypto_pwhash_str), created with
-- `bulkhead user add EMAIL`.
CREATE TABLE users (
  id            TEXT PRIMARY KEY,
  email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
  password_hash TEXT NOT NULL,
  disabled      INTEGER NOT NULL DEFAULT 0,
  created_at    INTEGER NOT NULL
);

-- Failed sign-ins per account (hashed) and per client address, shared by
-- every worker: past [auth] login_max_failures within login_lockout_s the
-- key is locked until locked_until.
CREATE TABLE login_failures (
  key          TEXT PRIMARY KEY,
  failures     INTEGER NOT NULL,
  window_start INTEGER NOT NULL,
  locked_until INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
