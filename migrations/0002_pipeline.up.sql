-- Event pipeline: staging per shard, leases, dedupe, per-(trail, shard) delivery progress.

ALTER TABLE trails
    ADD COLUMN delivery_interval_seconds INTEGER NOT NULL DEFAULT 60 CHECK (delivery_interval_seconds >= 1);

-- Channels for non-AWS sources: events on a channel default to its account and region.
CREATE TABLE channels (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts (account_id),
    region      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, name)
);

-- A shard is the unit of collection, lease and cursor: (account, region, source).
CREATE TABLE shards (
    id          BIGSERIAL PRIMARY KEY,
    account_id  TEXT NOT NULL,
    region      TEXT NOT NULL,
    source      TEXT NOT NULL,
    -- Next sequence number to hand out. Ingest holds this row's lock until commit, so staged
    -- events become visible in sequence order.
    next_seq    BIGINT NOT NULL DEFAULT 1,
    UNIQUE (account_id, region, source)
);

-- Leases live apart from `shards` so that lease checks never wait on ingest's row lock.
CREATE TABLE shard_leases (
    shard_id    BIGINT PRIMARY KEY REFERENCES shards (id) ON DELETE CASCADE,
    owner       TEXT,
    -- Fencing: bumped on every claim; a commit must present the generation it claimed.
    generation  BIGINT NOT NULL DEFAULT 0,
    expires_at  TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
);
CREATE INDEX shard_leases_by_expiry ON shard_leases (expires_at);
CREATE INDEX shard_leases_by_owner ON shard_leases (owner);

-- Accepted, not yet released events, exactly as received: one row per ingest call and shard
-- (events first_seq..=last_seq), the records lz4-compressed and length-prefixed. A row per call
-- instead of per event keeps Postgres' per-row and WAL costs off the per-event path.
CREATE TABLE staged_chunks (
    shard_id     BIGINT NOT NULL REFERENCES shards (id),
    first_seq    BIGINT NOT NULL,
    last_seq     BIGINT NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL,
    records      BYTEA NOT NULL,
    PRIMARY KEY (shard_id, last_seq)
);
-- Already compressed: keep Postgres from trying again.
ALTER TABLE staged_chunks ALTER COLUMN records SET STORAGE EXTERNAL;

-- Event identities seen, for dedupe: weekly partitions by first sighting, so that expiry after the
-- dedupe horizon drops a partition instead of deleting rows.
-- event_key is the first 16 bytes of SHA-256(eventID): a compact fixed-size key (collisions are
-- as unlikely as for random UUIDs).
CREATE TABLE event_identities (
    recipient_account_id TEXT NOT NULL,
    event_key            UUID NOT NULL,
    first_seen           DATE NOT NULL,
    PRIMARY KEY (recipient_account_id, event_key, first_seen)
) PARTITION BY RANGE (first_seen);
CREATE TABLE event_identities_default PARTITION OF event_identities DEFAULT;

-- Accepted / duplicate / rejected counts per account (duplicates dropped are exposed here).
CREATE TABLE ingest_counters (
    account_id  TEXT PRIMARY KEY,
    accepted    BIGINT NOT NULL DEFAULT 0,
    duplicates  BIGINT NOT NULL DEFAULT 0,
    rejected    BIGINT NOT NULL DEFAULT 0
);

-- How far each trail has delivered each shard (exclusive of later events).
CREATE TABLE trail_cursors (
    trail_id       BIGINT NOT NULL REFERENCES trails (id) ON DELETE CASCADE,
    shard_id       BIGINT NOT NULL REFERENCES shards (id),
    delivered_seq  BIGINT NOT NULL,
    PRIMARY KEY (trail_id, shard_id)
);

-- A batch sealed before its PUT: key and bytes are fixed here, so a retry after any crash
-- uploads the same object. At most one outstanding batch per (trail, shard).
CREATE TABLE sealed_batches (
    -- No foreign key: a batch sealed for a trail deleted meanwhile must still be finished, so
    -- that no object exists in the bucket without its delivered_files row.
    trail_id           BIGINT NOT NULL,
    trail_arn          TEXT NOT NULL,
    shard_id           BIGINT NOT NULL REFERENCES shards (id),
    from_seq           BIGINT NOT NULL,
    to_seq             BIGINT NOT NULL,
    bucket             TEXT NOT NULL,
    object_key         TEXT NOT NULL,
    kms_key_id         TEXT NOT NULL DEFAULT '',
    sha256             BYTEA NOT NULL,
    body               BYTEA NOT NULL,
    record_count       INTEGER NOT NULL,
    oldest_event_time  TIMESTAMPTZ NOT NULL,
    newest_event_time  TIMESTAMPTZ NOT NULL,
    sealed_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (trail_id, shard_id)
);
-- The body is gzip already: keep Postgres from trying to compress it again.
ALTER TABLE sealed_batches ALTER COLUMN body SET STORAGE EXTERNAL;


-- Every object orgtrail put in a bucket. Kept after the trail is deleted (digests, audits).
CREATE TABLE delivered_files (
    id                 BIGSERIAL PRIMARY KEY,
    trail_id           BIGINT,
    trail_arn          TEXT NOT NULL,
    shard_id           BIGINT NOT NULL,
    account_id         TEXT NOT NULL,
    region             TEXT NOT NULL,
    from_seq           BIGINT NOT NULL,
    to_seq             BIGINT NOT NULL,
    bucket             TEXT NOT NULL,
    object_key         TEXT NOT NULL,
    sha256             BYTEA NOT NULL,
    size_bytes         BIGINT NOT NULL,
    record_count       INTEGER NOT NULL,
    oldest_event_time  TIMESTAMPTZ NOT NULL,
    newest_event_time  TIMESTAMPTZ NOT NULL,
    delivered_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (bucket, object_key)
);
CREATE INDEX delivered_files_by_trail ON delivered_files (trail_id, delivered_at);
