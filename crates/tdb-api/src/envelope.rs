//! The response envelope: every body is a JSON object with `success`, `http_status` and `code`,
//! plus `error` (and `field` when one input is to blame) on failures. Endpoint fields sit beside
//! them at the top level.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use tdb_catalog::CatalogError;
use tdb_core::ErrorCode;

/// A successful response: `code` (ok or created) plus the endpoint's fields.
pub struct Reply<T> {
    code: ErrorCode,
    body: T,
}

impl<T: Serialize> Reply<T> {
    pub fn ok(body: T) -> Self {
        Self {
            code: ErrorCode::Ok,
            body,
        }
    }

    pub fn created(body: T) -> Self {
        Self {
            code: ErrorCode::Created,
            body,
        }
    }
}

fn envelope(code: ErrorCode, fields: Map<String, Value>) -> Response {
    let mut out = Map::new();
    out.insert("success".into(), Value::Bool(code.status() < 400));
    out.insert("http_status".into(), Value::from(code.status()));
    out.insert("code".into(), Value::from(code.as_str()));
    out.extend(fields);
    let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(Value::Object(out))).into_response()
}

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        match serde_json::to_value(&self.body) {
            Ok(Value::Object(fields)) => envelope(self.code, fields),
            Ok(other) => {
                let mut fields = Map::new();
                fields.insert("data".into(), other);
                envelope(self.code, fields)
            }
            Err(e) => ApiError::internal(e).into_response(),
        }
    }
}

/// An error response. The message is safe to show a client; internal causes are logged under a
/// request id that the message carries instead.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
    /// More fields for the body (e.g. `sqlstate`); boxed, as most errors have none.
    pub extra: Option<Box<Map<String, Value>>>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            extra: None,
        }
    }

    /// Adds a field to the error body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// A 400 naming the offending field: `field 'email': must be a valid e-mail address`.
    pub fn field(field: &str, problem: impl std::fmt::Display) -> Self {
        Self {
            field: Some(field.to_string()),
            ..Self::bad_request(format!("field '{field}': {problem}"))
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// Logs `cause` with a fresh request id and answers 500 with that id only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let request_id = tdb_core::ids::new_id("req");
        tracing::error!(%request_id, error = %cause, "internal error");
        Self::new(
            ErrorCode::InternalError,
            format!("internal error (request id {request_id})"),
        )
    }

    /// Maps a catalog error, calling an absent record `what`.
    pub fn from_catalog(e: CatalogError, what: &str) -> Self {
        match e {
            CatalogError::NotFound => Self::not_found(format!("{what} not found")),
            CatalogError::Conflict(_) => Self::conflict(format!("{what} already exists")),
            // The catalog's own server has no room left: said as for a tenant's server.
            CatalogError::Db(tdb_catalog::SqlxError::Database(db))
                if db.code().as_deref() == Some("53100") =>
            {
                crate::workspace::out_of_space()
            }
            CatalogError::Db(sqlx_err) if is_unreachable(&sqlx_err) => {
                tracing::error!(error = %sqlx_err, "catalog unreachable");
                Self::new(
                    ErrorCode::ServiceUnavailable,
                    "catalog unreachable, try again",
                )
            }
            other => Self::internal(other),
        }
    }
}

fn is_unreachable(e: &tdb_catalog::SqlxError) -> bool {
    matches!(
        e,
        tdb_catalog::SqlxError::Io(_)
            | tdb_catalog::SqlxError::PoolTimedOut
            | tdb_catalog::SqlxError::PoolClosed
    )
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        Self::from_catalog(e, "resource")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Kept on the response, so `/api/v1` can answer the same error in AutoDB's shape.
        let facts = crate::compat::autodb_error::ErrorFacts {
            code: self.code,
            message: self.message.clone(),
            field: self.field.clone(),
            extra: self.extra.as_deref().cloned().unwrap_or_default(),
        };
        let mut fields = Map::new();
        fields.insert("error".into(), Value::from(self.message));
        if let Some(field) = self.field {
            fields.insert("field".into(), Value::from(field));
        }
        if let Some(extra) = self.extra {
            fields.extend(*extra);
        }
        let mut response = envelope(self.code, fields);
        response.extensions_mut().insert(facts);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub type ApiResult<T> = Result<Reply<T>, ApiError>;
