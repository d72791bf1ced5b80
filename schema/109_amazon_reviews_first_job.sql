-- 109_amazon_reviews_first_job.sql — a stored Amazon review names the job that
-- first stored it.
--
-- amazon_review_scrape counted its new reviews from what each write answered
-- (an insert, not an update), summed in the job's checkpoint. A write whose
-- checkpoint was not saved after it (the worker died, the checkpoint or a later
-- statement failed) had its reviews written again by the retry, as updates,
-- and they were counted new by no attempt. first_job_id is set when a review is
-- inserted and never changed; the job counts its new reviews from the stored
-- rows, as it counts the reviews it received from job_id (the last writer).
-- Rows stored before this migration have it NULL.

ALTER TABLE public.competitor_amazon_reviews ADD COLUMN IF NOT EXISTS first_job_id uuid;
