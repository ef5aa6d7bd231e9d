-- webhooks plugin, schema version 2: every endpoint and event has an owner.
--
-- owner is the user id of the principal that created the endpoint, or for
-- an event the owner it was published for (its own user id, or the one a
-- webhooks:publish caller named). Every API query is scoped to it and an
-- event fans out only to endpoints of its owner. A delivery copies the
-- owner of its endpoint (which the API never changes), so a listing of
-- one owner's deliveries reads an index instead of sorting them all.
--
-- Rows written under version 1 get NULL: they belong to nobody, are
-- invisible to every caller and never fanned out to again. Only an
-- operator can give them an owner, with SQL on the file (an endpoint and
-- its deliveries: see etc/bulkhead.ini, [plugin.webhooks]).
ALTER TABLE endpoints ADD COLUMN owner TEXT;
CREATE INDEX endpoints_by_owner ON endpoints(owner, seq);

ALTER TABLE deliveries ADD COLUMN owner TEXT;
CREATE INDEX deliveries_by_owner ON deliveries(owner, seq);
-- listings by state are per owner now: this one replaces (state, seq)
DROP INDEX deliveries_by_state;
CREATE INDEX deliveries_by_owner_state ON deliveries(owner, state, seq);

ALTER TABLE events ADD COLUMN owner TEXT;
-- Idempotency keys are per owner: version 1's idempotency_key column is
-- unique across everyone (one caller could claim, or replay, another's
-- key), so version 2 rows leave it NULL and use this one instead.
ALTER TABLE events ADD COLUMN owner_idempotency_key TEXT;
CREATE UNIQUE INDEX events_by_owner_key ON events(owner, owner_idempotency_key)
  WHERE owner_idempotency_key IS NOT NULL;
