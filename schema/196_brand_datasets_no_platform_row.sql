-- 196_brand_datasets_no_platform_row.sql — a type whose brand is required
-- never keeps freshness under the platform scope.
--
-- `sluice run TYPE` without --brand (and the REPL's run()) may run a type whose
-- brand is required: it is the seed's direct mode, for research that belongs
-- to no brand yet. Its datasets are the brand's, though, and the run settled
-- them under a platform row (brand_id NULL) that no platform scope has — a
-- row saying, say, that "brand things" were fresh when no brand's were. The
-- shipped amazon_review_scrape skipped its dataset by hand in such a run; a
-- custom handler did not know to.
--
-- The rule now holds where the rows are written, for every statement that
-- writes them (a run's start, its end, a skip's restore): a platform row for a
-- job of a brand-required type is not written, and one already there is left
-- as it is (an UPDATE of it does nothing). The WHEN clause keeps the trigger
-- off every brand's row, so only platform rows pay for the look-up. Rows that
-- older versions made this way are removed.

CREATE FUNCTION sluice.dataset_status_platform_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM sluice.scheduled_jobs j
               JOIN sluice.job_types t ON t.name = j.job_type
               WHERE j.id = NEW.source_job_id AND t.brand_rule = 'required') THEN
        RETURN NULL; -- the brand's dataset: no platform freshness
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER dataset_status_platform_guard
    BEFORE INSERT OR UPDATE ON sluice.dataset_status
    FOR EACH ROW WHEN (NEW.brand_id IS NULL AND NEW.source_job_id IS NOT NULL)
    EXECUTE FUNCTION sluice.dataset_status_platform_guard();

DELETE FROM sluice.dataset_status s
USING sluice.scheduled_jobs j, sluice.job_types t
WHERE s.brand_id IS NULL AND j.id = s.source_job_id AND t.name = j.job_type
  AND t.brand_rule = 'required';
