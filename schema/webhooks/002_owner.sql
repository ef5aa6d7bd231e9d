-- webhooks plugin, schema version 2: every endpoint and event has an owner.
--
-- owner is the user id of the principal that created the endpoint, or for
-- an event the owner it was published for (its own user id, or the one a
-- webhooks:publish caller named). Every API query is scoped to it and an
-- event fans out only to endpoints of its owner.
--
-- Rows written under version 1 get NULL: they belong to nobody, are
-- invisible to every caller and never fanned out to again. Only an
-- operator can give them an owner, with SQL on the file (see
-- etc/bulkhead.ini, [plugin.webhooks]).
ALTER TABLE endpoints ADD COLUMN owner TEXT;
CREATE INDEX endpoints_by_owner ON endpoints(owner, seq);

ALTER TABLE events ADD COLUMN owner TEXT;
-- Idempotency keys are per owner: version 1's idempotency_key column is
-- unique across everyone (one caller could claim, or replay, another's
-- key), so version 2 rows leave it NULL and use this one instead.
ALTER TABLE events ADD COLUMN owner_idempotency_key TEXT;
CREATE UNIQUE INDEX events_by_owner_key ON events(owner, owner_idempotency_key)
  WHERE owner_idempotency_key IS NOT NULL;
