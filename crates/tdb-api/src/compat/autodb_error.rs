//! Errors of the AutoDB-compatible surface (`/api/v1`) in AutoDB's shape: `success: false` and
//! `error: {code, message, details}` with the code in upper case (`NOT_FOUND`,
//! `VALIDATION_ERROR`), plus FastAPI's `detail` list on a 422, as the AutoDB pages show.
//!
//! Every error is an [`ApiError`](crate::envelope::ApiError), which leaves its facts on the
//! response; one middleware in front of the whole router (so that authentication, unknown
//! paths, wrong methods, body limits, rate limits and panics are covered too) renders the
//! `/api/v1` ones again in this shape. The rest of the API keeps tdb's envelope.

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use tdb_core::ErrorCode;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

/// Where AutoDB's surface lives.
const PREFIX: &str = "/api/v1";

/// What an error said, kept on its response for [`render`].
#[derive(Debug, Clone)]
pub struct ErrorFacts {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    pub extra: Map<String, Value>,
}

/// AutoDB's `ErrorDetail`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The code in upper case, e.g. `NOT_FOUND`, `VALIDATION_ERROR`.
    pub code: String,
    pub message: String,
    /// A 422's list of problems; otherwise what else the error knows (the field to blame,
    /// the account's `count` and `limit`, a `sqlstate`), or null.
    pub details: Option<Value>,
}

/// An `/api/v1` error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct AutoDbError {
    pub success: bool,
    /// Equal to the HTTP status (tdb's envelope keeps it here too).
    pub http_status: u16,
    /// Null, or what the error carries for the caller (e.g. `{count, limit}` at the limit).
    pub data: Option<Value>,
    pub error: ErrorDetail,
    /// On a 422, FastAPI's list of problems (`{loc, msg, type, input?, ctx?}`), as `details`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Vec<Value>>,
}

impl From<ErrorFacts> for AutoDbError {
    fn from(facts: ErrorFacts) -> Self {
        let mut extra = facts.extra;
        let data = extra.remove("data");
        let detail = match extra.remove("detail") {
            Some(Value::Array(items)) => Some(items),
            Some(other) => Some(vec![other]),
            None => None,
        };
        let details = match &detail {
            Some(items) => Some(Value::Array(items.clone())),
            None => {
                let mut known = Map::new();
                if let Some(field) = facts.field {
                    known.insert("field".into(), Value::from(field));
                }
                if let Some(Value::Object(fields)) = &data {
                    known.extend(fields.clone());
                }
                known.extend(extra);
                (!known.is_empty()).then_some(Value::Object(known))
            }
        };
        Self {
            success: false,
            http_status: facts.code.status(),
            data,
            error: ErrorDetail {
                code: facts.code.as_str().to_ascii_uppercase(),
                message: facts.message,
                details,
            },
            detail,
        }
    }
}

fn is_autodb(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Middleware: renders the errors of `/api/v1` requests in AutoDB's shape; the status and
/// `Retry-After` stay as they were.
pub async fn render(req: Request, next: Next) -> Response {
    let autodb = is_autodb(req.uri().path());
    let response = next.run(req).await;
    if !autodb {
        return response;
    }
    let Some(facts) = response.extensions().get::<ErrorFacts>().cloned() else {
        return response;
    };
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let mut rendered = (response.status(), axum::Json(AutoDbError::from(facts))).into_response();
    if let Some(value) = retry_after {
        rendered.headers_mut().insert(header::RETRY_AFTER, value);
    }
    rendered
}

/// Points every error response of the `/api/v1` operations in `doc` at [`AutoDbError`] (adding
/// the 401 every one of them can answer), and adds its schemas to the components.
pub fn document(doc: &mut OpenApi) {
    let body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(AutoDbError::name())))
        .build();
    for (path, item) in doc.paths.paths.iter_mut() {
        if !is_autodb(path) {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            point_errors_at(op, &body);
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    let mut schemas = vec![(AutoDbError::name().into_owned(), AutoDbError::schema())];
    AutoDbError::schemas(&mut schemas);
    components.schemas.extend(schemas);
}

fn point_errors_at(op: &mut Operation, body: &utoipa::openapi::Content) {
    let responses = &mut op.responses.responses;
    responses.entry("401".into()).or_insert_with(|| {
        RefOr::T(
            ResponseBuilder::new()
                .description("no or an unknown API key")
                .build(),
        )
    });
    for (status, response) in responses.iter_mut() {
        // `default` stands for the errors any request can get (401, 413, 500, 503): they take
        // AutoDB's shape here too.
        let is_error = status == "default" || status.parse::<u16>().is_ok_and(|s| s >= 400);
        if let (true, RefOr::T(response)) = (is_error, response) {
            if response.description.is_empty() {
                response.description = format!("error {status}");
            }
            response
                .content
                .insert("application/json".into(), RefOr::T(body.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn facts(code: ErrorCode, extra: Value) -> ErrorFacts {
        ErrorFacts {
            code,
            message: "what went wrong".into(),
            field: None,
            extra: extra.as_object().cloned().unwrap_or_default(),
        }
    }

    fn shape(f: ErrorFacts) -> Value {
        serde_json::to_value(AutoDbError::from(f)).expect("serialize")
    }

    #[test]
    fn codes_are_upper_case_and_the_message_is_kept() {
        let body = shape(facts(ErrorCode::NotFound, json!({})));
        assert_eq!(
            body,
            json!({"success": false, "http_status": 404, "data": null,
                   "error": {"code": "NOT_FOUND", "message": "what went wrong", "details": null}})
        );
    }

    #[test]
    fn validation_problems_are_details_and_fastapis_detail() {
        let problems =
            json!([{"loc": ["body", "name"], "msg": "Field required", "type": "missing"}]);
        let body = shape(facts(
            ErrorCode::ValidationError,
            json!({"detail": problems}),
        ));
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(body["error"]["details"], problems);
        assert_eq!(body["detail"], problems);
    }

    #[test]
    fn what_else_an_error_knows_goes_into_details() {
        let mut f = facts(
            ErrorCode::Forbidden,
            json!({"data": {"count": 3, "limit": 3}}),
        );
        f.field = Some("name".into());
        let body = shape(f);
        assert_eq!(body["data"], json!({"count": 3, "limit": 3}));
        assert_eq!(
            body["error"]["details"],
            json!({"field": "name", "count": 3, "limit": 3})
        );
        assert!(body.get("detail").is_none());
        let body = shape(facts(
            ErrorCode::PermissionDenied,
            json!({"sqlstate": "42501"}),
        ));
        assert_eq!(body["error"]["details"], json!({"sqlstate": "42501"}));
    }

    #[test]
    fn only_the_autodb_prefix_is_rendered_again() {
        assert!(is_autodb("/api/v1"));
        assert!(is_autodb("/api/v1/connections/x"));
        assert!(!is_autodb("/api/v10/x"));
        assert!(!is_autodb("/tenants/api/v1"));
    }
}
