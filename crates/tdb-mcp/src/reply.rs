//! API answers as MCP tool results. A success is the endpoint's fields as structured content
//! (and as JSON text, for clients that read only text). Every failure, the API's own errors
//! and a key or a network that is missing alike, is a tool error (`isError: true`) carrying
//! the API's code and message, so the model sees what went wrong; never a protocol error.

use rmcp::model::{CallToolResult, ContentBlock};
use serde::Serialize;
use serde_json::{Value, json};
use tdb_client::{ClientError, Reply};

use crate::caller::CallerError;

/// A reply's typed fields (the body without the envelope; an `/api/v1` reply's `data`).
pub(crate) fn fields<T: Serialize>(reply: Reply<T>) -> Value {
    // The types are the API's own, so they hold every field it sent; should one ever fail to
    // encode, the body as the API sent it still reaches the model.
    serde_json::to_value(&reply.data).unwrap_or(reply.raw)
}

/// The tool result of a call whose success is `value`.
pub(crate) fn result(outcome: Result<Value, ClientError>) -> CallToolResult {
    match outcome {
        Ok(value) => CallToolResult::structured(value),
        Err(e) => api_error(&e),
    }
}

pub(crate) fn api_error(e: &ClientError) -> CallToolResult {
    match e {
        ClientError::Api {
            status,
            code,
            message,
            body,
        } => {
            let mut detail = json!({ "code": code, "http_status": status, "error": message });
            for key in ["data", "detail"] {
                if let Some(v) = body.get(key) {
                    detail[key] = v.clone();
                }
            }
            failure(format!("{code} (HTTP {status}): {message}"), detail)
        }
        ClientError::NoKey => failure(
            "auth_required: no API key; set TDB_API_KEY or run `tdb login`".into(),
            json!({ "code": "auth_required", "error": e.to_string() }),
        ),
        other => failure(
            other.to_string(),
            json!({ "code": "unavailable", "error": other.to_string() }),
        ),
    }
}

pub(crate) fn caller_error(e: &CallerError) -> CallToolResult {
    let message = e.to_string();
    failure(
        format!("unauthorized: {message}"),
        json!({ "code": "unauthorized", "error": message }),
    )
}

/// A tool error the tool found itself, before calling the API.
pub(crate) fn bad_request(message: &str) -> CallToolResult {
    failure(
        format!("bad_request: {message}"),
        json!({ "code": "bad_request", "error": message }),
    )
}

fn failure(text: String, detail: Value) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    result.structured_content = Some(detail);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_are_tool_errors_with_code_and_message() {
        let e = ClientError::Api {
            status: 403,
            code: "forbidden".into(),
            message: "limit reached".into(),
            body: json!({ "success": false, "data": { "count": 3, "limit": 3 } }),
        };
        let r = api_error(&e);
        assert_eq!(r.is_error, Some(true));
        let s = r.structured_content.expect("structured");
        assert_eq!(s["code"], "forbidden");
        assert_eq!(s["http_status"], 403);
        assert_eq!(s["data"]["limit"], 3);
        let text = r.content[0].as_text().expect("text").text.clone();
        assert_eq!(text, "forbidden (HTTP 403): limit reached");
    }

    #[test]
    fn fields_are_the_typed_answer_without_the_envelope() {
        let reply = Reply {
            data: tdb_client::Message {
                message: "done".into(),
            },
            raw: json!({ "success": true, "http_status": 200, "code": "ok", "message": "done" }),
        };
        assert_eq!(fields(reply), json!({ "message": "done" }));
    }
}
