-- A worker's liveness is one row, renewed in one statement however many shards it holds; a shard
-- lease is held while its owner's row is unexpired (no per-shard expiry to rewrite every renewal).
CREATE TABLE workers (
    owner       TEXT PRIMARY KEY,
    expires_at  TIMESTAMPTZ NOT NULL
);
INSERT INTO workers (owner, expires_at)
SELECT owner, max(expires_at) FROM shard_leases WHERE owner IS NOT NULL GROUP BY owner;
DROP INDEX shard_leases_by_expiry;
ALTER TABLE shard_leases DROP COLUMN expires_at;
CREATE INDEX shard_leases_unowned ON shard_leases (shard_id) WHERE owner IS NULL;

-- Workers reload trails and account statuses when they change, instead of on every pass: any
-- statement that changes them moves the version on, in its own transaction (so a worker that reads
-- the version at time T knows every change committed before T).
CREATE TABLE config_version (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version    BIGINT NOT NULL
);
INSERT INTO config_version (singleton, version) VALUES (TRUE, 0);
CREATE FUNCTION orgtrail_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE config_version SET version = version + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER trails_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON trails
    FOR EACH STATEMENT EXECUTE FUNCTION orgtrail_config_changed();
CREATE TRIGGER accounts_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION orgtrail_config_changed();
CREATE TRIGGER organizations_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON organizations
    FOR EACH STATEMENT EXECUTE FUNCTION orgtrail_config_changed();
