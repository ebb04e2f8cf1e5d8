//! The REST API's bodies as types: the server answers with them, `tdb-client` decodes into them
//! and `/openapi.json` describes them, so the three cannot drift apart. Only serde, utoipa,
//! chrono and tdb-core's domain enums; no IO.
//!
//! Every answer also carries the envelope (`success`, `http_status`, `code`) beside these
//! fields; [`envelope`] describes it and the error bodies.

pub mod accounts;
pub mod admin;
pub mod apikeys;
pub mod autodb;
pub mod backups;
pub mod blueprints;
pub mod deployments;
pub mod envelope;
pub mod isolation;
pub mod logs;
pub mod meta;
pub mod projects;
pub mod schema;
pub mod servers;
pub mod tenants;
pub mod version;
pub mod workspaces;

pub use accounts::*;
pub use apikeys::*;
pub use blueprints::*;
pub use envelope::*;
pub use meta::*;
pub use projects::*;
pub use workspaces::*;

use chrono::{DateTime, SecondsFormat, Utc};

/// A time as the API writes it (RFC 3339 in UTC with `Z`), for printing what an answer said.
pub fn wire_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}
