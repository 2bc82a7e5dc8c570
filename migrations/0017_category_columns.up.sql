-- A sealed batch's per-category counts are the pipeline's facts about the file (usage reads them).
ALTER TABLE sealed_batches RENAME COLUMN usage_categories TO category_names;
ALTER TABLE sealed_batches RENAME COLUMN usage_events TO category_events;
ALTER TABLE sealed_batches RENAME COLUMN usage_bytes TO category_bytes;
