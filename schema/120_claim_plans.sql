-- 120_claim_plans.sql — a claim plans its statements once per connection.
--
-- plpgsql plans a statement with parameters for each call's values five
-- times, then keeps one "generic" plan if it does not look dearer than those.
-- Two of a claim's statements depend on values that change the estimate: the
-- LIMIT of the due-jobs query and the array of ids start_runs() updates. For
-- a claim of one job a plan of its own always looks cheaper, so whether a
-- connection settled on the generic plan depended on its first calls, and
-- where it did not every claim planned both statements again: 0.17 and
-- 0.41 ms of a backend (pg_stat_statements), about half of what claiming one
-- job costs, on the path from an enqueue to the start of its run.
--
-- Both functions now use the generic plan always. Their generic plans are the
-- per-call ones' shapes at any size: the due jobs are read in order from the
-- partial index that holds them, and the claimed jobs by primary key. The one
-- size that misled it was a table still empty when a connection first
-- planned (a young database): updating by a list of ids was then a
-- sequential scan, which the plan would keep until the next ANALYZE. So
-- start_runs() plans with sequential scans off; the tables it would still
-- scan whole (job types, their datasets) are small and have primary keys to
-- look up instead.

ALTER FUNCTION sluice.claim_jobs(uuid, integer, double precision)
    SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION sluice.start_runs(uuid, uuid[], double precision)
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off;
