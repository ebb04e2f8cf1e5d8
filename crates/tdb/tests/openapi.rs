//! `/openapi.json` describes every answer: each operation has a body schema for its success
//! status and for each error status it declares (plus a `default` error), success bodies carry
//! the envelope beside typed fields, and every `$ref` names a schema the document holds. A
//! client generated from the document can then read whatever the server answers.

mod common;

use common::*;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The JSON schema of a response, or `None` when it has no `application/json` body.
fn body_schema(response: &Value) -> Option<&Value> {
    response["content"]["application/json"]["schema"]
        .as_object()
        .map(|_| &response["content"]["application/json"]["schema"])
}

/// Every `$ref` anywhere under `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// A success body is the envelope and the endpoint's own typed fields, not prose.
fn check_success(op: &str, status: &str, schema: &Value, problems: &mut Vec<String>) {
    let parts = schema["allOf"].as_array();
    let envelope = parts.and_then(|p| p.first()).map(|p| &p["$ref"]);
    if envelope != Some(&Value::from("#/components/schemas/Envelope")) {
        problems.push(format!("{op} {status}: body lacks the envelope: {schema}"));
    }
    let fields = parts.and_then(|p| p.get(1));
    let typed = fields.is_some_and(|f| {
        f["$ref"].is_string() || f["oneOf"].is_array() || f["properties"].is_object()
    });
    if !typed {
        problems.push(format!("{op} {status}: body is not a named type: {schema}"));
    }
}

/// The error body an operation answers with: AutoDB's shape under `/api/v1`, tdb's envelope
/// elsewhere.
fn error_schema(op: &str) -> &'static str {
    if op.contains(" /api/v1/") {
        "#/components/schemas/AutoDbError"
    } else {
        "#/components/schemas/ErrorBody"
    }
}

fn check_operation(op: &str, operation: &Value, problems: &mut Vec<String>) {
    let Some(responses) = operation["responses"].as_object() else {
        problems.push(format!("{op}: no responses"));
        return;
    };
    let mut successes = 0;
    for (status, response) in responses {
        let Some(schema) = body_schema(response) else {
            problems.push(format!("{op} {status}: no body schema"));
            continue;
        };
        if status.starts_with('2') {
            successes += 1;
            check_success(op, status, schema, problems);
        } else if schema["$ref"] != error_schema(op) {
            problems.push(format!(
                "{op} {status}: error body is not {}: {schema}",
                error_schema(op)
            ));
        }
    }
    if successes != 1 {
        problems.push(format!("{op}: {successes} success statuses, expected 1"));
    }
    if !responses.contains_key("default") {
        problems.push(format!("{op}: no default error"));
    }
}

#[tokio::test]
async fn every_operation_has_response_schemas_for_success_and_errors() {
    let s = start().await;
    let doc: Value = reqwest::get(format!("{}/openapi.json", s.api_url))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    let mut problems = Vec::new();
    let mut operations = 0;
    for (path, item) in paths {
        for method in METHODS {
            if item[method].is_object() {
                operations += 1;
                check_operation(&format!("{method} {path}"), &item[method], &mut problems);
            }
        }
    }
    assert!(operations >= 59, "only {operations} operations");

    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let name = r.trim_start_matches("#/components/schemas/");
        if !schemas.contains_key(name) {
            problems.push(format!("{r} names no schema"));
        }
    }
    let error = &doc["components"]["schemas"]["ErrorBody"]["properties"];
    for field in ["success", "http_status", "code", "error", "field"] {
        if !error[field].is_object() {
            problems.push(format!("ErrorBody lacks {field}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
