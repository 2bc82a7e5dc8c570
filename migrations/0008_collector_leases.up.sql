-- Pull collectors: which worker runs the collector of (account, source, region). A lease, like a
-- shard's: held while renewed, taken over once expired; cursor writes check it (fencing), so a
-- worker that lost its lease can no longer move the cursor.
CREATE TABLE collector_leases (
    account_id  TEXT NOT NULL,
    source      TEXT NOT NULL,
    region      TEXT NOT NULL,
    holder      TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, source, region)
);
