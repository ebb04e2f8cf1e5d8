//! What a sealed secret is bound to. Sealing uses the owning record as AES-GCM associated data,
//! so a secret copied onto another record does not open. Every kind of secret has its one
//! spelling here; the bytes are stored with the secrets, so they never change.

use std::borrow::Cow;

/// A role of a tenant database whose password tdb keeps sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantRole {
    /// Owns the database's objects; migrations and dumps run as it.
    Owner,
    /// The application's role: rows, not schema.
    App,
    /// SELECT only.
    Read,
}

/// The record a sealed secret belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aad<'a> {
    /// A server's administrator password, by server id.
    ServerAdmin(&'a str),
    /// The managed server's administrator password in its state file (one per data dir).
    ManagedServerAdmin,
    /// A managed MariaDB server's administrator password in its state file (one per data dir).
    ManagedMariadbAdmin,
    /// A managed Redis server's administrator password in its state file (one per data dir).
    ManagedRedisAdmin,
    /// A workspace's owner role, by workspace id.
    WorkspaceOwner(&'a str),
    /// One of a tenant database's roles, by tenant database id.
    TenantRole(&'a str, TenantRole),
    /// A stored connection string, by connection id.
    Connection(&'a str),
    /// A provisioned database's role, by provisioned database id.
    Provisioned(&'a str),
}

impl Aad<'_> {
    /// The associated data's bytes.
    pub fn bytes(&self) -> Cow<'_, str> {
        match *self {
            Aad::ServerAdmin(id) | Aad::WorkspaceOwner(id) => Cow::Borrowed(id),
            Aad::ManagedServerAdmin => Cow::Borrowed("managed-postgresql-admin"),
            Aad::ManagedMariadbAdmin => Cow::Borrowed("managed-mariadb-admin"),
            Aad::ManagedRedisAdmin => Cow::Borrowed("managed-redis-admin"),
            Aad::TenantRole(id, role) => Cow::Owned(format!(
                "{id}:{}",
                match role {
                    TenantRole::Owner => "owner",
                    TenantRole::App => "app",
                    TenantRole::Read => "read",
                }
            )),
            Aad::Connection(id) => Cow::Owned(format!("connection:{id}")),
            Aad::Provisioned(id) => Cow::Owned(format!("provision:{id}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Secrets sealed before this type existed must still open: the spellings are frozen.
    #[test]
    fn spellings_are_those_stored_with_existing_secrets() {
        let cases = [
            (Aad::ServerAdmin("srv_1"), "srv_1"),
            (Aad::ManagedServerAdmin, "managed-postgresql-admin"),
            (Aad::ManagedMariadbAdmin, "managed-mariadb-admin"),
            (Aad::ManagedRedisAdmin, "managed-redis-admin"),
            (Aad::WorkspaceOwner("ws_1"), "ws_1"),
            (Aad::TenantRole("tdb_1", TenantRole::Owner), "tdb_1:owner"),
            (Aad::TenantRole("tdb_1", TenantRole::App), "tdb_1:app"),
            (Aad::TenantRole("tdb_1", TenantRole::Read), "tdb_1:read"),
            (Aad::Connection("conn_1"), "connection:conn_1"),
            (Aad::Provisioned("prov_1"), "provision:prov_1"),
        ];
        for (aad, bytes) in cases {
            assert_eq!(aad.bytes(), bytes, "{aad:?}");
        }
    }
}
