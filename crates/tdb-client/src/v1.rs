//! The AutoDB-compatible surface under `/api/v1`: provisioned databases (a schema and a role on
//! the shared PostgreSQL server) and registered connections to external databases. These
//! endpoints put their fields inside `data`, so each reply's `data` is that object and `raw` is
//! the whole body, envelope included.

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tdb_types::Data;
use tdb_types::autodb::{
    ConnectionDeactivated, ConnectionItem, ConnectionList, ConnectionQuery, ConnectionRows,
    CreateConnection, Introspection, ProvisionRequest, ProvisionedCreated, ProvisionedDeleted,
    ProvisionedList,
};

use crate::{Client, ClientError, Reply, encode};

impl Client {
    /// Sends one `/api/v1` request; the reply's `data` is the body's `data` object.
    async fn v1<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<Reply<T>, ClientError> {
        let reply: Reply<Data<T>> = self
            .request(method, &format!("/api/v1{path}"), body, true)
            .await?;
        Ok(Reply {
            data: reply.data.data,
            raw: reply.raw,
        })
    }

    /// Provisions a database named `name` (1-200 characters). The reply carries its connection
    /// string, which is shown this once.
    pub async fn provision(&self, name: &str) -> Result<Reply<ProvisionedCreated>, ClientError> {
        let body = ProvisionRequest {
            name: name.to_string(),
        };
        self.v1(Method::POST, "/provision", Some(&body)).await
    }

    /// The account's provisioned databases with `count` and `limit`.
    pub async fn list_provisioned(&self) -> Result<Reply<ProvisionedList>, ClientError> {
        self.v1(Method::GET, "/provision", None::<&Value>).await
    }

    /// Drops a provisioned database (schema, data and role) and deactivates its connection.
    pub async fn delete_provisioned(
        &self,
        id: &str,
    ) -> Result<Reply<ProvisionedDeleted>, ClientError> {
        let path = format!("/provision/{}", encode(id));
        self.v1(Method::DELETE, &path, None::<&Value>).await
    }

    /// Registers a connection; its `connection_string` is sent once and never returned.
    pub async fn create_connection(
        &self,
        conn: &CreateConnection,
    ) -> Result<Reply<ConnectionItem>, ClientError> {
        self.v1(Method::POST, "/connections", Some(conn)).await
    }

    pub async fn list_connections(&self) -> Result<Reply<ConnectionList>, ClientError> {
        self.v1(Method::GET, "/connections", None::<&Value>).await
    }

    pub async fn get_connection(&self, id: &str) -> Result<Reply<ConnectionItem>, ClientError> {
        let path = format!("/connections/{}", encode(id));
        self.v1(Method::GET, &path, None::<&Value>).await
    }

    /// Deactivates a connection (`is_active: false`).
    pub async fn delete_connection(
        &self,
        id: &str,
    ) -> Result<Reply<ConnectionDeactivated>, ClientError> {
        let path = format!("/connections/{}", encode(id));
        self.v1(Method::DELETE, &path, None::<&Value>).await
    }

    /// Schemas, tables, columns, keys and indexes of the connection's database.
    pub async fn introspect_connection(
        &self,
        id: &str,
    ) -> Result<Reply<Introspection>, ClientError> {
        let path = format!("/connections/{}/introspect", encode(id));
        self.v1(Method::GET, &path, None::<&Value>).await
    }

    /// Runs `sql` on the connection's database with the connection's own credentials.
    pub async fn query_connection(
        &self,
        id: &str,
        sql: &str,
    ) -> Result<Reply<ConnectionRows>, ClientError> {
        let path = format!("/connections/{}/query", encode(id));
        let body = ConnectionQuery {
            query: sql.to_string(),
        };
        self.v1(Method::POST, &path, Some(&body)).await
    }
}
