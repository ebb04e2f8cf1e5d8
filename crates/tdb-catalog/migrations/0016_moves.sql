-- Moves of a tenant database between servers (L1 <-> L2, a dedicated server's region, one shared
-- server to another), each run by a `tenant_move` job through its steps. `method` is how the
-- data goes: logical replication, or a dump and restore behind a hold when replication cannot
-- run. The source database is kept, unreachable, until `source_drop_after`.

CREATE TABLE moves (
    id                 text PRIMARY KEY,
    project_id         text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    tenant_id          text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    tenant_database_id text NOT NULL REFERENCES tenant_databases (id) ON DELETE CASCADE,
    from_server_id     text NOT NULL,
    to_server_id       text NOT NULL,
    from_level         integer NOT NULL CHECK (from_level IN (1, 2)),
    to_level           integer NOT NULL CHECK (to_level IN (1, 2)),
    from_region        text NOT NULL,
    to_region          text NOT NULL,
    step               text NOT NULL DEFAULT 'queued'
                       CHECK (step IN ('queued', 'target', 'syncing', 'cutover', 'switched',
                                       'completed', 'failed')),
    method             text CHECK (method IN ('replication', 'dump')),
    safety_backup_id   text,
    -- What happened, in order: the fallback to a dump and why, the hold's length, the checks.
    history            text[] NOT NULL DEFAULT '{}',
    error              text,
    held_ms            integer,
    created_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    source_drop_after  timestamptz,
    source_dropped     boolean NOT NULL DEFAULT false
);
CREATE INDEX moves_tenant_idx ON moves (tenant_id, created_at DESC);
CREATE INDEX moves_source_idx ON moves (source_drop_after) WHERE NOT source_dropped;

-- A job that only one tdb can run: one whose dedicated server a local provisioner runs in that
-- tdb's data dir (`servers.provisioner`, `local:<node>`). NULL: any tdb.
ALTER TABLE jobs ADD COLUMN node text;
