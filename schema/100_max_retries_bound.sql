-- 100_max_retries_bound.sql — at most 1000 retries for a job.
--
-- The CLI and the handler check allow 0 to 1000; the SQL functions took any
-- integer, and the backoff (base × 2^attempts) overflows past attempt 1025,
-- which failed the recording of a whole batch of runs. A job stored with more
-- is brought down to 1000 first: a CHECK is enforced on every update of a row,
-- so one such row left as it was would make every claim that includes it fail.

UPDATE sluice.scheduled_jobs SET max_retries = 1000 WHERE max_retries > 1000;

ALTER TABLE sluice.scheduled_jobs ADD CONSTRAINT scheduled_jobs_max_retries_at_most_1000
    CHECK (max_retries <= 1000);
