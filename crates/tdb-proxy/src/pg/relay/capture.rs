//! DDL capture on workspaces in tenant mode: the DDL a transaction committed is queued on the
//! blueprint before the client hears that its query is done, as the REST endpoint does before
//! it answers.

use super::SessionContext;
use crate::pg::frame::PgError;
use crate::pg::sqlstate;

/// Queues committed DDL on the blueprint; on failure returns a warning (a `NoticeResponse`: the
/// statement did commit) to show the client.
pub(super) async fn queue_ddl(ctx: &SessionContext, ddl: &[(String, String)]) -> Option<Vec<u8>> {
    let blueprint = ctx.capture_ddl_into.as_deref()?;
    let rows: Vec<tdb_catalog::blueprints::NewDdl<'_>> = ddl
        .iter()
        .map(|(statement, tag)| tdb_catalog::blueprints::NewDdl { statement, tag })
        .collect();
    let e = ctx.catalog.queue_ddl(blueprint, &rows).await.err()?;
    tracing::error!(error = %e, blueprint, "DDL ran on a workspace but was not queued");
    let warning = PgError {
        severity: "WARNING",
        code: sqlstate::WARNING,
        message: format!(
            "the DDL ran but could not be recorded in the blueprint's pending changes ({e}); \
             record it again with POST /workspaces/{{id}}/queries"
        ),
    };
    let mut notice = Vec::new();
    warning.encode_notice(&mut notice);
    Some(notice)
}
