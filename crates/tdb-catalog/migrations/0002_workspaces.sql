-- Workspaces (a project's design databases), blueprints (versioned schemas captured from them),
-- the pending DDL queue, and the credentials the proxy will accept.

CREATE TABLE workspaces (
    id           text PRIMARY KEY,
    project_id   text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name         text NOT NULL,
    engine       text NOT NULL CHECK (engine IN ('postgresql', 'mysql', 'redis', 'mongodb')),
    mode         text NOT NULL CHECK (mode IN ('tenant', 'control')),
    server_id    text NOT NULL REFERENCES servers (id),
    -- Opaque names on the server: no customer text reaches pg_database or pg_roles.
    physical_db  text NOT NULL UNIQUE,
    owner_role   text NOT NULL UNIQUE,
    -- The owner role's password, sealed under the master key with the workspace id as AAD.
    owner_secret bytea NOT NULL,
    settings     jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workspaces_project_name_key UNIQUE (project_id, name)
);

CREATE TABLE blueprints (
    id              text PRIMARY KEY,
    project_id      text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name            text NOT NULL,
    engine          text NOT NULL,
    workspace_id    text NOT NULL UNIQUE REFERENCES workspaces (id) ON DELETE CASCADE,
    current_version integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT blueprints_project_name_key UNIQUE (project_id, name)
);

CREATE TABLE blueprint_versions (
    blueprint_id text NOT NULL REFERENCES blueprints (id) ON DELETE CASCADE,
    version      integer NOT NULL CHECK (version > 0),
    statements   text[] NOT NULL,
    settings     jsonb NOT NULL,
    deployed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blueprint_id, version)
);

CREATE TABLE pending_ddl (
    id               bigserial PRIMARY KEY,
    blueprint_id     text NOT NULL REFERENCES blueprints (id) ON DELETE CASCADE,
    statement        text NOT NULL,
    tag              text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Set when a deployment folds the change into a version; NULL while pending.
    deployed_version integer
);
CREATE INDEX pending_ddl_open_idx ON pending_ddl (blueprint_id, id) WHERE deployed_version IS NULL;

CREATE TABLE credentials (
    id          text PRIMARY KEY,
    project_id  text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    username    text NOT NULL UNIQUE,
    verifier    text NOT NULL,
    scope_type  text NOT NULL CHECK (scope_type IN ('project', 'workspace', 'tenant')),
    scope_value text,
    role        text NOT NULL CHECK (role IN ('admin', 'write', 'read')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX credentials_scope_idx ON credentials (project_id, scope_type, scope_value);
