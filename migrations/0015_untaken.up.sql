-- Acknowledged events that no trail took (every trail covering the account saw them and none
-- selected them, or no trail covers the account), counted when they leave staging: what tells an
-- operator that an acknowledged Insights record or data event was never going to be delivered.
CREATE TABLE untaken_counters (
    account_id  TEXT NOT NULL,
    category    TEXT NOT NULL,
    events      BIGINT NOT NULL DEFAULT 0,
    latest_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, category)
);
