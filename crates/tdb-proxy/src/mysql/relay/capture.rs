//! DDL capture on workspaces in tenant mode. MariaDB commits DDL as it runs it (each DDL
//! statement ends the open transaction, and a failed one leaves nothing to roll back), so a DDL
//! statement whose result is OK is committed: it is queued on the blueprint before the client
//! hears that it completed, as the PostgreSQL relay and the REST endpoint do.

use super::SessionContext;

/// Queues one completed DDL statement on the workspace's blueprint (`on_workspace_ddl`); on
/// failure returns the warning to show the client in the OK's information (the statement did
/// run). Nothing for sessions that do not capture.
pub(super) async fn on_workspace_ddl(
    ctx: &SessionContext,
    statement: &str,
    tag: &str,
) -> Option<String> {
    let blueprint = ctx.capture_ddl_into.as_deref()?;
    let rows = [tdb_catalog::blueprints::NewDdl { statement, tag }];
    let e = ctx.catalog.queue_ddl(blueprint, &rows).await.err()?;
    tracing::error!(error = %e, blueprint, "DDL ran on a workspace but was not queued");
    Some(format!(
        "Warning: the DDL ran but could not be recorded in the blueprint's pending changes \
         ({e}); record it again with POST /workspaces/{{id}}/queries"
    ))
}
