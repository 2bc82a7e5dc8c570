DROP INDEX event_history_by_event_id;
CREATE INDEX event_history_by_read_only ON event_history (read_only, event_time DESC, id DESC)
    WHERE read_only IS NOT NULL;
ALTER TABLE event_history ADD CONSTRAINT event_history_event_id_account_id_event_time_key
    UNIQUE (event_id, account_id, event_time);
