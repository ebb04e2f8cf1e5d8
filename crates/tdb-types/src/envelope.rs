//! The envelope every answer carries, the error bodies, and the small shapes several resources
//! share (`{message}`, the `/api/v1` `{data}` wrapper).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// The fields every answer carries beside the endpoint's own.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Envelope {
    /// True for 1xx-3xx answers.
    pub success: bool,
    pub http_status: u16,
    /// `ok` or `created` on success; an error code from `GET /errors` otherwise.
    pub code: String,
}

/// An error answer: the envelope, a message safe to show, and the input to blame when there is
/// one. Some errors add fields (`sqlstate`, `statement_index`, `detail`, `data`, ...), which
/// land in `extra`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub success: bool,
    pub http_status: u16,
    pub code: String,
    pub error: String,
    /// The request field the error is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The `/api/v1` endpoints' validation problems (422), FastAPI-style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Vec<ValidationProblem>>,
    /// Fields particular to the error, such as `sqlstate`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One problem of a 422 answer's `detail` list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ValidationProblem {
    /// Where: `["body", "name"]`.
    #[schema(value_type = Vec<Object>)]
    pub loc: Vec<Value>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub ctx: Option<Value>,
}

/// An answer that only says what happened.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub message: String,
}

/// The `/api/v1` endpoints put their fields inside `data`, as the reference does.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Data<T> {
    pub data: T,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn error_bodies_keep_their_particular_fields() {
        let body = json!({ "success": false, "http_status": 400, "code": "bad_request",
                           "error": "syntax error", "field": "query", "sqlstate": "42601" });
        let e: ErrorBody = serde_json::from_value(body.clone()).expect("decodes");
        assert_eq!(e.extra["sqlstate"], "42601");
        assert_eq!(serde_json::to_value(&e).expect("encodes"), body);
    }
}
