//! Dedicated servers: a [`Provisioner`] gives an L2 tenant a PostgreSQL server of its own and
//! takes it back. Its first backend, [`LocalProvisioner`], runs a managed PostgreSQL per server
//! on this machine; `docs/PROVISIONERS.md` describes how a Kubernetes backend (CloudNativePG)
//! would keep the same contract.
//!
//! Every method names a state to reach, not an action to take, so a durable job cut off by a
//! crash can call it again: `provision` on a server that exists starts it (or finds it running),
//! `stop` on a stopped server and `destroy` on a removed one do nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tdb_core::secrets::MasterKey;

use super::archive::WalArchive;
use super::postgres::{Listen, ManagedPostgres, ManagedPostgresOptions, PgBinaries};
use super::{AdminEndpoint, ManagedError, RunAs};

/// What a dedicated server is made for.
#[derive(Debug, Clone, Copy)]
pub struct ServerRequest<'a> {
    /// The server's name in the catalog: lower-case letters, digits and `-`.
    pub name: &'a str,
    pub region: &'a str,
}

#[async_trait]
pub trait Provisioner: Send + Sync {
    /// Who makes and runs the servers, recorded with each (`servers.provisioner`): the
    /// backend's name, and for a backend that runs servers itself, which tdb does
    /// (`local:<node>`). Only that provisioner starts, stops or removes them.
    fn kind(&self) -> &str;

    /// Makes the server if it does not exist, starts it if it is stopped, and returns once its
    /// administrator can log in.
    async fn provision(&self, request: &ServerRequest<'_>) -> Result<AdminEndpoint, ManagedError>;

    /// Makes server `request.name` from the WAL archive of server `source` as it was at `at`
    /// (restored, replayed, promoted), unless it was made already; then starts it like
    /// [`Provisioner::provision`]. The new server archives into a stanza of its own.
    async fn provision_recovered(
        &self,
        request: &ServerRequest<'_>,
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<AdminEndpoint, ManagedError>;

    /// Stops the server and keeps its data (a trashed tenant's server).
    async fn stop(&self, name: &str) -> Result<(), ManagedError>;

    /// Stops the server and removes its data.
    async fn destroy(&self, name: &str) -> Result<(), ManagedError>;

    /// Stops every server this process runs and keeps their data: tdb is stopping.
    async fn shutdown(&self);
}

/// What every server [`LocalProvisioner`] runs shares.
pub struct LocalOptions {
    /// Each server's directory is `root/<name>`.
    pub root: PathBuf,
    /// `None` when this machine has no PostgreSQL server programs: provisioning then fails,
    /// saying so.
    pub binaries: Option<PgBinaries>,
    pub run_as: RunAs,
    pub master_key: MasterKey,
    /// `-c name=value` settings of every server.
    pub settings: Vec<(String, String)>,
    /// This tdb's node id (stable per data dir): its servers live in its data dir, so another
    /// node sharing the catalog leaves them alone.
    pub node: String,
    /// Where every server archives its WAL (`None`: no archiving, no recovery).
    pub archive: Option<Arc<WalArchive>>,
}

/// One managed PostgreSQL per dedicated server, each in its own directory under the data dir,
/// on its own port and private socket, run as the unprivileged user and supervised (restarted if
/// it dies). Servers are started and stopped one at a time each, several at once between them.
pub struct LocalProvisioner {
    options: LocalOptions,
    kind: String,
    servers: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<ManagedPostgres>>>>>,
}

pub const LOCAL: &str = "local";

impl LocalProvisioner {
    pub fn new(options: LocalOptions) -> Self {
        Self {
            kind: format!("{LOCAL}:{}", options.node),
            options,
            servers: Default::default(),
        }
    }

    /// The slot of server `name`, which serialises what is done to it.
    fn slot(
        &self,
        name: &str,
    ) -> Result<Arc<tokio::sync::Mutex<Option<ManagedPostgres>>>, ManagedError> {
        check_name(name)?;
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        Ok(servers.entry(name.to_string()).or_default().clone())
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.options.root.join(name)
    }

    fn binaries(&self) -> Result<PgBinaries, ManagedError> {
        self.options.binaries.clone().ok_or_else(|| {
            ManagedError::Setup(
                "dedicated servers need PostgreSQL's server programs (initdb, postgres) on this \
                 machine; install them (apt-get install postgresql) or set postgres_bin_dir"
                    .into(),
            )
        })
    }

    /// Starts the server in its directory (made by `initdb` first when there is none).
    async fn start(&self, name: &str) -> Result<ManagedPostgres, ManagedError> {
        std::fs::create_dir_all(&self.options.root).map_err(ManagedError::io(format!(
            "creating {}",
            self.options.root.display()
        )))?;
        let o = &self.options;
        ManagedPostgres::start(ManagedPostgresOptions {
            dir: self.dir(name),
            binaries: self.binaries()?,
            run_as: o.run_as.clone(),
            master_key: o.master_key.clone(),
            label: name.to_string(),
            settings: o.settings.clone(),
            listen: Listen::PrivateSocket,
            archive: o.archive.clone().map(|a| (a, name.to_string())),
        })
        .await
    }
}

/// Names become directory names: nothing that could leave the root.
fn check_name(name: &str) -> Result<(), ManagedError> {
    let fine = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if fine {
        Ok(())
    } else {
        Err(ManagedError::Setup(format!(
            "'{name}' is not a dedicated server's name (lower-case letters, digits, '-')"
        )))
    }
}

#[async_trait]
impl Provisioner for LocalProvisioner {
    fn kind(&self) -> &str {
        &self.kind
    }

    async fn provision(&self, request: &ServerRequest<'_>) -> Result<AdminEndpoint, ManagedError> {
        let slot = self.slot(request.name)?;
        let mut running = slot.lock().await;
        if let Some(server) = running.as_ref() {
            return Ok(server.endpoint().clone());
        }
        let server = self.start(request.name).await?;
        let endpoint = server.endpoint().clone();
        *running = Some(server);
        Ok(endpoint)
    }

    async fn provision_recovered(
        &self,
        request: &ServerRequest<'_>,
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<AdminEndpoint, ManagedError> {
        check_name(source)?;
        let slot = self.slot(request.name)?;
        let mut running = slot.lock().await;
        if let Some(server) = running.as_ref() {
            return Ok(server.endpoint().clone());
        }
        let archive = self.options.archive.clone().ok_or_else(|| {
            ManagedError::Setup(
                "this tdb archives no WAL (pgBackRest is missing or pitr_enabled is off)".into(),
            )
        })?;
        super::postgres::recover_into(
            &self.dir(request.name),
            &self.dir(source),
            (&archive, source),
            at,
            &self.binaries()?,
            &self.options.master_key,
        )
        .await?;
        let server = self.start(request.name).await?;
        let endpoint = server.endpoint().clone();
        *running = Some(server);
        Ok(endpoint)
    }

    async fn stop(&self, name: &str) -> Result<(), ManagedError> {
        let slot = self.slot(name)?;
        let mut running = slot.lock().await;
        if let Some(server) = running.take() {
            server.shutdown().await;
        }
        Ok(())
    }

    async fn destroy(&self, name: &str) -> Result<(), ManagedError> {
        let slot = self.slot(name)?;
        let mut running = slot.lock().await;
        if let Some(server) = running.take() {
            server.shutdown().await;
        }
        super::postgres::remove(&self.dir(name)).await?;
        if let Some(archive) = &self.options.archive {
            archive.delete_stanza(name).await?;
        }
        drop(running);
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        Ok(())
    }

    async fn shutdown(&self) {
        let slots: Vec<_> = {
            let servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
            servers.values().cloned().collect()
        };
        let stops = slots.into_iter().map(|slot| async move {
            if let Some(server) = slot.lock().await.take() {
                server.shutdown().await;
            }
        });
        futures_util::future::join_all(stops).await;
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn only_plain_names_become_directories() {
        assert!(check_name("pg-l2-0a1b2c").is_ok());
        for bad in ["", "..", "a/b", "-x", "UPPER", "a b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
