-- One outbox for everything a worker sends after a transaction commits (alerts to webhooks or the
-- log, delivery notifications to SNS topics), keyed by kind. A row is written in the transaction
-- that decides it must be sent, deleted once sent; `dedupe_key` makes a repeated decision (a tap
-- replaying its events, a retried delivery) one row. Replaces alert_outbox and notification_outbox.
CREATE TABLE outbox (
    id               BIGSERIAL PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('alert', 'notification')),
    dedupe_key       TEXT NOT NULL,
    -- What to send, as the kind's sender reads it.
    payload          JSONB NOT NULL,
    -- A secret the sender needs (an alert's webhook secret, encrypted under the master key).
    secret           BYTEA,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error       TEXT,
    UNIQUE (kind, dedupe_key)
);
CREATE INDEX outbox_due ON outbox (kind, next_attempt_at, id);

INSERT INTO outbox (kind, dedupe_key, payload, secret, created_at, attempts, next_attempt_at, last_error)
SELECT 'alert', shard_id || ':' || seq || ':' || rule_name,
       jsonb_build_object('rule_name', rule_name, 'target_kind', target_kind, 'webhook_url', webhook_url,
                          'body', body),
       webhook_secret, created_at, attempts, next_attempt_at, last_error
FROM alert_outbox;

INSERT INTO outbox (kind, dedupe_key, payload, created_at, attempts, next_attempt_at, last_error)
SELECT 'notification', trail_id || ':' || bucket || ':' || object_key,
       jsonb_build_object('trail_id', trail_id, 'bucket', bucket, 'object_key', object_key),
       created_at, attempts, next_attempt_at, last_error
FROM notification_outbox;

-- Dead letters keep the id an alert had in the outbox; new ids must not collide with old ones.
SELECT setval('outbox_id_seq', greatest((SELECT coalesce(max(id), 0) FROM alert_dead_letters),
                                        (SELECT coalesce(max(id), 0) FROM outbox), 1));

DROP TABLE alert_outbox;
DROP TABLE notification_outbox;
