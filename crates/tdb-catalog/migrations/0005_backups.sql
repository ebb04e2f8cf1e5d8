-- Backups of tenant databases in the object store, rollbacks from them, and each project's
-- backup policy (schedule, retention, hourly quota).

-- One dump of one tenant database. Rows outlive nothing: a hard-deleted tenant takes its backup
-- rows along (its objects are deleted from the store first).
CREATE TABLE backups (
    id                 text PRIMARY KEY,
    project_id         text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    tenant_id          text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    tenant_database_id text NOT NULL REFERENCES tenant_databases (id) ON DELETE CASCADE,
    blueprint          text NOT NULL,
    database_type      text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('manual', 'scheduled', 'safety')),
    -- The timestamp in the path, `2026-02-15T14-30-00` (UTC).
    taken_at           text NOT NULL,
    storage_path       text NOT NULL UNIQUE,
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'completed', 'failed')),
    -- Bytes stored (compressed) and their SHA-256, checked again on every restore.
    size_bytes         bigint,
    sha256             text,
    -- Bytes of SQL before compression.
    raw_bytes          bigint,
    error              text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz
);
CREATE INDEX backups_tenant_idx ON backups (tenant_id, created_at DESC);
CREATE INDEX backups_project_kind_idx ON backups (project_id, kind, created_at DESC);

-- A rollback of one tenant database to a backup. `step` records how far it got, so a job that
-- resumes after a crash knows what exists: `new_db` is named before it is created, and the
-- tenant points at it only from `swapped` on.
CREATE TABLE rollbacks (
    id                 text PRIMARY KEY,
    tenant_id          text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    tenant_database_id text NOT NULL REFERENCES tenant_databases (id) ON DELETE CASCADE,
    backup_id          text NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
    storage_path       text NOT NULL,
    safety_backup_id   text REFERENCES backups (id) ON DELETE SET NULL,
    step               text NOT NULL DEFAULT 'queued'
                       CHECK (step IN ('queued', 'safety', 'restoring', 'swapped', 'completed',
                                       'failed')),
    new_db             text,
    old_db             text,
    bytes_total        bigint NOT NULL DEFAULT 0,
    bytes_done         bigint NOT NULL DEFAULT 0,
    error              text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz
);
CREATE INDEX rollbacks_tenant_idx ON rollbacks (tenant_id, created_at DESC);
-- At most one rollback of a tenant runs at a time.
CREATE UNIQUE INDEX rollbacks_running_idx ON rollbacks (tenant_id)
    WHERE step NOT IN ('completed', 'failed');

-- The project's policy; NULL fields take the server's configured defaults.
ALTER TABLE projects
    ADD COLUMN backup_policy jsonb NOT NULL DEFAULT '{}',
    -- The last daily slot whose scheduled backups were queued (claimed atomically, so two
    -- runners never queue the same day twice).
    ADD COLUMN backup_last_slot timestamptz;
