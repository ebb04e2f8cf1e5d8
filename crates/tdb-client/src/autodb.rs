//! The AutoDB-compatible surface under `/api/v1`: provisioned databases (a schema and a role on
//! the shared PostgreSQL server) and registered connections to external databases. These
//! endpoints put their fields inside `data`, so each reply's `data` is that object and `raw` is
//! the whole body, envelope included.

use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

use crate::{Client, ClientError, Reply, encode};

/// A connection to register: `connection_string` is sent once and never returned.
#[derive(Debug, Clone, Serialize)]
pub struct NewConnection<'a> {
    pub name: &'a str,
    /// `postgresql`, `mysql`, … as the API accepts them.
    pub db_type: &'a str,
    pub connection_string: &'a str,
    /// Schemas introspection leaves out; the API's default when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_schemas: Option<&'a [String]>,
}

impl Client {
    /// Sends one `/api/v1` request; the reply's `data` is the body's `data` object.
    async fn v1(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply<Value>, ClientError> {
        let reply: Reply<Value> = self
            .request(method, &format!("/api/v1{path}"), body, true)
            .await?;
        let data = reply.raw.get("data").cloned().unwrap_or(Value::Null);
        Ok(Reply {
            data,
            raw: reply.raw,
        })
    }

    /// Provisions a database named `name` (1-200 characters). The reply carries its connection
    /// string, which is shown this once.
    pub async fn provision(&self, name: &str) -> Result<Reply<Value>, ClientError> {
        let body = json!({ "name": name });
        self.v1(Method::POST, "/provision", Some(&body)).await
    }

    /// The account's provisioned databases with `count` and `limit`.
    pub async fn list_provisioned(&self) -> Result<Reply<Value>, ClientError> {
        self.v1(Method::GET, "/provision", None).await
    }

    /// Drops a provisioned database (schema, data and role) and deactivates its connection.
    pub async fn delete_provisioned(&self, id: &str) -> Result<Reply<Value>, ClientError> {
        let path = format!("/provision/{}", encode(id));
        self.v1(Method::DELETE, &path, None).await
    }

    pub async fn create_connection(
        &self,
        conn: &NewConnection<'_>,
    ) -> Result<Reply<Value>, ClientError> {
        let body = serde_json::to_value(conn).map_err(|e| ClientError::Encode {
            detail: e.to_string(),
        })?;
        self.v1(Method::POST, "/connections", Some(&body)).await
    }

    pub async fn list_connections(&self) -> Result<Reply<Value>, ClientError> {
        self.v1(Method::GET, "/connections", None).await
    }

    pub async fn get_connection(&self, id: &str) -> Result<Reply<Value>, ClientError> {
        let path = format!("/connections/{}", encode(id));
        self.v1(Method::GET, &path, None).await
    }

    /// Deactivates a connection (`is_active: false`).
    pub async fn delete_connection(&self, id: &str) -> Result<Reply<Value>, ClientError> {
        let path = format!("/connections/{}", encode(id));
        self.v1(Method::DELETE, &path, None).await
    }

    /// Schemas, tables, columns, keys and indexes of the connection's database.
    pub async fn introspect_connection(&self, id: &str) -> Result<Reply<Value>, ClientError> {
        let path = format!("/connections/{}/introspect", encode(id));
        self.v1(Method::GET, &path, None).await
    }

    /// Runs `sql` on the connection's database with the connection's own credentials.
    pub async fn query_connection(&self, id: &str, sql: &str) -> Result<Reply<Value>, ClientError> {
        let path = format!("/connections/{}/query", encode(id));
        let body = json!({ "query": sql });
        self.v1(Method::POST, &path, Some(&body)).await
    }
}
