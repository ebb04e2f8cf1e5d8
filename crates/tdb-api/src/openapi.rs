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
        (name = "servers", description = "The database servers and what they hold (operators only)"),
        (name = "console", description = "The web console's session: a cookie instead of a key, with a CSRF token"),
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

/// Completes the document once the routes' paths are in: every success body is shown with the
/// envelope beside its fields, every error status declared without a body gets the error body,
/// and every operation gets a `default` error (the 401, 403, 413, 500 and 503 any request may
/// meet), so a client generated from the document can read every answer.
pub fn finish(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::ToSchema;
    let components = doc.components.get_or_insert_with(Default::default);
    let mut schemas = Vec::new();
    tdb_types::Envelope::schemas(&mut schemas);
    tdb_types::ErrorBody::schemas(&mut schemas);
    schemas.push((
        tdb_types::Envelope::name().into_owned(),
        <tdb_types::Envelope as utoipa::PartialSchema>::schema(),
    ));
    schemas.push((
        tdb_types::ErrorBody::name().into_owned(),
        <tdb_types::ErrorBody as utoipa::PartialSchema>::schema(),
    ));
    components.schemas.extend(schemas);
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            complete_responses(&mut operation.responses);
        }
    }
}

fn complete_responses(responses: &mut utoipa::openapi::Responses) {
    use utoipa::openapi::{RefOr, Response};
    for (status, response) in responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if status.starts_with('2') {
            for content in response.content.values_mut() {
                if let RefOr::T(content) = content
                    && let Some(schema) = content.schema.take()
                {
                    content.schema = Some(with_envelope(schema));
                }
            }
        } else if response.content.is_empty() {
            response
                .content
                .insert("application/json".into(), error_content());
        }
    }
    let mut default = Response::new(
        "Any other error: the envelope with `error` (and `field` when one input is to blame)",
    );
    default
        .content
        .insert("application/json".into(), error_content());
    responses
        .responses
        .entry("default".into())
        .or_insert(RefOr::T(default));
}

fn error_content() -> utoipa::openapi::RefOr<utoipa::openapi::Content> {
    let schema = utoipa::openapi::Ref::from_schema_name("ErrorBody");
    utoipa::openapi::RefOr::T(utoipa::openapi::Content::new(Some(schema)))
}

fn with_envelope(
    body: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{AllOfBuilder, Schema};
    let all = AllOfBuilder::new()
        .item(utoipa::openapi::Ref::from_schema_name("Envelope"))
        .item(body)
        .build();
    utoipa::openapi::RefOr::T(Schema::AllOf(all))
}
