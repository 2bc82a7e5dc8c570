ALTER TABLE shards RESET (fillfactor);
ALTER TABLE trail_cursors RESET (fillfactor);
ALTER TABLE tap_cursors RESET (fillfactor);
ALTER TABLE ingest_counters RESET (fillfactor);
