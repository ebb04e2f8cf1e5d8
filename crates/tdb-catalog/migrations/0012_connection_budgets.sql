-- Connections each server keeps for tenants (through the proxies): what the server accepts, less
-- what tdb itself needs for the API, the jobs and the catalog. NULL until tdb has asked the
-- server (at start); the proxies then enforce it across every tenant on the server.
ALTER TABLE servers ADD COLUMN tenant_connection_budget integer
    CHECK (tenant_connection_budget IS NULL OR tenant_connection_budget >= 0);
