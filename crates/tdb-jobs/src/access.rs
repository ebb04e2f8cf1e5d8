//! How tdb reaches a server or a tenant database: the catalog's records plus the secrets sealed
//! under the master key, bound to their record ids.

use tdb_catalog::servers::Server;
use tdb_catalog::tenants::TenantDatabase;
use tdb_core::aad::{Aad, TenantRole};
use tdb_core::secrets::{MasterKey, SecretError};
use tdb_engines::{AdminEndpoint, DatabaseAccess};

pub fn admin_endpoint(key: &MasterKey, server: &Server) -> Result<AdminEndpoint, SecretError> {
    Ok(AdminEndpoint {
        host: server.host.clone(),
        port: u16::try_from(server.port).unwrap_or(5432),
        user: server.admin_user.clone(),
        password: key.open_string(&server.admin_secret, Aad::ServerAdmin(&server.id))?,
    })
}

/// The database as one of its roles (`user`), whose password is `sealed`.
fn database_access(
    key: &MasterKey,
    server: &Server,
    db: &TenantDatabase,
    (user, sealed): (&str, &[u8]),
    role: TenantRole,
) -> Result<DatabaseAccess, SecretError> {
    Ok(DatabaseAccess {
        host: server.host.clone(),
        port: u16::try_from(server.port).unwrap_or(5432),
        database: db.physical_db.clone(),
        user: user.to_string(),
        password: key.open_string(sealed, Aad::TenantRole(&db.id, role))?,
    })
}

/// The database as its owner (migrations).
pub fn owner_access(
    key: &MasterKey,
    server: &Server,
    db: &TenantDatabase,
) -> Result<DatabaseAccess, SecretError> {
    database_access(
        key,
        server,
        db,
        (&db.owner_role, &db.owner_secret),
        TenantRole::Owner,
    )
}

/// The database as its application role (rows only: admin queries, the proxy).
pub fn app_access(
    key: &MasterKey,
    server: &Server,
    db: &TenantDatabase,
) -> Result<DatabaseAccess, SecretError> {
    database_access(
        key,
        server,
        db,
        (&db.app_role, &db.app_secret),
        TenantRole::App,
    )
}

/// The database as its read-only role; `None` for databases made before read roles existed.
pub fn read_access(
    key: &MasterKey,
    server: &Server,
    db: &TenantDatabase,
) -> Option<Result<DatabaseAccess, SecretError>> {
    let (role, sealed) = (db.read_role.as_ref()?, db.read_secret.as_ref()?);
    Some(database_access(
        key,
        server,
        db,
        (role, sealed),
        TenantRole::Read,
    ))
}
