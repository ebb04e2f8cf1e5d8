-- The query log is stored in chunks: one row per writer batch and target (project, tenant or
-- workspace, database, source, user), with the records' fields in parallel arrays. A busy
-- tenant's hundreds of statements a batch cost the server one heap tuple, one index entry and
-- one compressed TOAST value instead of a row and an index entry each: about a tenth of the WAL
-- and a third of the CPU per record. The view `query_log` shows one row per record, as before.
CREATE TABLE query_log_chunk (
    id           bigserial,
    project_id   text NOT NULL,
    tenant       text,
    workspace    text,
    database     text NOT NULL,
    source       text NOT NULL CHECK (source IN ('proxy', 'api')),
    username     text NOT NULL,
    -- The oldest and newest start among the records.
    first_at     timestamptz NOT NULL,
    last_at      timestamptz NOT NULL,
    records      int NOT NULL,
    statements   text[] NOT NULL,
    durations_us int8[] NOT NULL,
    successes    bool[] NOT NULL,
    sqlstates    text[] NOT NULL,
    row_counts   int8[] NOT NULL,
    started      timestamptz[] NOT NULL,
    -- Every array holds one element per record.
    CHECK (records BETWEEN 1 AND 65535 AND cardinality(statements) = records
           AND cardinality(durations_us) = records AND cardinality(successes) = records
           AND cardinality(sqlstates) = records AND cardinality(row_counts) = records
           AND cardinality(started) = records)
);
-- A target's chunks by recency (its newest records first); retention by age.
CREATE INDEX query_log_chunk_tenant_idx ON query_log_chunk (project_id, tenant, last_at DESC);
CREATE INDEX query_log_chunk_workspace_idx ON query_log_chunk (project_id, workspace, last_at DESC)
    WHERE tenant IS NULL;
CREATE INDEX query_log_chunk_last_brin ON query_log_chunk USING brin (last_at);

-- No planner statistics for the arrays: nothing filters on them, and ANALYZE would decompress
-- every sampled chunk's arrays to build them.
ALTER TABLE query_log_chunk
    ALTER COLUMN statements SET STATISTICS 0, ALTER COLUMN durations_us SET STATISTICS 0,
    ALTER COLUMN successes SET STATISTICS 0, ALTER COLUMN sqlstates SET STATISTICS 0,
    ALTER COLUMN row_counts SET STATISTICS 0, ALTER COLUMN started SET STATISTICS 0;

-- lz4 compresses statement text several times faster than the default pglz, where the server
-- was built with it.
DO $$
BEGIN
    ALTER TABLE query_log_chunk ALTER COLUMN statements SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END
$$;

-- The records already logged, in chunks of at most 2,000 consecutive ones per target.
INSERT INTO query_log_chunk (project_id, tenant, workspace, database, source, username, first_at,
                             last_at, records, statements, durations_us, successes, sqlstates, row_counts,
                             started)
SELECT project_id, tenant, workspace, database, source, username, min(started_at),
       max(started_at), count(*), array_agg(statement ORDER BY id), array_agg(duration_us ORDER BY id),
       array_agg(success ORDER BY id), array_agg(sqlstate ORDER BY id),
       array_agg(rows ORDER BY id), array_agg(started_at ORDER BY id)
  FROM query_log
 GROUP BY project_id, tenant, workspace, database, source, username, id / 2000
 ORDER BY max(started_at);
DROP TABLE query_log;

-- One row per record. A record's id is its chunk's id and its place in the chunk, so ids stay
-- unique and grow with the order records were written in.
CREATE VIEW query_log AS
SELECT (c.id << 16) | r.ord AS id, c.project_id, c.tenant, c.workspace, c.database, c.source,
       c.username, r.statement, r.duration_us, r.success, r.sqlstate, r.rows, r.started_at,
       c.last_at AS chunk_last_at
  FROM query_log_chunk c
 CROSS JOIN LATERAL unnest(c.statements, c.durations_us, c.successes, c.sqlstates, c.row_counts,
                           c.started)
       WITH ORDINALITY AS r(statement, duration_us, success, sqlstate, rows, started_at, ord);
