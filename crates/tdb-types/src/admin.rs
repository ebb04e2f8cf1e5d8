//! Data queries across a blueprint's tenants.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tdb_core::TenantStatus;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminQuery {
    pub blueprint: String,
    /// SQL statements, or Redis commands one per line or one per element.
    pub query: crate::workspaces::QueryText,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_tenants: Option<bool>,
}

/// The last statement's columns and rows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Rows {
    pub columns: Vec<String>,
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<Value>>,
    pub row_count: u64,
    pub truncated: bool,
}

/// The answer for one tenant (`tenant_id`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantRows {
    #[serde(flatten)]
    pub rows: Rows,
    pub tenant_id: String,
    pub execution_time: String,
}

/// One tenant's entry in an `all_tenants` answer: its rows, or why it has none.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Vec<Object>>>)]
    pub rows: Option<Vec<Vec<Value>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A tenant that was not queried: its status (absent when it is gone or was queried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TenantStatus>,
    pub tenant_id: String,
}

impl TenantOutcome {
    pub fn rows(tenant_id: String, r: Rows) -> Self {
        Self {
            columns: Some(r.columns),
            rows: Some(r.rows),
            row_count: Some(r.row_count),
            truncated: Some(r.truncated),
            error: None,
            status: None,
            tenant_id,
        }
    }

    pub fn failed(tenant_id: String, error: String) -> Self {
        Self {
            columns: None,
            rows: None,
            row_count: None,
            truncated: None,
            error: Some(error),
            status: None,
            tenant_id,
        }
    }

    /// A tenant that was not queried, with why and its status (`None`: it is gone).
    pub fn not_ready(tenant_id: String, error: String, status: Option<TenantStatus>) -> Self {
        Self {
            status,
            ..Self::failed(tenant_id, error)
        }
    }
}

/// The answer for every tenant of the blueprint (`all_tenants`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AllTenantRows {
    pub results: Vec<TenantOutcome>,
    pub total_tenants: usize,
    pub execution_time: String,
}

/// `POST /admin/query` answers one tenant's rows or every tenant's.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AdminAnswer {
    All(AllTenantRows),
    One(TenantRows),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn both_answers_decode_to_their_own_shape() {
        let one = json!({ "columns": ["n"], "rows": [[1]], "row_count": 1, "truncated": false,
                          "tenant_id": "acme", "execution_time": "3ms" });
        let all = json!({ "results": [{ "error": "tenant is not ready", "tenant_id": "b" }],
                          "total_tenants": 1, "execution_time": "5ms" });
        let one: AdminAnswer = serde_json::from_value(one).expect("one tenant");
        let all: AdminAnswer = serde_json::from_value(all.clone()).expect("all tenants");
        assert!(matches!(one, AdminAnswer::One(ref r) if r.tenant_id == "acme"));
        assert!(matches!(all, AdminAnswer::All(ref a) if a.results[0].rows.is_none()));
        // A failed tenant's entry carries its error and no empty rows.
        assert_eq!(
            serde_json::to_value(&all).expect("encodes")["results"][0],
            json!({ "error": "tenant is not ready", "tenant_id": "b" })
        );
    }
}
