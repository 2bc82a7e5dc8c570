-- Delivery notifications (issue 9): an outbox row per delivered log file of a trail with an SNS
-- topic, written in the transaction that records the file (so none is lost or doubled by a
-- retried delivery), deleted once published. The topic is read from the trail when publishing,
-- so fixing a wrong topic sends the pending notifications; a deleted trail takes its rows along.
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
