-- Invitations to sign up, made by an existing account when sign-up is by invitation
-- (`signup = "invite"`). The code is shown once; only its SHA-256 digest is kept. A code is used
-- at most once and not after `expires_at`.

CREATE TABLE invitations (
    id         text PRIMARY KEY,
    digest     bytea NOT NULL UNIQUE,
    created_by text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    used_by    text REFERENCES accounts (id) ON DELETE SET NULL,
    CHECK (used_by IS NULL OR used_at IS NOT NULL)
);
CREATE INDEX invitations_created_by_idx ON invitations (created_by);
