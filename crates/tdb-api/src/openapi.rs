//! The OpenAPI document's frame: title, version, bearer security. Paths and schemas come from
//! the handlers' annotations.

use utoipa::Modify;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "tdb",
        description = "Self-hosted multi-tenant database platform. Every response carries the \
                       envelope `success`, `http_status`, `code` (and `error` on failures); \
                       the fields documented per endpoint sit beside it at the top level."
    ),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    tags(
        (name = "meta", description = "Health, regions, error codes"),
        (name = "accounts", description = "Sign-up and login"),
        (name = "projects", description = "Projects and their proxy passwords"),
        (name = "apikeys", description = "API keys of the current project"),
        (name = "workspaces", description = "Design databases, queries, DDL capture, import"),
        (name = "blueprints", description = "Versioned schemas of tenant-mode workspaces"),
        (name = "tenants", description = "Customers' databases created from blueprints"),
        (name = "backups", description = "Backups of tenant databases, rollbacks, the backup policy"),
        (name = "logs", description = "The query log, its statistics and latency metrics"),
        (name = "deployments", description = "Blueprint versions rolled out to tenants"),
        (name = "admin", description = "Data queries across tenants; DDL refused"),
        (name = "autodb", description = "Schema-per-tenant databases and registered connections (/api/v1)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
