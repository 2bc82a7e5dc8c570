-- A leaner event history: two index entries fewer per event, and no uniqueness check on insert.
--
-- Uniqueness was the costliest entry (a random B-tree insertion over eventID, account and time,
-- ~110 bytes, checked on every insert) and guarded against a case the pipeline already rules
-- out: the history tap indexes a shard's events in the transaction that moves its cursor past
-- them, under the shard's lease fence, and ingest admits an event identity once per dedupe
-- horizon. The EventId lookup keeps its own index, a hash one (equality is all it needs: ~38
-- bytes an entry, no key comparisons).
--
-- ReadOnly has two values: a lookup of it walks the time index and filters, which finds a page
-- within a few hundred entries unless one value is very rare.
ALTER TABLE event_history DROP CONSTRAINT event_history_event_id_account_id_event_time_key;
DROP INDEX event_history_by_read_only;
CREATE INDEX event_history_by_event_id ON event_history USING hash (event_id);
