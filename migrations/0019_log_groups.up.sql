-- The JetStream staging backend: every group of ingest calls it commits. A chunk in a stream
-- counts only once its group is here (committed with the group's identities and heads); a chunk
-- whose group never committed (the process died between the log write and the commit, and no caller
-- was acknowledged) is skipped by readers and purged with its subject.
CREATE TABLE staged_groups (
    id            UUID PRIMARY KEY,
    committed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX staged_groups_by_time ON staged_groups (committed_at);
