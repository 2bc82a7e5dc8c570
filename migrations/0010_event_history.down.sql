DROP TABLE event_history_resources;
DROP TABLE event_history;
