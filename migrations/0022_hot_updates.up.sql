-- Rows rewritten on every delivery round or ingest call (a shard's sequence counter, its trail and
-- tap cursors, an account's ingest counters) get room on their page, so that an update is a HOT
-- one: the new version stays on the page and no index gets a new entry. At the default fill of
-- 100%, over half of the tap cursor updates were not (pg_stat_user_tables, `orgtrail bench
-- pipeline --profile-postgres`). These tables hold one row per shard, trail × shard, or account:
-- doubling their pages costs little. Pages already full get the room as they are rewritten.
ALTER TABLE shards SET (fillfactor = 50);
ALTER TABLE trail_cursors SET (fillfactor = 50);
ALTER TABLE tap_cursors SET (fillfactor = 50);
ALTER TABLE ingest_counters SET (fillfactor = 50);
