-- Durable lifecycles: a project is deleted by a job (its keys stop at once, its databases and
-- files go in the background, and a crash resumes the job); a tenant is created by a job that
-- survives its client and the process; jobs know their project, so one project cannot hold every
-- job slot.

ALTER TABLE projects
    ADD COLUMN status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleting'));

-- No foreign key: a project's deletion job outlives the project's row.
ALTER TABLE jobs ADD COLUMN project_id text;
UPDATE jobs j SET project_id = d.project_id FROM deployments d
 WHERE j.kind = 'deployment' AND d.id = j.ref_id;
UPDATE jobs j SET project_id = b.project_id FROM backups b
 WHERE j.kind = 'backup' AND b.id = j.ref_id;
UPDATE jobs j SET project_id = t.project_id FROM rollbacks r JOIN tenants t ON t.id = r.tenant_id
 WHERE j.kind = 'rollback' AND r.id = j.ref_id;
CREATE INDEX jobs_project_open_idx ON jobs (project_id) WHERE status <> 'done';

-- A tenant left `provisioning` by a request that died before this migration is finished (or
-- undone) by a job like any new one.
INSERT INTO jobs (kind, ref_id, project_id)
SELECT 'tenant_create', id, project_id FROM tenants WHERE status = 'provisioning';
