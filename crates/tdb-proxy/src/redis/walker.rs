//! The connection that walks the keyspace for a session: SCAN (its pattern anchored in the
//! tenant's prefix and its COUNT held to 1000 by the policy), and the SCAN steps behind KEYS,
//! DBSIZE, FLUSHDB, `INFO keyspace` and the `max_keys` count. It logs in as the server's administrator, because the tenant's own
//! users may not list keys: Redis does not hold KEYS and SCAN to a user's key patterns
//! (redis/redis#8152), so a script run as the tenant (`EVAL "return redis.call('SCAN','0')" 0`)
//! would list every tenant's key names. Only requests the proxy builds go over it, and every
//! name that comes back is checked against the prefix before the client sees it. It is opened
//! on a session's first walk; most sessions never open it.

use tdb_resp::frame::Frame;

use super::backend::{Backend, BackendError, Tables, Target};
use crate::route::Router;

pub struct Walker<'a> {
    router: &'a Router,
    tables: &'a Tables,
    server_id: String,
    host: String,
    port: u16,
    conn: Option<Backend>,
    /// Whether [`prepare`](Self::prepare) ran: it tries once per session.
    prepared: bool,
}

impl<'a> Walker<'a> {
    pub fn new(
        router: &'a Router,
        tables: &'a Tables,
        server_id: &str,
        host: &str,
        port: u16,
    ) -> Self {
        Self {
            router,
            tables,
            server_id: server_id.to_string(),
            host: host.to_string(),
            port,
            conn: None,
            prepared: false,
        }
    }

    /// Logs in ahead of need (before a script, which the walker may have to stop), once per
    /// session: a failure is not retried on every later command. `span` is the session's.
    pub async fn prepare(&mut self, span: &tracing::Span) {
        if !self.prepared {
            self.prepared = true;
            if let Err(e) = self.conn().await {
                tracing::warn!(parent: span, error = %e, "the walker could not log in ahead of a script");
            }
        }
    }

    /// The administrator's connection, opened on first use.
    pub async fn conn(&mut self) -> Result<&mut Backend, BackendError> {
        if self.conn.is_none() {
            let admin = self.router.admin(&self.server_id).await.ok_or_else(|| {
                BackendError::Refused(
                    "the server's administrator, who lists a tenant's keys, is not available"
                        .into(),
                )
            })?;
            let target = Target {
                server_id: self.server_id.clone(),
                host: self.host.clone(),
                port: self.port,
                user: admin.user,
                password: admin.password,
                hello: None,
                memory: None,
            };
            self.conn = Some(Backend::connect(&target, self.tables).await?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| BackendError::Refused("no walker connection".into()))
    }

    /// The open connection, taken away (for a task that outlives the session).
    pub fn take(&mut self) -> Option<Backend> {
        self.conn.take()
    }

    /// One request the proxy built, and its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Frame, BackendError> {
        // The administrator subscribes to nothing: no pushes can come.
        let mut pushes = Vec::new();
        self.conn().await?.call(args, &mut pushes).await
    }
}
