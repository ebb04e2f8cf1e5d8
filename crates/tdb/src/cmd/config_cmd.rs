//! `tdb config set|show`: the CLI's saved API URL and key.

use crate::cli_config::CliConfig;
use crate::output;

use super::{Context, DEFAULT_API_URL};

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Save a setting: api-url or api-key
    Set {
        #[arg(value_parser = ["api-url", "api-key"])]
        name: String,
        value: String,
    },
    /// Show the saved settings (the key masked)
    Show,
}

fn mask(key: &str) -> String {
    let shown: String = key.chars().take(13).collect();
    format!("{shown}…")
}

pub fn run(ctx: &Context, command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Set { name, value } => {
            let mut config = CliConfig::load()?;
            match name.as_str() {
                "api-url" => config.api_url = Some(value),
                _ => config.api_key = Some(value),
            }
            let path = config.save()?;
            if !ctx.json {
                println!("saved {name} in {}", path.display());
            } else {
                output::json(&serde_json::json!({ "saved": name, "path": path }));
            }
        }
        ConfigCommand::Show => {
            let path = CliConfig::path()?;
            let url = ctx
                .saved
                .api_url
                .clone()
                .unwrap_or_else(|| format!("{DEFAULT_API_URL} (default)"));
            let key = ctx.saved.api_key.as_deref().map_or("(none)".into(), mask);
            let file = path.display().to_string();
            if ctx.json {
                output::json(&serde_json::json!({ "path": file, "api_url": url, "api_key": key }));
            } else {
                output::fields(&[("config", &file), ("api_url", &url), ("api_key", &key)]);
            }
        }
    }
    Ok(())
}
