//! `tdb mcp`: serves MCP over stdio for an MCP client that starts tdb as a subprocess. Tool
//! calls go to the API found like every other command's (--api-url/--api-key, TDB_API_URL/
//! TDB_API_KEY, the config file). Stdout carries MCP only; logs go to stderr.

use super::Context;

pub async fn run(ctx: &Context) -> anyhow::Result<()> {
    init_stderr_logs();
    if !ctx.client.has_key() {
        tracing::warn!(
            "no API key: tool calls will fail until TDB_API_KEY, --api-key or `tdb login` gives one"
        );
    }
    tracing::info!(api = %ctx.client.base_url(), "serving MCP on stdio");
    tdb_mcp::serve_stdio(tdb_mcp::Caller::Fixed(ctx.client.clone())).await?;
    Ok(())
}

fn init_stderr_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
