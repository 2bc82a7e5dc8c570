-- Pull collectors: how each account is reached in AWS, per-source status, and durable cursors.

-- CollectorSettings as JSON (role_arn, external_id, lookup_events, trail_bucket, trail_prefix,
-- regions); '{}' = push only.
ALTER TABLE accounts ADD COLUMN collector JSONB NOT NULL DEFAULT '{}';

CREATE TABLE collector_status (
    account_id        TEXT NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    source            TEXT NOT NULL,
    region            TEXT NOT NULL,
    last_success_at   TIMESTAMPTZ,
    last_error        TEXT NOT NULL DEFAULT '',
    last_error_at     TIMESTAMPTZ,
    events_collected  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, source, region)
);

-- Where a collector resumes after a restart; written only after what it pulled is staged.
CREATE TABLE collector_cursors (
    account_id  TEXT NOT NULL,
    source      TEXT NOT NULL,
    region      TEXT NOT NULL,
    cursor      JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, source, region)
);
