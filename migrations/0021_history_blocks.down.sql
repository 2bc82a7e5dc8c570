-- Records written in blocks cannot be inflated back in SQL: the rows that have them, and their
-- resource postings, are dropped.
DELETE FROM event_history_resources r USING event_history h
    WHERE h.record IS NULL AND r.id = h.id AND r.event_time = h.event_time;
DELETE FROM event_history WHERE record IS NULL;
ALTER TABLE event_history DROP COLUMN block_id, DROP COLUMN block_slot;
ALTER TABLE event_history ALTER COLUMN record SET NOT NULL;
DROP TABLE event_history_blocks;
