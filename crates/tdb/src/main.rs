//! The `tdb` binary: argument parsing and wiring only. `tdb serve` runs the platform; every other
//! verb is a CLI command that talks to a running server's REST API.

mod cli_config;
mod cmd;
mod config;
mod datadir;
mod fdlimit;
mod hints;
mod mcp_http;
mod output;
mod serve;
mod shared;
mod telemetry;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tdb",
    version,
    about = "tdb: a self-hosted multi-tenant database platform",
    long_about = "tdb: a self-hosted multi-tenant database platform.\n\n`tdb serve` runs the \
                  platform (REST API, managed database servers). Every other command talks to \
                  a running server's API, found through --api-url/--api-key, the TDB_API_URL/ \
                  TDB_API_KEY environment, or ~/.config/tdb/config.toml (written by `tdb login` \
                  and `tdb config set`)."
)]
struct Cli {
    #[command(flatten)]
    global: cmd::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: REST API and managed database servers
    Serve(config::ServeFlags),
    /// Create an account; saves its API key in the CLI config
    Signup(cmd::accounts::SignupArgs),
    /// Log in; mints a key per project and saves one in the CLI config
    Login(cmd::accounts::LoginArgs),
    /// Show or change the CLI config (API URL and key)
    #[command(subcommand)]
    Config(cmd::config_cmd::ConfigCommand),
    /// Manage projects
    #[command(subcommand)]
    Projects(cmd::projects::ProjectsCommand),
    /// Manage the current project's API keys
    #[command(subcommand)]
    Apikeys(cmd::apikeys::ApikeysCommand),
    /// Invite someone to sign up (servers where sign-up is by invitation)
    #[command(subcommand)]
    Invitations(cmd::invitations::InvitationsCommand),
    /// Design schemas in workspaces; run SQL; import; pending DDL
    #[command(subcommand)]
    Workspaces(cmd::workspaces::WorkspacesCommand),
    /// Inspect blueprints and their versions
    #[command(subcommand)]
    Blueprints(cmd::blueprints::BlueprintsCommand),
    /// Create and manage tenants (one database per customer)
    #[command(subcommand)]
    Tenants(cmd::tenants::TenantsCommand),
    /// Roll blueprint versions out to tenants
    #[command(subcommand)]
    Deployments(cmd::deployments::DeploymentsCommand),
    /// Run a data query on one tenant or all tenants of a blueprint (DDL is refused)
    Query(cmd::deployments::QueryArgs),
    /// Provision PostgreSQL databases: a schema and login role each on the shared server
    #[command(subcommand)]
    Provision(cmd::provision::ProvisionCommand),
    /// Register, inspect and introspect database connections
    #[command(subcommand)]
    Connections(cmd::connections::ConnectionsCommand),
    /// The database servers and what they hold; drain a shared server (operators only)
    #[command(subcommand)]
    Servers(cmd::servers::ServersCommand),
    /// Serve MCP on stdio, for an MCP client that starts tdb (tools call this CLI's API)
    Mcp,
}

fn main() -> ExitCode {
    let cli = parse();
    if !matches!(cli.command, Command::Serve(_)) {
        die_on_closed_pipe();
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(flags) => runtime.block_on(run_serve(flags)),
        other => runtime.block_on(run_cli(cli.global, other)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", hints::for_cli(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// `tdb serve` alone, so that its help lists its own flags: the client flags (`--api-url`,
/// `--api-key`, `--json`) are global to every other command, and `serve` ignores them.
#[derive(Parser)]
#[command(
    name = "tdb serve",
    bin_name = "tdb serve",
    version,
    about = "Run the platform: REST API and managed database servers"
)]
struct ServeCli {
    #[command(flatten)]
    flags: config::ServeFlags,
}

/// Parses the arguments; `tdb serve …` through [`ServeCli`].
fn parse() -> Cli {
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_else(|| "tdb".into());
    let rest: Vec<_> = args.collect();
    if rest.first().is_some_and(|a| a == "serve") {
        let serve = ServeCli::parse_from(std::iter::once(program).chain(rest.into_iter().skip(1)));
        return Cli {
            global: cmd::Global::default(),
            command: Command::Serve(serve.flags),
        };
    }
    Cli::parse()
}

/// A CLI command whose reader went away (`tdb workspaces schema myapp | head`) ends quietly, as
/// other Unix tools do, instead of panicking in `println!` on the broken pipe.
fn die_on_closed_pipe() {
    // SAFETY: called before any thread starts; SIG_DFL installs no handler, so no code runs in
    // signal context. Sockets are written with MSG_NOSIGNAL by the standard library, so only
    // writes to a closed pipe (stdout) raise SIGPIPE.
    #[allow(unsafe_code)]
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
}

async fn run_serve(flags: config::ServeFlags) -> anyhow::Result<()> {
    let config = config::Config::load(&flags)?;
    init_tracing(&config.log_format);
    serve::run(config).await
}

async fn run_cli(global: cmd::Global, command: Command) -> anyhow::Result<()> {
    let ctx = cmd::Context::new(global)?;
    match command {
        Command::Serve(_) => unreachable!("handled in main"),
        Command::Signup(args) => cmd::accounts::signup(&ctx, args).await,
        Command::Login(args) => cmd::accounts::login(&ctx, args).await,
        Command::Config(c) => cmd::config_cmd::run(&ctx, c),
        Command::Projects(c) => cmd::projects::run(&ctx, c).await,
        Command::Apikeys(c) => cmd::apikeys::run(&ctx, c).await,
        Command::Invitations(c) => cmd::invitations::run(&ctx, c).await,
        Command::Workspaces(c) => cmd::workspaces::run(&ctx, c).await,
        Command::Blueprints(c) => cmd::blueprints::run(&ctx, c).await,
        Command::Tenants(c) => cmd::tenants::run(&ctx, c).await,
        Command::Deployments(c) => cmd::deployments::run(&ctx, c).await,
        Command::Servers(c) => cmd::servers::run(&ctx, c).await,
        Command::Query(args) => cmd::deployments::query(&ctx, args).await,
        Command::Provision(c) => cmd::provision::run(&ctx, c).await,
        Command::Connections(c) => cmd::connections::run(&ctx, c).await,
        Command::Mcp => cmd::mcp::run(&ctx).await,
    }
}

fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    // Colours only on a terminal: escape codes in a redirected log are noise.
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
