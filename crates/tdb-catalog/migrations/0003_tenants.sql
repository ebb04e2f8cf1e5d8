-- Tenants (a customer's databases, one per blueprint), deployments with per-tenant results, and
-- the durable job queue that runs deployments.

CREATE TABLE tenants (
    id         text PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name       text NOT NULL,
    status     text NOT NULL CHECK (status IN ('provisioning', 'ready', 'suspended', 'syncing',
                                               'migrating', 'restoring', 'recovering', 'deleted',
                                               'failed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT tenants_project_name_key UNIQUE (project_id, name)
);

CREATE TABLE tenant_databases (
    id              text PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    blueprint_id    text NOT NULL REFERENCES blueprints (id),
    server_id       text NOT NULL REFERENCES servers (id),
    isolation_level integer NOT NULL CHECK (isolation_level IN (1, 2)),
    region          text NOT NULL,
    physical_db     text NOT NULL UNIQUE,
    owner_role      text NOT NULL UNIQUE,
    owner_secret    bytea NOT NULL,
    app_role        text NOT NULL UNIQUE,
    app_secret      bytea NOT NULL,
    -- The catalog's copy of tdb_meta.schema_version inside the database (which is the truth).
    version         integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenant_databases_tenant_blueprint_key UNIQUE (tenant_id, blueprint_id)
);
CREATE INDEX tenant_databases_blueprint_idx ON tenant_databases (blueprint_id);

CREATE TABLE deployments (
    id           text PRIMARY KEY,
    project_id   text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    blueprint_id text NOT NULL REFERENCES blueprints (id) ON DELETE CASCADE,
    version      integer NOT NULL,
    -- Dry runs apply these statements and roll back; real deployments use the versions.
    dry_run_statements text[],
    status       text NOT NULL CHECK (status IN ('pending', 'in_progress', 'completed',
                                                 'completed_with_errors', 'failed')),
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX deployments_blueprint_idx ON deployments (blueprint_id, created_at DESC);

CREATE TABLE deployment_results (
    deployment_id      text NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    tenant_database_id text NOT NULL REFERENCES tenant_databases (id) ON DELETE CASCADE,
    tenant_name        text NOT NULL,
    status             text NOT NULL CHECK (status IN ('pending', 'in_progress', 'completed',
                                                       'failed', 'skipped')),
    duration_ms        integer,
    error              text,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment_id, tenant_database_id)
);

CREATE TABLE jobs (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    ref_id      text NOT NULL,
    status      text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done')),
    lease_owner text,
    lease_until timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_open_idx ON jobs (id) WHERE status <> 'done';
