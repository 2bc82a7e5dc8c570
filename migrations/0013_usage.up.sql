-- Usage: events and bytes each trail delivered per (account, hour, category), for cost visibility.
-- Rows are added to in the transaction that records a delivered log file (delivery::commit), so
-- a file counts exactly once. No foreign key to trails: files sealed before a trail was deleted
-- are still delivered and counted, and past usage outlives the trail.
CREATE TABLE trail_usage (
    trail_id    BIGINT NOT NULL,
    -- The trail's ARN when the file was delivered (what GetTrailUsage reports).
    trail_arn   TEXT NOT NULL,
    -- The account the delivered file belongs to (one file is one account and region).
    account_id  TEXT NOT NULL,
    -- The hour the file was delivered (truncated, UTC).
    hour        TIMESTAMPTZ NOT NULL,
    -- eventCategory of the counted records: 'Management', 'Data', 'Insight', ...
    category    TEXT NOT NULL,
    events      BIGINT NOT NULL DEFAULT 0,
    -- Share of the delivered gzip objects' sizes (a file's bytes split by its records' sizes).
    bytes       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (trail_id, account_id, hour, category)
);
CREATE INDEX trail_usage_by_account ON trail_usage (account_id, hour);
CREATE INDEX trail_usage_by_hour ON trail_usage (hour);

-- Per-category tallies of a sealed batch, fixed at seal time with its bytes; NULL for batches
-- sealed before this migration (counted by their shard's source instead).
ALTER TABLE sealed_batches ADD COLUMN usage_categories TEXT[];
ALTER TABLE sealed_batches ADD COLUMN usage_events BIGINT[];
ALTER TABLE sealed_batches ADD COLUMN usage_bytes BIGINT[];
