-- 100_max_retries_bound.sql — at most 1000 retries for a job.
--
-- The CLI and the handler check allow 0 to 1000; the SQL functions took any
-- integer, and the backoff (base × 2^attempts) overflows past attempt 1025,
-- which failed the recording of a whole batch of runs. NOT VALID: rows already
-- stored are not checked.

ALTER TABLE sluice.scheduled_jobs ADD CONSTRAINT scheduled_jobs_max_retries_at_most_1000
    CHECK (max_retries <= 1000) NOT VALID;
