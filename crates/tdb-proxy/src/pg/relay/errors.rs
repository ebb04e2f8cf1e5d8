//! Server errors the client reads in other words: a permission error on DDL in a tenant
//! database becomes the platform's message, the cancel the proxy sent for a statement that
//! outlived `query_timeout_ms` says so, and a refusal the proxy raised in a `DO` block loses the
//! block's context line.

use std::borrow::Cow;

use super::SessionContext;
use super::state::Pending;
use crate::pg::frame;

/// The message the spec gives for DDL attempted on a tenant database.
pub const DDL_ON_TENANT: &str =
    "DDL not allowed on tenant databases. Deploy schema through blueprints.";

/// Why the error that ended a unit of work is not relayed as the server sent it.
#[derive(Default)]
pub(super) struct Rewrite {
    /// DDL on a tenant database, refused by the server's privileges.
    pub ddl_refused: bool,
    /// The proxy cancelled the unit for outliving `query_timeout_ms`.
    pub timed_out: bool,
    /// The error is a refusal the proxy raised itself.
    pub refused: bool,
}

impl Rewrite {
    /// The error the client gets in place of `body`; `None`: the server's as it is.
    pub fn apply(&self, ctx: &SessionContext, body: &[u8]) -> Option<Vec<u8>> {
        let message = if self.ddl_refused {
            Some(Cow::Borrowed(DDL_ON_TENANT))
        } else if self.timed_out {
            Some(Cow::Owned(overran_message(ctx)))
        } else {
            None
        };
        if message.is_none() && !self.refused {
            return None;
        }
        let mut replaced = Vec::with_capacity(128);
        match message {
            Some(message) => frame::rewrite_error(body, &message, &mut replaced),
            None => frame::without_context(body, &mut replaced),
        }
        Some(replaced)
    }
}

/// What a statement the proxy cancelled for outliving `query_timeout_ms` fails with.
fn overran_message(ctx: &SessionContext) -> String {
    format!(
        "canceling statement: it ran longer than query_timeout_ms ({} ms)",
        ctx.query_timeout.map_or(0, |t| t.as_millis())
    )
}

/// Whether the work that failed was DDL (decided only on a permission error, off the hot path).
pub(super) fn was_ddl(p: &Pending) -> bool {
    tdb_sql::classify_all(&p.text)
        .map(|all| all.iter().any(|s| s.kind == tdb_sql::Kind::Ddl))
        .unwrap_or(false)
}
