-- The sessions revoked within the longest access-token lifetime are loaded
-- into the in-memory revoked-session set at start-up (core/auth_revoked.c):
-- this index keeps that a range read however many sessions the store holds.
CREATE INDEX sessions_revoked ON sessions (revoked_at)
  WHERE revoked_at IS NOT NULL;
