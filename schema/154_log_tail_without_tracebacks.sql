-- 154_log_tail_without_tracebacks.sql — recent_runs.log_tail leaves tracebacks out.
--
-- A run whose handler raised ends its log with the error and its traceback,
-- one log entry of several lines:
--
--   19:00:16.677 step 1-2 (meta_ads_performance): graph error 2 (HTTP 500): …
--   stack traceback:
--   	[C]: in function 'error'
--   	…/handlers/meta_sync.lua:390: in function <…/handlers/meta_sync.lua:335>
--   	(...tail calls...)
--
-- log_tail, the last three lines a page shows under a run, was the last three
-- frames for every failed run: file names and line numbers instead of what the
-- run did. Now the "stack traceback:" line and the tab-indented frame lines
-- under it are left out (they stay in the log: `sluice show` prints it whole);
-- any other line counts as before.

CREATE OR REPLACE FUNCTION sluice.log_tail(p_logs text, p_lines integer DEFAULT 3)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    WITH l AS (
        SELECT line, n
        FROM regexp_split_to_table(coalesce(p_logs, ''), E'\n') WITH ORDINALITY AS l(line, n)
    ), anchored AS (
        -- each line with the last line at or before it that is not tab-indented
        SELECT line, n,
               max(n) FILTER (WHERE left(line, 1) <> E'\t') OVER (ORDER BY n) AS anchor
        FROM l
    ), kept AS (
        SELECT a.line, a.n
        FROM anchored a LEFT JOIN l h ON h.n = a.anchor
        WHERE btrim(a.line) <> ''
          AND a.line <> 'stack traceback:'
          AND NOT (left(a.line, 1) = E'\t' AND h.line = 'stack traceback:')
    )
    SELECT string_agg(line, E'\n' ORDER BY n)
    FROM (SELECT line, n, row_number() OVER (ORDER BY n DESC) AS from_end FROM kept) t
    WHERE from_end <= p_lines
$$;
