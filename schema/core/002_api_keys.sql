-- API keys. The raw key is shown once, at creation; the store keeps its
-- SHA-256 and a short visible prefix for listing.
CREATE TABLE api_keys (
  id           TEXT PRIMARY KEY,
  user_id      TEXT NOT NULL,
  name         TEXT NOT NULL DEFAULT '',
  prefix       TEXT NOT NULL,
  hash         BLOB NOT NULL UNIQUE,
  scopes       TEXT NOT NULL DEFAULT '',
  created_at   INTEGER NOT NULL,
  last_used_at INTEGER,
  revoked_at   INTEGER
);
CREATE INDEX api_keys_user ON api_keys (user_id);
