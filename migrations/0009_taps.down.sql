DROP TABLE tap_cursors;
