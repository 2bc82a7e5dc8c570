-- Enrollment tokens: single-use, short-lived secrets with which a member account registers itself
-- (`orgtrail bootstrap`).

CREATE TABLE enrollments (
    id                    UUID PRIMARY KEY,
    -- SHA-256 of the enrollment secret; the secret itself is never stored.
    token_hash            BYTEA NOT NULL UNIQUE,
    -- The ExternalId the member's role must require, generated per enrollment.
    external_id           TEXT NOT NULL,
    -- The principal the member's role must trust, fixed when the token is issued so that what
    -- DescribeEnrollment told the member is what Enroll checks.
    aggregator_principal  TEXT NOT NULL,
    -- Only this account may enroll; NULL: any account.
    pinned_account_id     TEXT,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at            TIMESTAMPTZ NOT NULL,
    used_at               TIMESTAMPTZ,
    used_by_account_id    TEXT,
    member_token_id       UUID REFERENCES api_tokens (id) ON DELETE SET NULL,
    CHECK ((used_at IS NULL) = (used_by_account_id IS NULL))
);

-- Which enrollment an account came from (NULL: registered another way).
ALTER TABLE accounts ADD COLUMN enrollment_id UUID REFERENCES enrollments (id) ON DELETE SET NULL;
