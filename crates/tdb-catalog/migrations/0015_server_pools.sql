-- Server pools: dedicated servers made by a provisioner for one L2 tenant each, and shared
-- servers that take at most so many databases.
--
-- A dedicated server is recorded `provisioning` (port 0: not known yet) in the transaction that
-- records its tenant, and becomes `active` once its provisioner has it running; a trashed
-- tenant's server is `stopped`. `provisioner` names the backend that made it (NULL: configured
-- or tdb's own shared server). `max_databases` NULL: no limit.

ALTER TABLE servers DROP CONSTRAINT servers_status_check;
ALTER TABLE servers ADD CONSTRAINT servers_status_check
    CHECK (status IN ('provisioning', 'active', 'draining', 'stopped', 'offline'));
ALTER TABLE servers DROP CONSTRAINT servers_port_check;
ALTER TABLE servers ADD CONSTRAINT servers_port_check CHECK (port BETWEEN 0 AND 65535);
ALTER TABLE servers ADD COLUMN max_databases integer CHECK (max_databases > 0);
ALTER TABLE servers ADD COLUMN provisioner text;

CREATE INDEX tenant_databases_server_idx ON tenant_databases (server_id);
CREATE INDEX workspaces_server_idx ON workspaces (server_id);
