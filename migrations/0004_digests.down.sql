DROP TABLE delivered_digests;
DROP TABLE pending_digests;
DROP TABLE digest_chains;
DROP INDEX delivered_files_undigested;
ALTER TABLE delivered_files DROP COLUMN digest_key;
ALTER TABLE delivered_files DROP COLUMN content_sha256;
ALTER TABLE sealed_batches DROP COLUMN content_sha256;
ALTER TABLE trails DROP COLUMN validation_enabled_at;
