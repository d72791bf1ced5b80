-- 093_runs_fillfactor.sql — room on a run's page for its finished version.
--
-- Finishing a run (and renewing its lease) changes no indexed column, so it can
-- be a HOT update: the new version goes on the same page and no index entry is
-- written — but only if the page has room for it. Runs are inserted in batches
-- and finished together moments later; at fillfactor 80 the pages a claim had
-- filled had room for a fifth of their runs' new versions, and seven finishes
-- in ten were full updates (an entry in each of the runs' three indexes, and
-- the dead ones to clean up later). At 40 every run of a page can be finished in
-- place; the page is then pruned to its finished rows, so a finished run costs
-- about twice its size on disk; W1 (bench/) ran 10–20 % faster.
-- Applies to pages written from now on.

ALTER TABLE sluice.scheduled_job_runs SET (fillfactor = 40);
