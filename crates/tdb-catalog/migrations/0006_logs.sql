-- Reading the query log: a workspace's records by recency, and retention by age. The tenant
-- index from 0004 serves a tenant's pages and its aggregates.
CREATE INDEX query_log_workspace_idx ON query_log (project_id, workspace, started_at DESC)
    WHERE tenant IS NULL;
-- Rows arrive in time order, so a BRIN index finds the old ones for retention at almost no
-- cost to the writer.
CREATE INDEX query_log_started_brin ON query_log USING brin (started_at);
