ALTER TABLE sealed_batches RENAME COLUMN category_names TO usage_categories;
ALTER TABLE sealed_batches RENAME COLUMN category_events TO usage_events;
ALTER TABLE sealed_batches RENAME COLUMN category_bytes TO usage_bytes;
