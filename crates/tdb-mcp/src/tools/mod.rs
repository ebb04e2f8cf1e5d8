//! The tools, one file per resource of the API. Each file holds its argument types (their doc
//! comments become the JSON schema's descriptions) and a tool router that `TdbMcp` joins.

mod connections;
mod deployments;
mod provision;
mod tenants;
mod workspaces;

use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of the tools that name one connection.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionRef {
    /// The connection's id (a provisioned database's `connection_id` works too).
    pub connection_id: String,
}
