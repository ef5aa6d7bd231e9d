-- Sessions and refresh-token families.
--
-- A session is one refresh-token family: the first token is issued at
-- login, each refresh spends the token presented (rotated_at) and issues a
-- new one in the same family. Presenting a spent token again is reuse: the
-- whole family (the session) is revoked. Only SHA-256 hashes of refresh
-- tokens are stored. Times are unix seconds.
CREATE TABLE sessions (
  id              TEXT PRIMARY KEY,
  user_id         TEXT NOT NULL,
  scopes          TEXT NOT NULL DEFAULT '',
  created_at      INTEGER NOT NULL,
  last_refresh_at INTEGER NOT NULL,
  revoked_at      INTEGER,
  revoke_reason   TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
  hash       BLOB PRIMARY KEY,
  session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  rotated_at INTEGER
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
