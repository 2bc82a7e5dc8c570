-- Alert rules (issue 6 part 3): user rules, enabled built-in packs, the outbox of matched alerts
-- written by the worker's "rules" tap, and the dead letters of alerts that could not be delivered.

CREATE TABLE alert_rules (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    -- 'event_pattern' (EventBridge pattern JSON) or 'sigma' (one Sigma rule, YAML), as given.
    kind TEXT NOT NULL CHECK (kind IN ('event_pattern', 'sigma')),
    definition TEXT NOT NULL,
    -- Scope: empty arrays mean every account / region.
    account_ids TEXT[] NOT NULL DEFAULT '{}',
    regions TEXT[] NOT NULL DEFAULT '{}',
    target_kind TEXT NOT NULL CHECK (target_kind IN ('log', 'webhook')),
    webhook_url TEXT,
    -- The HMAC secret, sealed by the master key (AES-256-GCM).
    webhook_secret BYTEA,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A row per enabled built-in pack (the packs themselves are in the code).
CREATE TABLE alert_rule_packs (
    name TEXT PRIMARY KEY,
    target_kind TEXT NOT NULL CHECK (target_kind IN ('log', 'webhook')),
    webhook_url TEXT,
    webhook_secret BYTEA,
    enabled_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Moves on every change to rules or packs: workers reload their rules when it does.
CREATE TABLE alert_rules_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version BIGINT NOT NULL
);
INSERT INTO alert_rules_version (singleton, version) VALUES (TRUE, 0);

-- Alerts to send, written in the rules tap's transaction (one per shard event and rule), deleted
-- when delivered. The target is copied so a later rule change does not redirect a pending alert.
CREATE TABLE alert_outbox (
    id BIGSERIAL PRIMARY KEY,
    shard_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    rule_name TEXT NOT NULL,
    target_kind TEXT NOT NULL CHECK (target_kind IN ('log', 'webhook')),
    webhook_url TEXT,
    webhook_secret BYTEA,
    -- The exact JSON body sent (and signed).
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error TEXT,
    UNIQUE (shard_id, seq, rule_name)
);
CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at, id);

-- Alerts given up on after the configured number of attempts.
CREATE TABLE alert_dead_letters (
    id BIGINT PRIMARY KEY,
    rule_name TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    webhook_url TEXT,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    failed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
