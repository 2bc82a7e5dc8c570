-- Control plane: the organization, its member accounts, trails and API tokens.

CREATE TABLE organizations (
    -- One organization per deployment: the check makes a second row impossible.
    singleton             BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    id                    TEXT NOT NULL UNIQUE,
    management_account_id TEXT NOT NULL,
    regions               TEXT[] NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    account_id          TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    email               TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'REMOVED')),
    registration_source TEXT NOT NULL CHECK (registration_source IN ('MANUAL', 'BOOTSTRAP', 'AWS_ORGANIZATIONS')),
    joined_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE trails (
    id                             BIGSERIAL PRIMARY KEY,
    owner_account_id               TEXT NOT NULL,
    name                           TEXT NOT NULL,
    home_region                    TEXT NOT NULL,
    s3_bucket_name                 TEXT NOT NULL,
    s3_key_prefix                  TEXT NOT NULL DEFAULT '',
    is_multi_region_trail          BOOLEAN NOT NULL,
    include_global_service_events  BOOLEAN NOT NULL,
    is_organization_trail          BOOLEAN NOT NULL,
    log_file_validation_enabled    BOOLEAN NOT NULL,
    cloud_watch_logs_log_group_arn TEXT NOT NULL DEFAULT '',
    cloud_watch_logs_role_arn      TEXT NOT NULL DEFAULT '',
    kms_key_id                     TEXT NOT NULL DEFAULT '',
    sns_topic_name                 TEXT NOT NULL DEFAULT '',
    tags                           JSONB NOT NULL DEFAULT '[]',
    -- CloudTrail JSON shapes; both NULL means the default selector (all management events).
    event_selectors                JSONB,
    advanced_event_selectors       JSONB,
    insight_selectors              JSONB NOT NULL DEFAULT '[]',
    is_logging                     BOOLEAN NOT NULL DEFAULT FALSE,
    start_logging_at               TIMESTAMPTZ,
    stop_logging_at                TIMESTAMPTZ,
    created_at                     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A trail name is unique within its owner account, across regions (as CloudTrail's ARNs allow
    -- the name to be used to address the trail from any region).
    UNIQUE (owner_account_id, name),
    CHECK (event_selectors IS NULL OR advanced_event_selectors IS NULL)
);

CREATE INDEX trails_by_owner_region ON trails (owner_account_id, home_region);

-- Delivery outcomes, written by workers; the control plane only reads them (GetTrailStatus).
CREATE TABLE trail_delivery_status (
    trail_id                              BIGINT PRIMARY KEY REFERENCES trails (id) ON DELETE CASCADE,
    latest_delivery_time                  TIMESTAMPTZ,
    latest_delivery_attempt_time          TIMESTAMPTZ,
    latest_delivery_error                 TEXT NOT NULL DEFAULT '',
    latest_digest_delivery_time           TIMESTAMPTZ,
    latest_digest_delivery_error          TEXT NOT NULL DEFAULT '',
    latest_notification_time              TIMESTAMPTZ,
    latest_notification_error             TEXT NOT NULL DEFAULT '',
    latest_cloud_watch_logs_delivery_time TIMESTAMPTZ,
    latest_cloud_watch_logs_delivery_error TEXT NOT NULL DEFAULT ''
);

CREATE TABLE api_tokens (
    id                            UUID PRIMARY KEY,
    name                          TEXT NOT NULL,
    role                          TEXT NOT NULL CHECK (role IN ('admin', 'auditor', 'member')),
    account_id                    TEXT,
    -- SHA-256 of the bearer secret; the secret itself is never stored.
    token_hash                    BYTEA NOT NULL UNIQUE,
    access_key_id                 TEXT UNIQUE,
    -- AES-256-GCM (nonce || ciphertext) under the deployment's master key: SigV4 needs the secret back.
    secret_access_key_ciphertext  BYTEA,
    created_at                    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at                    TIMESTAMPTZ,
    revoked_at                    TIMESTAMPTZ,
    CHECK ((role = 'member') = (account_id IS NOT NULL)),
    CHECK ((access_key_id IS NULL) = (secret_access_key_ciphertext IS NULL))
);
