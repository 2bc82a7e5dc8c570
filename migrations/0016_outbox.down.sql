CREATE TABLE alert_outbox (
    id BIGSERIAL PRIMARY KEY,
    shard_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    rule_name TEXT NOT NULL,
    target_kind TEXT NOT NULL CHECK (target_kind IN ('log', 'webhook')),
    webhook_url TEXT,
    webhook_secret BYTEA,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error TEXT,
    UNIQUE (shard_id, seq, rule_name)
);
CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at, id);
CREATE TABLE notification_outbox (
    id BIGSERIAL PRIMARY KEY,
    trail_id BIGINT NOT NULL REFERENCES trails (id) ON DELETE CASCADE,
    bucket TEXT NOT NULL,
    object_key TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error TEXT,
    UNIQUE (trail_id, bucket, object_key)
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at, id);
INSERT INTO alert_outbox (id, shard_id, seq, rule_name, target_kind, webhook_url, webhook_secret, body,
                          created_at, attempts, next_attempt_at, last_error)
SELECT id, split_part(dedupe_key, ':', 1)::bigint, split_part(dedupe_key, ':', 2)::bigint,
       payload->>'rule_name', payload->>'target_kind', payload->>'webhook_url', secret, payload->>'body',
       created_at, attempts, next_attempt_at, last_error
FROM outbox WHERE kind = 'alert';
INSERT INTO notification_outbox (id, trail_id, bucket, object_key, created_at, attempts, next_attempt_at, last_error)
SELECT o.id, (payload->>'trail_id')::bigint, payload->>'bucket', payload->>'object_key', o.created_at,
       o.attempts, o.next_attempt_at, o.last_error
FROM outbox o WHERE kind = 'notification' AND EXISTS (SELECT 1 FROM trails t WHERE t.id = (payload->>'trail_id')::bigint);
DROP TABLE outbox;
