DROP TABLE IF EXISTS untaken_counters;
