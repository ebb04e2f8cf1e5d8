//! One tenant command made to stay in its namespace, before it is sent, by the same policy as
//! the Redis proxy's (`tdb_resp::policy`: the server's own command table, keys prefixed,
//! `KEYS`/`SCAN` patterns anchored, default deny, replies stripped of the prefix). What an
//! API query cannot do is refused on top of it: subscriptions (a query answers once) and the
//! proxy's own emulations but `DBSIZE` and fixed answers (`SELECT 0`, `ACL WHOAMI`). A
//! blocking command waits at most the session's timeout, which then ends the session.

use bytes::Bytes;
use tdb_resp::command::CommandTable;
use tdb_resp::frame::{Frame, Request};
use tdb_resp::policy::{self, Decision, Emulation, ReplyRewrite};
use tdb_resp::prefix::Prefix;

use crate::engine::{EngineError, Result};

/// A command as it will run.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Sent as the namespace's user; its reply rewritten as `reply` says.
    Send {
        args: Vec<Bytes>,
        reply: ReplyRewrite,
    },
    /// `KEYS <pattern>` (anchored), answered with `SCAN` steps as the administrator.
    Keys(Bytes),
    /// `SCAN` or `PUBSUB NUMSUB` (anchored), run as the administrator.
    Walk {
        args: Vec<Bytes>,
        reply: ReplyRewrite,
    },
    /// `DBSIZE`: the namespace's keys, counted by the session.
    DbSize,
    /// Answered without the server.
    Answer(Frame),
}

/// A refusal, worded as redis-server words errors.
pub fn refused(message: impl std::fmt::Display) -> EngineError {
    EngineError::Query {
        message: format!("ERR {message}"),
        sqlstate: String::new(),
        detail: Some("ERR".into()),
        position: None,
    }
}

/// The plan for `args` (the command name first) in the namespace of `prefix`, with `session`
/// the policy's state of this session (a transaction across `run`s).
pub fn plan(
    table: &CommandTable,
    prefix: &Prefix,
    session: &mut policy::Session,
    args: Vec<Bytes>,
) -> Result<Plan> {
    let request = Request::new(args).ok_or_else(|| refused("empty command"))?;
    let name = policy::command_name(table, &request).into_owned();
    match policy::decide(table, prefix, &request, session) {
        Decision::Refuse(message) => Err(EngineError::Query {
            message,
            sqlstate: String::new(),
            detail: Some("ERR".into()),
            position: None,
        }),
        Decision::Forward {
            reply: ReplyRewrite::Subscription { .. },
            ..
        } => Err(refused(format!(
            "'{name}' is not available in a query: subscriptions need a connection (use the Redis proxy)"
        ))),
        Decision::Forward { mut args, .. } if name == "keys" => {
            Ok(Plan::Keys(args.pop().unwrap_or_default()))
        }
        Decision::Forward { args, reply, .. } if policy::runs_as_administrator(&name) => {
            Ok(Plan::Walk { args, reply })
        }
        Decision::Forward { args, reply, .. } => Ok(Plan::Send { args, reply }),
        Decision::Emulate(Emulation::DbSize) => Ok(Plan::DbSize),
        Decision::Emulate(Emulation::Answer(frame)) => Ok(Plan::Answer(frame)),
        Decision::Emulate(Emulation::FlushDb | Emulation::InfoKeyspace | Emulation::Quit) => {
            Err(refused(format!(
                "'{name}' is not available in a query (the Redis proxy answers it)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(line: &str) -> Result<Plan> {
        // redis-server 7.0.15's COMMAND reply, as tdb-resp's policy tests read it.
        const COMMAND_REPLY: &[u8] =
            include_bytes!("../../../tdb-resp/src/policy/fixtures/command-7.0.15.resp");
        let mut buf = bytes::BytesMut::from(COMMAND_REPLY);
        let reply = tdb_resp::frame::ReplyDecoder::new(tdb_resp::frame::Limits::default())
            .decode(&mut buf)
            .expect("valid RESP")
            .expect("a whole reply");
        let table = CommandTable::from_reply(&reply).expect("table");
        let prefix = Prefix::new("t_1:").expect("prefix");
        let mut session = policy::Session::new(Bytes::from_static(b"acme"), false);
        let args = line
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        plan(&table, &prefix, &mut session, args)
    }

    fn words(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn queries_follow_the_proxy_policy_less_what_needs_a_connection() {
        let Ok(Plan::Send { args, .. }) = plan_of("SET k v") else {
            panic!("planned");
        };
        assert_eq!(args, words("SET t_1:k v"));
        assert_eq!(
            plan_of("KEYS a*").expect("planned"),
            Plan::Keys(Bytes::from_static(b"t_1:a*"))
        );
        let Ok(Plan::Walk { args, .. }) = plan_of("SCAN 0 COUNT 5000") else {
            panic!("planned");
        };
        assert_eq!(args, words("SCAN 0 COUNT 1000 MATCH t_1:*"));
        assert_eq!(plan_of("DBSIZE").expect("planned"), Plan::DbSize);
        for line in ["SUBSCRIBE news", "FLUSHDB", "FLUSHALL", "CONFIG GET x"] {
            let err = plan_of(line).expect_err(line);
            assert!(err.to_string().contains("ERR"), "{line}: {err}");
        }
    }
}
