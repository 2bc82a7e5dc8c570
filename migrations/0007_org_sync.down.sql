ALTER TABLE accounts DROP COLUMN suspended_by_org_sync;
DROP TABLE org_sync_status;
