-- Keys that `POST /login` and `POST /projects/{id}/switch` mint expire (30 days unless the
-- operator sets `login_key_days`): every login used to add an admin key that lived for good.
-- An expired key is refused like a revoked one, and pruned when its project gets a new key.
-- Keys made on purpose (sign-up, project creation, `POST /apikeys`) keep `expires_at` NULL.

ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
CREATE INDEX api_keys_expiry_idx ON api_keys (project_id, expires_at) WHERE expires_at IS NOT NULL;
