-- The chunk arrays other than the statements were compressed with the server's default, pglz.
-- On a chunk of 3,850 TPC-B records, a binary COPY took 5-7 ms with pglz on those five arrays and
-- about 2 ms with lz4 on all six, for about the same size on disk: under a busy proxy that was
-- most of the server's CPU for the log. New chunks use lz4 where the server was built with it.
DO $$
BEGIN
    ALTER TABLE query_log_chunk
        ALTER COLUMN durations_us SET COMPRESSION lz4, ALTER COLUMN successes SET COMPRESSION lz4,
        ALTER COLUMN sqlstates SET COMPRESSION lz4, ALTER COLUMN row_counts SET COMPRESSION lz4,
        ALTER COLUMN started SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END
$$;

-- Chunks are written once and deleted whole by retention. A vacuum after inserts would only
-- mark the new pages (and their TOAST pages) all-visible, which nothing here reads, and dirty
-- them again while the proxy is busy. Deletes still start vacuums as on any table.
-- (Servers before 13 have no such setting and never start such vacuums.)
DO $$
BEGIN
    ALTER TABLE query_log_chunk SET (autovacuum_vacuum_insert_threshold = -1,
                                     toast.autovacuum_vacuum_insert_threshold = -1);
EXCEPTION WHEN invalid_parameter_value THEN
    NULL;
END
$$;
