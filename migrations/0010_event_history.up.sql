-- Event history (CloudTrail's LookupEvents): every management and Insights event, kept for the
-- retention window in weekly partitions on event_time, so that expiry drops partitions instead of
-- deleting rows. The maintenance pass creates partitions ahead (and for weeks a backfill reaches)
-- and drops those past the retention; the default partitions take events outside the window (old
-- backfills, clocks far ahead) and are trimmed by the same pass.
--
-- Newest first is (event_time DESC, id DESC); every lookup index ends with those two columns, so
-- a page is one ordered index range. `insight` is part of the keys because a lookup asks either
-- for Insights or for everything else, never both.
CREATE SEQUENCE event_history_id_seq AS BIGINT;

CREATE TABLE event_history (
    id             BIGINT NOT NULL DEFAULT nextval('event_history_id_seq'),
    event_time     TIMESTAMPTZ NOT NULL,
    account_id     TEXT NOT NULL,
    region         TEXT NOT NULL,
    insight        BOOLEAN NOT NULL,
    event_id       TEXT NOT NULL,
    event_name     TEXT NOT NULL,
    event_source   TEXT NOT NULL,
    read_only      BOOLEAN,
    username       TEXT,
    access_key_id  TEXT,
    -- The record exactly as staged (and delivered): LookupEvents' CloudTrailEvent.
    record         TEXT COMPRESSION lz4 NOT NULL,
    -- Joins from the resource postings.
    PRIMARY KEY (id, event_time),
    -- Re-delivery of an event (same account, eventID and time) is one row; also the EventId lookup.
    UNIQUE (event_id, account_id, event_time)
) PARTITION BY RANGE (event_time);
ALTER SEQUENCE event_history_id_seq OWNED BY event_history.id;

CREATE INDEX event_history_by_time ON event_history (insight, event_time DESC, id DESC);
CREATE INDEX event_history_by_account ON event_history (account_id, insight, event_time DESC, id DESC);
CREATE INDEX event_history_by_name ON event_history (event_name, insight, event_time DESC, id DESC);
CREATE INDEX event_history_by_source ON event_history (event_source, insight, event_time DESC, id DESC);
-- Insights have no identity or readOnly: these keys are NULL for them.
CREATE INDEX event_history_by_username ON event_history (username, event_time DESC, id DESC)
    WHERE username IS NOT NULL;
CREATE INDEX event_history_by_access_key ON event_history (access_key_id, event_time DESC, id DESC)
    WHERE access_key_id IS NOT NULL;
CREATE INDEX event_history_by_read_only ON event_history (read_only, event_time DESC, id DESC)
    WHERE read_only IS NOT NULL;

CREATE TABLE event_history_default PARTITION OF event_history DEFAULT;

-- An event has any number of resources: one posting per distinct (kind, value) of an event,
-- kind 'T' for resources[].type (ResourceType) and 'N' for resources[].ARN (ResourceName).
-- Partitioned like event_history, dropped with it.
CREATE TABLE event_history_resources (
    event_time  TIMESTAMPTZ NOT NULL,
    id          BIGINT NOT NULL,
    account_id  TEXT NOT NULL,
    region      TEXT NOT NULL,
    kind        "char" NOT NULL CHECK (kind IN ('T', 'N')),
    value       TEXT NOT NULL
) PARTITION BY RANGE (event_time);
CREATE INDEX event_history_resources_by_value
    ON event_history_resources (kind, value, event_time DESC, id DESC);
-- Member lookups are always of one account: without this they would filter a common resource
-- type's postings of every account.
CREATE INDEX event_history_resources_by_account
    ON event_history_resources (account_id, kind, value, event_time DESC, id DESC);
CREATE TABLE event_history_resources_default PARTITION OF event_history_resources DEFAULT;
