-- Registered database connections and schema-per-tenant databases (the AutoDB-compatible
-- surface under /api/v1).

CREATE TABLE connections (
    id                   text PRIMARY KEY,
    project_id           text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name                 text NOT NULL,
    db_type              text NOT NULL,
    host                 text NOT NULL,
    port                 integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    database_name        text NOT NULL,
    excluded_schemas     text[] NOT NULL,
    -- The connection string, sealed under the master key with 'connection:<id>' as AAD.
    secret               bytea NOT NULL,
    is_active            boolean NOT NULL DEFAULT true,
    created_at           timestamptz NOT NULL DEFAULT now(),
    last_introspected_at timestamptz
);
CREATE INDEX connections_project_idx ON connections (project_id, created_at);

CREATE TABLE provisioned_databases (
    id            text PRIMARY KEY,
    project_id    text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- The limit is per account, across its projects.
    account_id    text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    connection_id text NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    name          text NOT NULL,
    -- Opaque names on the server: no customer text reaches pg_namespace or pg_roles.
    schema_name   text NOT NULL UNIQUE,
    role_name     text NOT NULL UNIQUE,
    -- The role's password, sealed with 'provision:<id>' as AAD.
    role_secret   bytea NOT NULL,
    server_id     text NOT NULL REFERENCES servers (id),
    -- The shared database on that server that holds the schema.
    database      text NOT NULL,
    status        text NOT NULL CHECK (status IN ('provisioning', 'active', 'deleted')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);
CREATE INDEX provisioned_account_idx ON provisioned_databases (account_id) WHERE status <> 'deleted';
CREATE INDEX provisioned_project_idx ON provisioned_databases (project_id, created_at);

-- Proxy logins scoped to one provisioned database (its schema name is the routing name).
ALTER TABLE credentials DROP CONSTRAINT credentials_scope_type_check;
ALTER TABLE credentials ADD CONSTRAINT credentials_scope_type_check
    CHECK (scope_type IN ('project', 'workspace', 'tenant', 'provision'));
