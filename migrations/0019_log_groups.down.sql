DROP TABLE staged_groups;
