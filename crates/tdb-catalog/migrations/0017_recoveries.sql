-- Point-in-time recovery. Each managed server archives its WAL into a pgBackRest stanza of its
-- own; `server_archives` says which tdb runs its backups and what the archive can recover now
-- (read from the archive itself, kept current by that tdb). `recoveries` records each recovery of
-- a tenant database to a moment, run by a `tenant_recover` job and undone by a
-- `tenant_recover_undo` job while its original is kept.

CREATE TABLE server_archives (
    server_id        text PRIMARY KEY REFERENCES servers (id) ON DELETE CASCADE,
    stanza           text NOT NULL,
    -- The tdb that runs the server, its archiving and its backups (its provisioner's kind).
    node             text NOT NULL,
    -- The stanza exists in the repository.
    ready            boolean NOT NULL DEFAULT false,
    recoverable_from timestamptz,
    recoverable_to   timestamptz,
    last_full_at     timestamptz,
    last_backup_at   timestamptz,
    -- An operator asked for a full base backup now (`POST /servers/{name}/backup`).
    backup_requested_at timestamptz,
    error            text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Since when the tenant database's current copy has been where it is (created, moved, rolled
-- back, recovered): an archive holds it from then on.
ALTER TABLE tenant_databases ADD COLUMN placed_at timestamptz NOT NULL DEFAULT now();

CREATE TABLE recoveries (
    id                  text PRIMARY KEY,
    project_id          text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    tenant_id           text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    tenant_database_id  text NOT NULL REFERENCES tenant_databases (id) ON DELETE CASCADE,
    level               integer NOT NULL CHECK (level IN (1, 2)),
    target_at           timestamptz NOT NULL,
    step                text NOT NULL DEFAULT 'queued'
                        CHECK (step IN ('queued', 'restoring', 'loading', 'switched',
                                        'completed', 'failed', 'undoing', 'undone')),
    original_server_id  text NOT NULL,
    original_db         text NOT NULL,
    recovered_server_id text NOT NULL,
    recovered_db        text NOT NULL,
    history             text[] NOT NULL DEFAULT '{}',
    error               text,
    held_ms             integer,
    created_at          timestamptz NOT NULL DEFAULT now(),
    switched_at         timestamptz,
    finished_at         timestamptz,
    -- The original is kept (unreachable) until then; `recover-undo` may swap it back.
    undo_until          timestamptz NOT NULL,
    original_dropped    boolean NOT NULL DEFAULT false
);
CREATE INDEX recoveries_tenant_idx ON recoveries (tenant_id, created_at DESC);
CREATE INDEX recoveries_expiry_idx ON recoveries (undo_until) WHERE NOT original_dropped;
