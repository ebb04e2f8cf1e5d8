-- Accounts, projects, API keys and the database servers tdb places databases on.
-- No column holds a secret a client can log in with: passwords are argon2id PHC strings, API keys
-- SHA-256 digests, proxy passwords SCRAM-SHA-256 verifiers; server admin passwords are sealed
-- (AES-256-GCM, record id as associated data) under the master key.

CREATE TABLE accounts (
    id            text PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    tier          text NOT NULL DEFAULT 'free' CHECK (tier IN ('free', 'paid')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id             text PRIMARY KEY,
    account_id     text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name           text NOT NULL,
    proxy_verifier text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT projects_account_name_key UNIQUE (account_id, name)
);

CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    project_id   text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name         text NOT NULL,
    prefix       text NOT NULL,
    digest       bytea NOT NULL UNIQUE,
    role         text NOT NULL CHECK (role IN ('admin', 'write', 'read')),
    scope_type   text NOT NULL CHECK (scope_type IN ('project', 'workspace', 'tenant')),
    scope_values text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_project_idx ON api_keys (project_id) WHERE revoked_at IS NULL;

CREATE TABLE servers (
    id           text PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    engine       text NOT NULL CHECK (engine IN ('postgresql', 'mysql', 'redis', 'mongodb')),
    role         text NOT NULL CHECK (role IN ('shared', 'dedicated')),
    region       text NOT NULL,
    host         text NOT NULL,
    port         integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    admin_user   text NOT NULL,
    admin_secret bytea NOT NULL,
    managed      boolean NOT NULL,
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining', 'offline')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
