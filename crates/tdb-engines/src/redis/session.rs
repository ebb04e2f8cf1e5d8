//! A Redis session for commands tdb runs for users (the API's queries): one connection as the
//! namespace's own user, one command per `run`, written as redis-cli takes it (`SET k "a b"`,
//! split by tdb-resp's inline rules), planned by [`super::rewrite`] (the proxy's policy: keys
//! prefixed, patterns anchored, default deny) and answered as rows by [`super::render`].
//!
//! `limits.timeout` bounds each command: one that outlives it (a blocking pop, a slow script)
//! ends the session's connection (and, with `admin` given, the server ends the client by its
//! id, so a command it was blocked in goes too); the session is of no further use.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tdb_resp::command::CommandTable;
use tdb_resp::frame::{Frame, Limits as FrameLimits, RequestDecoder};
use tdb_resp::prefix::Prefix;

use super::SessionPlace;
use super::conn::{self, RedisConn};
use super::namespace::{KeyScan, prefix_of};
use super::rewrite::{self, Plan, refused};
use crate::AdminEndpoint;
use crate::engine::{DatabaseAccess, EngineError, Limits, QueryOutput, Result, Session};
use tdb_resp::policy;

pub struct RedisSession {
    conn: Option<RedisConn>,
    prefix: Prefix,
    table: Arc<CommandTable>,
    limits: Limits,
    /// The server's id of this connection (`CLIENT ID`), for `CLIENT KILL ID`.
    id: i64,
    admin: Option<AdminEndpoint>,
    /// The administrator's connection that walks the keyspace for KEYS, SCAN and DBSIZE (the
    /// namespace's users may not: see [`super::acl`]), opened on first use.
    walker: Option<RedisConn>,
    /// The policy's state of this session (a transaction across commands).
    policy: policy::Session,
    _place: SessionPlace,
}

impl RedisSession {
    pub async fn open(
        target: &DatabaseAccess,
        limits: Limits,
        admin: Option<&AdminEndpoint>,
        tables: &super::Tables,
        place: SessionPlace,
    ) -> Result<Self> {
        super::check_name(&target.database)?;
        let mut conn = conn::connect(target).await?;
        let table = tables.get(&mut conn, target).await?;
        let id = conn::integer(&conn.call(&["CLIENT", "ID"]).await?, "CLIENT ID")?;
        Ok(Self {
            conn: Some(conn),
            prefix: prefix_of(&target.database),
            table,
            limits,
            id,
            admin: admin.cloned(),
            walker: None,
            policy: policy::Session::new(Bytes::from(target.user.clone()), false),
            _place: place,
        })
    }

    /// Gives the connection up and, when tdb has the administrator, has the server end it.
    fn abandon(&mut self) {
        let conn = self.conn.take();
        let (admin, id) = (self.admin.clone(), self.id);
        tokio::spawn(async move {
            drop(conn);
            let Some(admin) = admin else { return };
            if let Ok(mut admin) = conn::connect(&admin).await {
                let _ = admin
                    .call(&["CLIENT", "KILL", "ID", id.to_string().as_str()])
                    .await;
            }
        });
    }

    /// The walker connection, opened as the administrator on first use.
    async fn walker(&mut self) -> Result<&mut RedisConn> {
        if self.walker.is_none() {
            let admin = self.admin.as_ref().ok_or_else(|| {
                refused("KEYS, SCAN and DBSIZE need the server's administrator, which this session lacks")
            })?;
            self.walker = Some(conn::connect(admin).await?);
        }
        self.walker
            .as_mut()
            .ok_or_else(|| EngineError::Internal("no walker connection".into()))
    }

    async fn execute(&mut self, args: Vec<Bytes>) -> Result<Frame> {
        let plan = rewrite::plan(&self.table, &self.prefix, &mut self.policy, args)?;
        if self.conn.is_none() {
            return Err(EngineError::Internal(
                "the session ended after an earlier command".into(),
            ));
        }
        let prefix = self.prefix.clone();
        match plan {
            Plan::Answer(frame) => Ok(frame),
            Plan::DbSize => {
                let walker = self.walker().await?;
                let mut scan = KeyScan::new(&prefix);
                let mut n = 0i64;
                while let Some(keys) = scan.next(walker).await? {
                    n += i64::try_from(keys.len()).unwrap_or(i64::MAX);
                }
                Ok(Frame::Integer(n))
            }
            // KEYS in SCAN steps, so the shared server answers others between them; a name
            // met twice is listed once.
            Plan::Keys(pattern) => {
                let walker = self.walker().await?;
                let mut scan = KeyScan::matching(pattern);
                let mut seen = std::collections::HashSet::new();
                let mut names = Vec::new();
                while let Some(keys) = scan.next(walker).await? {
                    names.extend(
                        keys.into_iter()
                            .filter(|k| seen.insert(k.clone()))
                            .map(Frame::Bulk),
                    );
                }
                Ok(policy::rewrite(
                    Frame::Array(names),
                    &policy::ReplyRewrite::KeyList,
                    &prefix,
                ))
            }
            // SCAN and PUBSUB NUMSUB, anchored in the prefix by the plan: run as the
            // administrator (the namespace's users may not), the names checked again as they
            // are stripped.
            Plan::Walk { args, reply } => {
                let walker = self.walker().await?;
                walker.send(&args);
                let frame = conn::check(walker.read().await?)?;
                Ok(policy::rewrite(frame, &reply, &prefix))
            }
            Plan::Send { args, reply } => {
                let conn = self.conn.as_mut().ok_or_else(|| {
                    EngineError::Internal("the session ended after an earlier command".into())
                })?;
                conn.send(&args);
                let frame = conn::check(conn.read().await?)?;
                Ok(policy::rewrite(frame, &reply, &prefix))
            }
        }
    }
}

/// The words of one command line, as redis-cli splits what is typed.
pub fn split(line: &str) -> Result<Vec<Bytes>> {
    if line.contains(['\n', '\r']) {
        return Err(refused("one command per line"));
    }
    let mut buf = BytesMut::from(line.as_bytes());
    buf.extend_from_slice(b"\r\n");
    let limits = FrameLimits::default();
    // A line starting with `*` would be read as a RESP array: no command name does.
    if line.trim_start().starts_with('*') {
        return Err(refused("a command line cannot start with '*'"));
    }
    match RequestDecoder::new(limits).decode(&mut buf) {
        Ok(Some(request)) if buf.is_empty() => Ok(request.into_args()),
        Ok(_) => Err(refused("empty command")),
        Err(e) => Err(refused(e)),
    }
}

#[async_trait]
impl Session for RedisSession {
    async fn run(&mut self, statement: &str) -> Result<QueryOutput> {
        let args = split(statement)?;
        let timeout = self.limits.timeout;
        match tokio::time::timeout(timeout, self.execute(args)).await {
            Ok(Ok(reply)) => {
                super::render::output(reply, self.limits.max_rows, &self.limits.answer)
            }
            Ok(Err(e)) => {
                if matches!(e, EngineError::Connect(_) | EngineError::Internal(_)) {
                    self.abandon();
                }
                Err(e)
            }
            Err(_) => {
                self.abandon();
                Err(EngineError::Timeout(timeout))
            }
        }
    }

    async fn close(mut self: Box<Self>) {
        if let Some(mut conn) = self.conn.take() {
            let _ = conn.call(&["QUIT"]).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_as_redis_cli_splits_them() {
        assert_eq!(split(r#"SET k "a b""#).expect("split"), ["SET", "k", "a b"]);
        assert_eq!(split("  GET   k ").expect("split"), ["GET", "k"]);
        for bad in ["", "   ", "GET a\nFLUSHALL", r#"SET k "open"#, "*1"] {
            assert!(split(bad).is_err(), "{bad:?}");
        }
    }
}
