DROP TABLE collector_cursors;
DROP TABLE collector_status;
ALTER TABLE accounts DROP COLUMN collector;
