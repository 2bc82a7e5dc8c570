DROP TRIGGER organizations_changed ON organizations;
DROP TRIGGER accounts_changed ON accounts;
DROP TRIGGER trails_changed ON trails;
DROP FUNCTION orgtrail_config_changed();
DROP INDEX shard_leases_unowned;
ALTER TABLE shard_leases ADD COLUMN expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity';
UPDATE shard_leases l SET expires_at = w.expires_at FROM workers w WHERE w.owner = l.owner;
CREATE INDEX shard_leases_by_expiry ON shard_leases (expires_at);
DROP TABLE workers;
