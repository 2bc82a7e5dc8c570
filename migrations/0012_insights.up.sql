-- CloudTrail Insights: per-minute counts of the calls and errors each (account, region, category,
-- event source, event name) saw, attribution tallies, and the detector's durable state.
-- Counts are written by the "insights" tap in the transaction that advances its cursor (exactly
-- once); rows older than the baseline window are deleted in bulk by the detector.

CREATE TABLE insight_counts (
    account_id    TEXT NOT NULL,
    region        TEXT NOT NULL,
    -- 'Management' or 'Data': the category the counted events belong to.
    category      TEXT NOT NULL,
    event_source  TEXT NOT NULL,
    event_name    TEXT NOT NULL,
    -- The minute of eventTime (truncated).
    minute        TIMESTAMPTZ NOT NULL,
    -- Calls ApiCallRateInsight analyses: write management events, all data events.
    calls         BIGINT NOT NULL DEFAULT 0,
    -- Calls ApiErrorRateInsight analyses: management and data events with an errorCode.
    errors        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, region, category, event_source, event_name, minute)
);
CREATE INDEX insight_counts_by_minute ON insight_counts (account_id, region, minute);
CREATE INDEX insight_counts_expiry ON insight_counts (minute);

CREATE TABLE insight_attributions (
    account_id    TEXT NOT NULL,
    region        TEXT NOT NULL,
    category      TEXT NOT NULL,
    event_source  TEXT NOT NULL,
    event_name    TEXT NOT NULL,
    minute        TIMESTAMPTZ NOT NULL,
    -- 'userIdentityArn', 'userAgent' or 'errorCode'.
    attribute     TEXT NOT NULL,
    -- The attribute's value; errorCode 'null' for calls without an error.
    value         TEXT NOT NULL,
    calls         BIGINT NOT NULL DEFAULT 0,
    errors        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, region, category, event_source, event_name, minute, attribute, value)
);
CREATE INDEX insight_attributions_expiry ON insight_attributions (minute);

-- One row per (account, region) that ever had a counted event.
CREATE TABLE insight_scopes (
    account_id         TEXT NOT NULL,
    region             TEXT NOT NULL,
    -- The oldest minute counted: a minute is judged only when its whole baseline lies after this.
    first_minute       TIMESTAMPTZ NOT NULL,
    -- The last minute the detector judged; NULL until a trail with insight selectors covers it.
    evaluated_through  TIMESTAMPTZ,
    PRIMARY KEY (account_id, region)
);

-- Insights the detector opened (end_minute NULL while open) and closed.
CREATE TABLE insights (
    shared_event_id     UUID PRIMARY KEY,
    account_id          TEXT NOT NULL,
    region              TEXT NOT NULL,
    insight_type        TEXT NOT NULL,
    category            TEXT NOT NULL,
    event_source        TEXT NOT NULL,
    event_name          TEXT NOT NULL,
    start_minute        TIMESTAMPTZ NOT NULL,
    -- Frozen at the start: the baseline's mean and the threshold the insight is judged against.
    baseline_average    DOUBLE PRECISION NOT NULL,
    threshold           DOUBLE PRECISION NOT NULL,
    -- Sum of the counts from the start through the last anomalous minute.
    insight_sum         BIGINT NOT NULL,
    last_anomalous      TIMESTAMPTZ NOT NULL,
    -- The current run of non-anomalous minutes and their counts.
    quiet_minutes       INTEGER NOT NULL DEFAULT 0,
    quiet_sum           BIGINT NOT NULL DEFAULT 0,
    start_staged_at     TIMESTAMPTZ NOT NULL,
    -- Set when the End record was staged.
    end_minute          TIMESTAMPTZ,
    end_staged_at       TIMESTAMPTZ
);
CREATE UNIQUE INDEX insights_one_open
    ON insights (account_id, region, insight_type, category, event_source, event_name)
    WHERE end_minute IS NULL;
CREATE INDEX insights_expiry ON insights (end_minute) WHERE end_minute IS NOT NULL;
