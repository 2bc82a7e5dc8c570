ALTER TABLE accounts DROP COLUMN enrollment_id;
DROP TABLE enrollments;
