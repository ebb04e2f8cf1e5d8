-- The PostgreSQL proxy: a read-only role per tenant database, and the query log.

-- Tenant databases created before this migration have no read role; read credentials are
-- refused on them with a clear error.
ALTER TABLE tenant_databases
    ADD COLUMN read_role   text UNIQUE,
    ADD COLUMN read_secret bytea;

-- Every statement the proxy relays. Written in batches off the hot path; no foreign keys, so a
-- batch never fails because a tenant was deleted meanwhile (project deletion removes its rows).
CREATE TABLE query_log (
    id          bigserial PRIMARY KEY,
    project_id  text NOT NULL,
    tenant      text,
    workspace   text,
    database    text NOT NULL,
    source      text NOT NULL CHECK (source IN ('proxy', 'api')),
    username    text NOT NULL,
    statement   text NOT NULL,
    duration_us bigint NOT NULL,
    success     boolean NOT NULL,
    sqlstate    text,
    rows        bigint,
    started_at  timestamptz NOT NULL
);
-- One index, kept cheap to maintain: a workspace's records are those with no tenant.
CREATE INDEX query_log_target_idx ON query_log (project_id, tenant, started_at DESC);
