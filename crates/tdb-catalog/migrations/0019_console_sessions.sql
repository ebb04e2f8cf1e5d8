-- Sessions of the web console. The browser holds a random token in an HttpOnly cookie; the
-- catalog holds its SHA-256 digest and the API key the session acts with (by id: the key's
-- secret is never stored, and page scripts never see it). A session signed in with e-mail and
-- password acts with a key minted for it, revoked at sign-out. A revoked or expired key ends
-- every session that uses it.

CREATE TABLE console_sessions (
    digest       bytea PRIMARY KEY,
    key_id       text NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    -- The key was minted for this session (password sign-in, project switch): sign-out revokes it.
    minted       boolean NOT NULL,
    -- How the session signed in: with the account's password, or with an API key.
    by_password  boolean NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX console_sessions_key_idx ON console_sessions (key_id);
CREATE INDEX console_sessions_expiry_idx ON console_sessions (expires_at);
