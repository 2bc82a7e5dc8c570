ALTER TABLE sealed_batches DROP COLUMN usage_bytes;
ALTER TABLE sealed_batches DROP COLUMN usage_events;
ALTER TABLE sealed_batches DROP COLUMN usage_categories;
DROP TABLE trail_usage;
