-- AWS Organizations sync: its latest outcome, and which suspensions it made (so that it lifts only
-- those when AWS reports the account ACTIVE again, never an admin's).

CREATE TABLE org_sync_status (
    -- One row per deployment, like organizations.
    singleton          BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    last_sync_at       TIMESTAMPTZ NOT NULL,
    last_error         TEXT NOT NULL DEFAULT '',
    last_success_at    TIMESTAMPTZ,
    registered         INTEGER NOT NULL DEFAULT 0,
    reactivated        INTEGER NOT NULL DEFAULT 0,
    suspended          INTEGER NOT NULL DEFAULT 0,
    removed            INTEGER NOT NULL DEFAULT 0,
    unchanged          INTEGER NOT NULL DEFAULT 0
);

ALTER TABLE accounts ADD COLUMN suspended_by_org_sync BOOLEAN NOT NULL DEFAULT FALSE;
