-- The query log is written once per statement and read through its tenant and workspace
-- indexes, never by id: the primary-key index was maintained on every record for nothing. Ids
-- stay unique (they come from the sequence) and still order records written at the same time.
ALTER TABLE query_log DROP CONSTRAINT query_log_pkey;
