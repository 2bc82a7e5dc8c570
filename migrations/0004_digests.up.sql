-- Digest chains (integrity validation): which delivered files each digest lists, the head of
-- each (trail, account, region) chain, and digests sealed but not yet confirmed in S3.

-- When log file validation was last switched on (NULL while off). A chain is active while
-- validation is on and the trail is logging; it starts at the later of this and start_logging_at.
ALTER TABLE trails ADD COLUMN validation_enabled_at TIMESTAMPTZ;
UPDATE trails SET validation_enabled_at = created_at WHERE log_file_validation_enabled;

-- SHA-256 of the uncompressed log file (what a digest lists). NULL for files delivered before
-- this migration: they are never listed in a digest.
ALTER TABLE sealed_batches ADD COLUMN content_sha256 BYTEA;
ALTER TABLE delivered_files ADD COLUMN content_sha256 BYTEA;
-- Key of the digest that lists the file; NULL until a digest took it.
ALTER TABLE delivered_files ADD COLUMN digest_key TEXT;
CREATE INDEX delivered_files_undigested ON delivered_files (trail_arn, account_id, region, delivered_at)
    WHERE digest_key IS NULL;

CREATE TABLE digest_chains (
    trail_arn          TEXT NOT NULL,
    account_id         TEXT NOT NULL,
    region             TEXT NOT NULL,
    -- Status is reported on the trail; NULL once the trail is deleted.
    trail_id           BIGINT,
    -- Where the chain's digests go (kept so a deleted trail's chain can still be closed).
    bucket             TEXT NOT NULL,
    key_prefix         TEXT NOT NULL,
    organization_id    TEXT,
    trail_name         TEXT NOT NULL,
    home_region        TEXT NOT NULL,
    -- Start of the current chain (validation on and logging); a different start means a new chain.
    chain_started_at   TIMESTAMPTZ NOT NULL,
    -- The newest digest of the chain; NULL before the first one.
    last_end           TIMESTAMPTZ,
    last_bucket        TEXT,
    last_key           TEXT,
    last_sha256_hex    TEXT,
    last_signature_hex TEXT,
    -- The final digest was written after validation or logging stopped.
    closed             BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (trail_arn, account_id, region)
);

-- Sealed digests: the exact bytes and signature, written before the PUT so that a crash repeats
-- the same object, never a different one.
CREATE TABLE pending_digests (
    bucket         TEXT NOT NULL,
    object_key     TEXT NOT NULL,
    trail_id       BIGINT,
    body           BYTEA NOT NULL,
    body_sha256    BYTEA NOT NULL,
    signature_hex  TEXT NOT NULL,
    sealed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, object_key)
);
ALTER TABLE pending_digests ALTER COLUMN body SET STORAGE EXTERNAL;

-- Digests written, for status and tests (the bucket is the record).
CREATE TABLE delivered_digests (
    id             BIGSERIAL PRIMARY KEY,
    trail_arn      TEXT NOT NULL,
    account_id     TEXT NOT NULL,
    region         TEXT NOT NULL,
    bucket         TEXT NOT NULL,
    object_key     TEXT NOT NULL,
    start_time     TIMESTAMPTZ NOT NULL,
    end_time       TIMESTAMPTZ NOT NULL,
    log_files      INTEGER NOT NULL,
    delivered_at   TIMESTAMPTZ,
    UNIQUE (bucket, object_key)
);
