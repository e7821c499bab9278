-- The projection rebuild no longer swaps its rows in one function call taking every row as
-- arrays: it loads them by COPY, in batches, inside one transaction that deletes the tenant's
-- rows first and checks the head last (src/projections/rebuild.rs), so its memory no longer
-- grows with the log. The swap function of `…0006` has no caller. On Citus it is a
-- distributed function, whose DROP the coordinator sends to every worker.
DROP FUNCTION coursetrail_replace_projections;
