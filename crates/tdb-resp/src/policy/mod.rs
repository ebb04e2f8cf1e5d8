//! The command policy of the Redis proxy: for each request of a tenant, whether it is forwarded
//! (with its keys, patterns and channels moved into the tenant's prefix, and how the reply must
//! be rewritten), answered by the proxy itself, or refused. Default deny: a command the
//! server's table does not know, or one no rule here admits, is refused with an `-ERR` naming
//! it. Pure: the proxy keeps a [`Session`] per client and carries the decisions out.
//!
//! The rules, in short (the per-tenant ACL user upstream is the second wall behind them):
//! - key-addressed data commands: keys at the table's key positions are prefixed; blocking
//!   pops, LMPOP/ZMPOP and XREAD/XREADGROUP have the prefix stripped from their replies;
//! - KEYS and SCAN MATCH patterns are anchored in the prefix (SCAN without MATCH gets one);
//!   SORT's BY/GET patterns are prefixed; RANDOMKEY, MIGRATE, MOVE, COPY ... DB are refused;
//! - scripts: EVAL-family declared keys are prefixed; FUNCTION and FCALL are refused;
//! - pub/sub channels are prefixed, patterns anchored, keyspace notifications refused;
//! - DBSIZE, FLUSHDB, INFO keyspace, SELECT 0, ACL WHOAMI and QUIT are answered by the proxy;
//! - server, replication, cluster, ACL and CONFIG commands, CLIENT beyond one's own
//!   connection, RESET (it would log the server connection out of the tenant's user) refused;
//! - MULTI/EXEC: each queued command is decided as it is queued; one refused makes EXEC answer
//!   EXECABORT, as redis-server does after a queueing error.

mod keyspace;
mod pubsub;
mod reply;
mod rules;

use std::borrow::Cow;

use bytes::Bytes;

use crate::command::{CommandFlag, CommandTable};
use crate::frame::{Frame, Request};
use crate::prefix::Prefix;

pub use pubsub::{leaves_subscribed_mode, rewrite_pubsub};
pub use reply::{ReplyRewrite, rewrite};

/// What the policy remembers of one client connection.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// The name the client logged in with (what ACL WHOAMI answers).
    pub user: Bytes,
    /// Whether the connection speaks RESP3 (`HELLO 3`).
    pub resp3: bool,
    /// RESP2 only: the connection is in subscribed mode, where redis-server accepts nothing
    /// but the subscribe family, PING, QUIT and RESET. Set by the policy when it forwards a
    /// subscription; the proxy clears it when an unsubscribe confirmation counts 0.
    pub subscribed: bool,
    multi: Option<Multi>,
}

#[derive(Debug, Clone, Default)]
struct Multi {
    /// A command was refused while queueing: EXEC must abort.
    dirty: bool,
    /// How each queued command's reply in EXEC's array is rewritten.
    queued: Vec<ReplyRewrite>,
}

impl Session {
    pub fn new(user: impl Into<Bytes>, resp3: bool) -> Self {
        Self {
            user: user.into(),
            resp3,
            ..Self::default()
        }
    }

    /// Whether a MULTI is open.
    pub fn in_multi(&self) -> bool {
        self.multi.is_some()
    }

    /// Inside MULTI: the proxy queued a command of its own (a TTL rule's EXPIRE) after the
    /// client's; its result is taken out of EXEC's array.
    pub fn queue_hidden(&mut self) {
        if let Some(multi) = &mut self.multi {
            multi.queued.push(ReplyRewrite::Hidden);
        }
    }

    /// Inside MULTI: the proxy refused a command after the policy queued it (a key limit), so
    /// EXEC must abort.
    pub fn spoil_transaction(&mut self) {
        if let Some(multi) = &mut self.multi {
            multi.dirty = true;
        }
    }
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send `args` to the server; rewrite its reply as `reply` says. `keys` counts the key
    /// arguments (for the query log); `blocking` is set for a command that may block.
    Forward {
        args: Vec<Bytes>,
        reply: ReplyRewrite,
        keys: usize,
        blocking: Option<Blocking>,
    },
    /// Answered by the proxy.
    Emulate(Emulation),
    /// Answered with this error line (without the leading `-`).
    Refuse(String),
}

/// How long a blocking command may wait on the server, as it asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Blocking {
    For(std::time::Duration),
    Forever,
}

/// Requests the proxy answers itself, for the tenant alone.
#[derive(Debug, Clone, PartialEq)]
pub enum Emulation {
    /// A fixed answer (SELECT 0, ACL WHOAMI).
    Answer(Frame),
    /// The number of keys in the prefix (SCAN MATCH prefix*).
    DbSize,
    /// Every key in the prefix unlinked, SCAN and UNLINK in batches.
    FlushDb,
    /// INFO's keyspace section with the tenant's own count.
    InfoKeyspace,
    /// +OK, then the proxy closes the connection.
    Quit,
}

/// Decides `request` for the tenant whose keys live under `prefix`.
pub fn decide(
    table: &CommandTable,
    prefix: &Prefix,
    request: &Request,
    session: &mut Session,
) -> Decision {
    let raw = request.name();
    if raw.eq_ignore_ascii_case(b"multi") {
        return multi(request, session);
    }
    if raw.eq_ignore_ascii_case(b"exec") {
        return exec(request, session);
    }
    if raw.eq_ignore_ascii_case(b"discard") {
        session.multi = None;
        return forward_as_is(request);
    }
    if raw.eq_ignore_ascii_case(b"quit") {
        return Decision::Emulate(Emulation::Quit);
    }
    // Spelled out only where a rule or a message needs it: not on the path of every request.
    let name = || String::from_utf8_lossy(raw).to_ascii_lowercase();
    if session.subscribed && !session.resp3 {
        let name = name();
        if !pubsub::allowed_when_subscribed(&name) {
            return Decision::Refuse(format!(
                "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT \
                 are allowed in this context"
            ));
        }
    }
    let in_multi = session.multi.is_some();
    let decision = rules::decide(table, prefix, request, session, in_multi);
    match &mut session.multi {
        None => decision,
        Some(multi) => queue(multi, decision, &name()),
    }
}

/// Inside MULTI: a forwarded command is queued by the server (its reply is `+QUEUED`, its
/// rewrite kept for EXEC's array); anything else dirties the transaction.
fn queue(multi: &mut Multi, decision: Decision, name: &str) -> Decision {
    match decision {
        Decision::Forward {
            args,
            reply,
            keys,
            blocking: _,
        } => {
            multi.queued.push(reply);
            Decision::Forward {
                args,
                reply: ReplyRewrite::Keep,
                keys,
                blocking: None,
            }
        }
        Decision::Refuse(message) => {
            multi.dirty = true;
            Decision::Refuse(message)
        }
        Decision::Emulate(_) => {
            multi.dirty = true;
            Decision::Refuse(format!(
                "ERR '{name}' cannot be queued in MULTI through tdb (the proxy answers it itself)"
            ))
        }
    }
}

fn multi(request: &Request, session: &mut Session) -> Decision {
    if session.multi.is_none() {
        session.multi = Some(Multi::default());
    }
    // Nested: the server answers its own error and the transaction goes on.
    forward_as_is(request)
}

fn exec(request: &Request, session: &mut Session) -> Decision {
    let Some(multi) = session.multi.take() else {
        // The server answers "EXEC without MULTI".
        return forward_as_is(request);
    };
    if multi.dirty {
        return Decision::Forward {
            args: vec![Bytes::from_static(b"DISCARD")],
            reply: ReplyRewrite::Replace(Frame::Error(Bytes::from_static(
                b"EXECABORT Transaction discarded because of previous errors.",
            ))),
            keys: 0,
            blocking: None,
        };
    }
    Decision::Forward {
        args: request.args().to_vec(),
        reply: ReplyRewrite::Exec(multi.queued),
        keys: 0,
        blocking: None,
    }
}

fn forward_as_is(request: &Request) -> Decision {
    Decision::Forward {
        args: request.args().to_vec(),
        reply: ReplyRewrite::Keep,
        keys: 0,
        blocking: None,
    }
}

/// Whether the server reports this command as one that must not run inside MULTI.
fn no_multi(table: &CommandTable, name: &[u8]) -> bool {
    table
        .get(name)
        .is_some_and(|c| c.has_flag(&CommandFlag::NoMulti))
}

/// The command's name for logs: lower case, with the subcommand of a container command
/// (`client|setname`); never an argument.
/// Whether `request` leaves nothing behind on its server connection and never waits there: a
/// keyed data command that cannot block, or PING, ECHO, TIME. Such requests may share one
/// server connection with other sessions of the same user; everything else (transactions,
/// WATCH, subscriptions, scripts, CLIENT, HELLO, blocking commands) needs a connection of the
/// session's own.
pub fn keeps_no_state(table: &CommandTable, request: &Request) -> bool {
    let name = request.name();
    if [&b"ping"[..], b"echo", b"time"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
    {
        return true;
    }
    table.lookup(request.args()).is_ok_and(|command| {
        rules::plain_data(command)
            && !command.has_flag(&crate::command::CommandFlag::Blocking)
            && !command.in_category(&crate::command::AclCategory::Blocking)
    })
}

/// Whether a command the policy forwards (by its table name) must run as the server's
/// administrator, over a connection of the proxy's own, because no tenant's user may run it:
/// `KEYS` and `SCAN` ignore a user's key patterns, and `PUBSUB NUMSUB` its channel patterns,
/// so the users lack them and the policy anchors their arguments in the prefix instead.
pub fn runs_as_administrator(name: &str) -> bool {
    matches!(
        name,
        "keys" | "scan" | "pubsub|numsub" | "pubsub|shardnumsub"
    )
}

/// The table's name of the command `request` runs (`container|sub` for a subcommand), or its
/// first argument in lower case when the table does not know it.
pub fn command_name<'t>(table: &'t CommandTable, request: &Request) -> Cow<'t, str> {
    match table.lookup(request.args()) {
        Ok(command) => Cow::Borrowed(command.name()),
        Err(_) => Cow::Owned(String::from_utf8_lossy(request.name()).to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
