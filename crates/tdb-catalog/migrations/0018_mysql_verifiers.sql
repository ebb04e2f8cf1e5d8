-- What the MySQL proxy checks passwords against: `<hex SHA1(SHA1(p))>:<hex SHA256(SHA256(p))>`,
-- the two digests `mysql_native_password` and `caching_sha2_password`'s fast path need (a
-- SCRAM verifier cannot check their scrambles). Credentials minted before this column have none:
-- they log in with caching_sha2_password's full authentication, over TLS, checked against the
-- SCRAM verifier.

ALTER TABLE credentials ADD COLUMN mysql_verifier text;
ALTER TABLE projects ADD COLUMN proxy_mysql_verifier text;
