-- Taps (history index, alert rules, Insights counts, CloudWatch Logs): how far each consumer key
-- has consumed each shard. Staged events are released only when every trail cursor and every tap
-- cursor passed them.
CREATE TABLE tap_cursors (
    shard_id     BIGINT NOT NULL REFERENCES shards (id) ON DELETE CASCADE,
    tap_key      TEXT NOT NULL,
    through_seq  BIGINT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (shard_id, tap_key)
);
