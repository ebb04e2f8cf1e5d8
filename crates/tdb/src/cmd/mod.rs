//! CLI commands: one file per resource. Each builds a request with the shared client, prints a
//! table (or the raw JSON with `--json`), and exits non-zero with the API's error on failure.

pub mod accounts;
pub mod apikeys;
pub mod blueprints;
pub mod config_cmd;
pub mod connections;
pub mod deployments;
pub mod invitations;
pub mod mcp;
pub mod projects;
pub mod provision;
pub mod servers;
pub mod tenants;
pub mod workspaces;

use tdb_client::Client;

use crate::cli_config::CliConfig;

pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8080";

#[derive(Debug, Clone, Default, clap::Args)]
pub struct Global {
    /// API base URL [default: config file, else http://127.0.0.1:8080]
    #[arg(long, global = true, env = "TDB_API_URL")]
    pub api_url: Option<String>,
    /// API key [default: config file]
    #[arg(long, global = true, env = "TDB_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print the API's JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}

/// What every command needs: the client, the output mode and the saved config.
pub struct Context {
    pub client: Client,
    pub json: bool,
    pub saved: CliConfig,
}

impl Context {
    /// Flag (or environment) first, then the config file, then the default URL.
    pub fn new(global: Global) -> anyhow::Result<Self> {
        let saved = CliConfig::load()?;
        let url = global
            .api_url
            .or_else(|| saved.api_url.clone())
            .unwrap_or_else(|| DEFAULT_API_URL.to_string());
        let key = global.api_key.or_else(|| saved.api_key.clone());
        Ok(Self {
            client: Client::new(&url, key),
            json: global.json,
            saved,
        })
    }

    /// Saves `key` (and the URL in use) as the CLI's defaults.
    pub fn save_key(&self, key: &str) -> anyhow::Result<std::path::PathBuf> {
        let config = CliConfig {
            api_url: Some(self.client.base_url().to_string()),
            api_key: Some(key.to_string()),
        };
        config.save()
    }

    /// Prints `raw` as JSON when asked to, else runs `human`.
    pub fn print(&self, raw: &serde_json::Value, human: impl FnOnce()) {
        if self.json {
            crate::output::json(raw);
        } else {
            human();
        }
    }
}

/// Reads a password from `--password` (or its environment variable) or one line of stdin.
pub fn read_password(flag: Option<String>, from_stdin: bool) -> anyhow::Result<String> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    anyhow::bail!("give the password with --password, TDB_PASSWORD or --password-stdin")
}
