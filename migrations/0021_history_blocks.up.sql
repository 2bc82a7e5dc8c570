-- Event history records in blocks: sixteen records of one week deflated together
-- (src/features/history/blocks.rs) instead of one lz4 value per row, ~220 bytes a record instead
-- of ~1,450 for real records. A row names its block and slot; rows written before this
-- migration (and by the lookup benchmark's SQL filler) keep their record inline.
--
-- A block's events all fall in one week and event_time is the newest of them, so a block lives
-- in the same weekly partition as its rows and is expired with them (never before one of them).
CREATE SEQUENCE event_history_blocks_id_seq AS BIGINT;

CREATE TABLE event_history_blocks (
    id          BIGINT NOT NULL DEFAULT nextval('event_history_blocks_id_seq'),
    event_time  TIMESTAMPTZ NOT NULL,
    records     BYTEA NOT NULL,
    PRIMARY KEY (id, event_time)
) PARTITION BY RANGE (event_time);
ALTER SEQUENCE event_history_blocks_id_seq OWNED BY event_history_blocks.id;
-- Deflated already: never compressed again, and kept in line up to a page (toast_tuple_target
-- on each partition) rather than moved to TOAST at 2 kB.
ALTER TABLE event_history_blocks ALTER COLUMN records SET STORAGE EXTERNAL;
CREATE TABLE event_history_blocks_default PARTITION OF event_history_blocks DEFAULT
    WITH (toast_tuple_target = 8160);

ALTER TABLE event_history ALTER COLUMN record DROP NOT NULL;
ALTER TABLE event_history ADD COLUMN block_id BIGINT, ADD COLUMN block_slot SMALLINT;
