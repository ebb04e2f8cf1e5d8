//! A typed client for tdb's REST API, shared by the CLI, the MCP server and the tests. Each call
//! returns the typed fields and the raw JSON body (which `--json` prints as the API sent it).

mod transport;
mod v1;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use tdb_types::*;
pub use transport::{InProcessBody, InProcessService};

use transport::{Outgoing, Transport};

/// An API answer: the typed fields and the whole body.
#[derive(Debug, Clone)]
pub struct Reply<T> {
    pub data: T,
    pub raw: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an error envelope.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
        body: Value,
    },
    /// The request did not get an answer; `detail` is the chain of causes, said once.
    #[error("cannot reach the tdb API at {url}: {detail}")]
    Transport { url: String, detail: String },
    /// The API URL is not one a request can go to (most often: it lacks `http://`).
    #[error(
        "the API URL '{url}' is not an http:// or https:// URL: give one such as \
         http://127.0.0.1:8080 with --api-url, TDB_API_URL or `tdb config set api-url URL`"
    )]
    BadUrl { url: String },
    #[error("cannot encode the request body: {detail}")]
    Encode { detail: String },
    /// An in-process API service could not be called or its answer not read.
    #[error("in-process call of the tdb API failed: {detail}")]
    InProcess { detail: String },
    #[error("unexpected answer from the tdb API (HTTP {status}): {detail}")]
    Decode { status: u16, detail: String },
    #[error("no API key: run `tdb login`, `tdb config set api-key KEY`, or pass --api-key")]
    NoKey,
}

impl ClientError {
    /// The envelope's `code` when the API answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    transport: Transport,
    base: String,
    key: Option<String>,
}

impl Client {
    pub fn new(base_url: &str, api_key: Option<String>) -> Self {
        Self {
            transport: Transport::http(),
            base: base_url.trim_end_matches('/').to_string(),
            key: api_key,
        }
    }

    /// A client that calls `service` (the API's router) in-process instead of over the
    /// network, for callers that live inside `tdb serve`.
    pub fn in_process<S, B>(service: S, api_key: Option<String>) -> Self
    where
        S: tower::Service<
                http::Request<http_body_util::Full<bytes::Bytes>>,
                Response = http::Response<B>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<tower::BoxError>,
    {
        Self {
            transport: Transport::in_process(service),
            base: "in-process:".to_string(),
            key: api_key,
        }
    }

    /// Adds `value` to the extensions of every request an in-process client sends (such as
    /// the caller's `ConnectInfo`); a network client ignores it.
    pub fn with_extension<T: Clone + Send + Sync + 'static>(&self, value: T) -> Self {
        let mut client = self.clone();
        if let Transport::InProcess { extensions, .. } = &mut client.transport {
            extensions.insert(value);
        }
        client
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    pub fn with_key(&self, key: &str) -> Self {
        Self {
            key: Some(key.to_string()),
            ..self.clone()
        }
    }

    /// Sends a request and decodes the envelope; `authed` requests need a key.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        authed: bool,
    ) -> Result<Reply<T>, ClientError> {
        let key = if authed {
            Some(self.key.as_deref().ok_or(ClientError::NoKey)?)
        } else {
            None
        };
        let json = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Encode {
                detail: e.to_string(),
            })?;
        let out = Outgoing {
            method,
            url: format!("{}{}", self.base, path),
            path,
            key,
            json,
        };
        let (status, bytes) = self.transport.send(out).await?;
        let raw: Value = serde_json::from_slice(&bytes).map_err(|_| ClientError::Decode {
            status,
            detail: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        })?;
        if status >= 400 {
            let (code, message) = error_of(&raw);
            return Err(ClientError::Api {
                status,
                code,
                message,
                body: raw,
            });
        }
        let data = serde_json::from_value(raw.clone()).map_err(|e| ClientError::Decode {
            status,
            detail: e.to_string(),
        })?;
        Ok(Reply { data, raw })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Reply<T>, ClientError> {
        self.request(Method::GET, path, None::<&Value>, true).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<Reply<T>, ClientError> {
        self.request(Method::POST, path, Some(body), true).await
    }

    async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<Reply<T>, ClientError> {
        self.request(Method::DELETE, path, None::<&Value>, true)
            .await
    }

    pub async fn health(&self) -> Result<Reply<Health>, ClientError> {
        self.request(Method::GET, "/health", None::<&Value>, false)
            .await
    }

    pub async fn signup(&self, req: &SignupRequest) -> Result<Reply<SignupResponse>, ClientError> {
        self.request(Method::POST, "/signup", Some(req), false)
            .await
    }

    /// Logs in: a key is minted for every project, or for `project` (id or name) alone.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        project: Option<&str>,
    ) -> Result<Reply<LoginResponse>, ClientError> {
        let body = LoginRequest {
            email: email.to_string(),
            password: password.to_string(),
            project: project.map(str::to_string),
        };
        self.request(Method::POST, "/login", Some(&body), false)
            .await
    }

    pub async fn list_projects(&self) -> Result<Reply<ProjectList>, ClientError> {
        self.get("/projects").await
    }

    pub async fn create_project(&self, name: &str) -> Result<Reply<CreatedProject>, ClientError> {
        self.post(
            "/projects",
            &CreateProject {
                name: name.to_string(),
            },
        )
        .await
    }

    pub async fn switch_project(
        &self,
        id_or_name: &str,
    ) -> Result<Reply<SwitchedProject>, ClientError> {
        self.post(
            &format!("/projects/{}/switch", encode(id_or_name)),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn delete_project(
        &self,
        id_or_name: &str,
    ) -> Result<Reply<DeletedProject>, ClientError> {
        self.delete(&format!("/projects/{}", encode(id_or_name)))
            .await
    }

    pub async fn rotate_proxy_password(
        &self,
        id_or_name: &str,
    ) -> Result<Reply<RotatedPassword>, ClientError> {
        let path = format!("/projects/{}/proxy-password", encode(id_or_name));
        self.post(&path, &serde_json::json!({})).await
    }

    pub async fn list_api_keys(&self) -> Result<Reply<KeyList>, ClientError> {
        self.get("/apikeys").await
    }

    pub async fn create_api_key(
        &self,
        req: &CreateApiKey,
    ) -> Result<Reply<CreatedKey>, ClientError> {
        self.post("/apikeys", req).await
    }

    /// A single-use invitation to sign up (an admin key of the inviting account).
    pub async fn create_invitation(
        &self,
        req: &CreateInvitation,
    ) -> Result<Reply<CreatedInvitation>, ClientError> {
        self.post("/invitations", req).await
    }

    pub async fn revoke_api_key(&self, id: &str) -> Result<Reply<Message>, ClientError> {
        self.delete(&format!("/apikeys/{}", encode(id))).await
    }

    pub async fn list_workspaces(&self) -> Result<Reply<WorkspaceList>, ClientError> {
        self.get("/workspaces").await
    }

    pub async fn create_workspace(
        &self,
        name: &str,
        database: &str,
        mode: &str,
    ) -> Result<Reply<CreatedWorkspace>, ClientError> {
        let body = CreateWorkspace {
            name: name.to_string(),
            database: database.to_string(),
            mode: mode.to_string(),
        };
        self.post("/workspaces", &body).await
    }

    pub async fn get_workspace(&self, name: &str) -> Result<Reply<WorkspaceDetail>, ClientError> {
        self.get(&format!("/workspaces/{}", encode(name))).await
    }

    pub async fn delete_workspace(
        &self,
        name: &str,
    ) -> Result<Reply<DeletedWorkspace>, ClientError> {
        self.delete(&format!("/workspaces/{}", encode(name))).await
    }

    pub async fn query_workspace(
        &self,
        name: &str,
        sql: &str,
    ) -> Result<Reply<QueryResponse>, ClientError> {
        let path = format!("/workspaces/{}/queries", encode(name));
        let body = QueryRequest { query: sql.into() };
        self.post(&path, &body).await
    }

    pub async fn workspace_schema(
        &self,
        name: &str,
    ) -> Result<Reply<schema::WorkspaceSchema>, ClientError> {
        self.get(&format!("/workspaces/{}/schema", encode(name)))
            .await
    }

    pub async fn import_schema(
        &self,
        name: &str,
        body: &workspaces::ImportRequest,
    ) -> Result<Reply<ImportResponse>, ClientError> {
        self.post(&format!("/workspaces/{}/schema", encode(name)), body)
            .await
    }

    pub async fn workspace_diff(&self, name: &str) -> Result<Reply<DiffList>, ClientError> {
        self.get(&format!("/workspaces/{}/diff", encode(name)))
            .await
    }

    pub async fn skip_ddl(&self, name: &str, id: &str) -> Result<Reply<Message>, ClientError> {
        self.delete(&format!("/workspaces/{}/diff/{}", encode(name), encode(id)))
            .await
    }

    pub async fn revert_ddl(&self, name: &str, id: &str) -> Result<Reply<Message>, ClientError> {
        let path = format!("/workspaces/{}/diff/{}/revert", encode(name), encode(id));
        self.post(&path, &serde_json::json!({})).await
    }

    pub async fn workspace_settings(
        &self,
        name: &str,
    ) -> Result<Reply<SettingsResponse>, ClientError> {
        self.get(&format!("/workspaces/{}/settings", encode(name)))
            .await
    }

    pub async fn update_settings(
        &self,
        name: &str,
        patch: &workspaces::SettingsPatch,
    ) -> Result<Reply<SettingsSaved>, ClientError> {
        let path = format!("/workspaces/{}/settings", encode(name));
        self.request(Method::PATCH, &path, Some(patch), true).await
    }

    /// Every server (an operator's admin key only).
    pub async fn list_servers(&self) -> Result<Reply<servers::ServerList>, ClientError> {
        self.get("/servers").await
    }

    /// Marks a shared server `draining` or `active` (an operator's admin key only).
    pub async fn update_server(
        &self,
        name: &str,
        status: servers::ServerStatus,
    ) -> Result<Reply<servers::ServerList>, ClientError> {
        let path = format!("/servers/{}", encode(name));
        let body = servers::UpdateServer { status };
        self.request(Method::PATCH, &path, Some(&body), true).await
    }

    /// Asks for a full base backup of the server's WAL archive (an operator's admin key only).
    pub async fn request_server_backup(
        &self,
        name: &str,
    ) -> Result<Reply<servers::BackupRequested>, ClientError> {
        let path = format!("/servers/{}/backup", encode(name));
        self.request(Method::POST, &path, Some(&serde_json::json!({})), true)
            .await
    }

    pub async fn list_tenants(&self) -> Result<Reply<tenants::TenantList>, ClientError> {
        self.get("/tenants").await
    }

    /// `databases`: a list of [`tenants::DatabaseRequest`] (or the same fields as JSON).
    pub async fn create_tenant(
        &self,
        tenant_id: &str,
        databases: &(impl Serialize + ?Sized),
    ) -> Result<Reply<tenants::CreatedTenant>, ClientError> {
        #[derive(Serialize)]
        struct Body<'a, D: ?Sized> {
            tenant_id: &'a str,
            databases: &'a D,
        }
        self.post(
            "/tenants",
            &Body {
                tenant_id,
                databases,
            },
        )
        .await
    }

    /// Mints another proxy login for a tenant: `role` is `read` or `write`.
    pub async fn create_tenant_credential(
        &self,
        name: &str,
        role: &str,
        blueprint: Option<&str>,
    ) -> Result<Reply<tenants::CreatedCredential>, ClientError> {
        let body = tenants::CreateCredential {
            role: role.to_string(),
            blueprint: blueprint.map(str::to_string),
        };
        self.post(&format!("/tenants/{}/credentials", encode(name)), &body)
            .await
    }

    pub async fn get_tenant(
        &self,
        name: &str,
    ) -> Result<Reply<tenants::TenantDetail>, ClientError> {
        self.get(&format!("/tenants/{}", encode(name))).await
    }

    pub async fn delete_tenant(
        &self,
        name: &str,
        hard: bool,
    ) -> Result<Reply<tenants::DeletedTenant>, ClientError> {
        let query = if hard { "?hard=true" } else { "" };
        self.delete(&format!("/tenants/{}{query}", encode(name)))
            .await
    }

    /// `action`: restore, suspend or resume. A restore's answer also lists where each database
    /// stands (`restore_tenant` decodes it).
    pub async fn tenant_action(
        &self,
        name: &str,
        action: &str,
    ) -> Result<Reply<tenants::TenantTransition>, ClientError> {
        let path = format!("/tenants/{}/{}", encode(name), encode(action));
        self.post(&path, &serde_json::json!({})).await
    }

    /// Restores a tenant from the trash.
    pub async fn restore_tenant(
        &self,
        name: &str,
    ) -> Result<Reply<tenants::RestoredTenant>, ClientError> {
        let path = format!("/tenants/{}/restore", encode(name));
        self.post(&path, &serde_json::json!({})).await
    }

    /// Starts a backup of every database of the tenant.
    pub async fn backup_tenant(
        &self,
        name: &str,
    ) -> Result<Reply<backups::BackupStarted>, ClientError> {
        self.post(
            &format!("/tenants/{}/backup", encode(name)),
            &serde_json::json!({}),
        )
        .await
    }

    /// Moves one database of the tenant to another server (`PATCH /tenants/{id}/isolation`).
    pub async fn move_tenant(
        &self,
        name: &str,
        request: &tenants::MoveRequest,
    ) -> Result<Reply<tenants::MoveStarted>, ClientError> {
        let path = format!("/tenants/{}/isolation", encode(name));
        self.request(Method::PATCH, &path, Some(request), true)
            .await
    }

    /// `POST /tenants/{id}/recover`: back to a moment inside the tenant's `pitr` window.
    pub async fn recover_tenant(
        &self,
        name: &str,
        request: &tenants::RecoverRequest,
    ) -> Result<Reply<tenants::RecoveryStarted>, ClientError> {
        let path = format!("/tenants/{}/recover", encode(name));
        self.request(Method::POST, &path, Some(request), true).await
    }

    /// `POST /tenants/{id}/recover-undo`: the original back, while it is kept.
    pub async fn recover_undo(
        &self,
        name: &str,
    ) -> Result<Reply<tenants::TenantTransition>, ClientError> {
        let path = format!("/tenants/{}/recover-undo", encode(name));
        self.request(Method::POST, &path, Some(&serde_json::json!({})), true)
            .await
    }

    pub async fn tenant_backups(
        &self,
        name: &str,
    ) -> Result<Reply<backups::BackupList>, ClientError> {
        self.get(&format!("/tenants/{}/backups", encode(name)))
            .await
    }

    /// Starts a rollback of the tenant to the backup at `storage_path`.
    pub async fn rollback_tenant(
        &self,
        name: &str,
        storage_path: &str,
    ) -> Result<Reply<backups::RollbackStarted>, ClientError> {
        self.post(
            &format!("/tenants/{}/rollback", encode(name)),
            &backups::RollbackRequest {
                storage_path: storage_path.to_string(),
            },
        )
        .await
    }

    pub async fn backup_policy(
        &self,
        project: &str,
    ) -> Result<Reply<backups::BackupPolicyResponse>, ClientError> {
        self.get(&format!("/projects/{}/backup-policy", encode(project)))
            .await
    }

    pub async fn update_backup_policy(
        &self,
        project: &str,
        patch: &backups::PolicyPatch,
    ) -> Result<Reply<backups::BackupPolicyResponse>, ClientError> {
        let path = format!("/projects/{}/backup-policy", encode(project));
        self.request(Method::PATCH, &path, Some(patch), true).await
    }

    /// `query`: pairs such as `("type", "error")`, `("since", "24h")`, `("limit", "100")`.
    pub async fn tenant_logs(
        &self,
        name: &str,
        query: &[(&str, String)],
    ) -> Result<Reply<logs::LogPage>, ClientError> {
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let sep = if qs.is_empty() { "" } else { "?" };
        self.get(&format!(
            "/tenants/{}/logs{sep}{}",
            encode(name),
            qs.join("&")
        ))
        .await
    }

    pub async fn tenant_log_stats(&self, name: &str) -> Result<Reply<logs::LogStats>, ClientError> {
        self.get(&format!("/tenants/{}/logs/stats", encode(name)))
            .await
    }

    pub async fn tenant_metrics(
        &self,
        name: &str,
        window: &str,
        bucket: Option<&str>,
    ) -> Result<Reply<logs::Metrics>, ClientError> {
        let bucket = bucket.map_or_else(String::new, |b| format!("&bucket={}", encode(b)));
        self.get(&format!(
            "/tenants/{}/metrics?window={}{bucket}",
            encode(name),
            encode(window)
        ))
        .await
    }

    pub async fn workspace_metrics(
        &self,
        name: &str,
        window: &str,
    ) -> Result<Reply<logs::Metrics>, ClientError> {
        self.get(&format!(
            "/workspaces/{}/metrics?window={}",
            encode(name),
            encode(window)
        ))
        .await
    }

    pub async fn tenant_deployments(
        &self,
        name: &str,
    ) -> Result<Reply<tenants::TenantDeployments>, ClientError> {
        self.get(&format!("/tenants/{}/deployments", encode(name)))
            .await
    }

    pub async fn list_deployments(
        &self,
    ) -> Result<Reply<deployments::DeploymentList>, ClientError> {
        self.get("/deployments").await
    }

    /// `body`: a [`deployments::CreateDeployment`] (or the same fields as JSON).
    pub async fn create_deployment(
        &self,
        body: &(impl Serialize + ?Sized),
    ) -> Result<Reply<deployments::CreatedDeployment>, ClientError> {
        self.post("/deployments", body).await
    }

    pub async fn get_deployment(
        &self,
        id: &str,
    ) -> Result<Reply<deployments::DeploymentDetail>, ClientError> {
        self.get(&format!("/deployments/{}", encode(id))).await
    }

    /// `body`: an [`admin::AdminQuery`] (or the same fields as JSON).
    pub async fn admin_query(
        &self,
        body: &(impl Serialize + ?Sized),
    ) -> Result<Reply<admin::AdminAnswer>, ClientError> {
        self.post("/admin/query", body).await
    }

    pub async fn list_blueprints(&self) -> Result<Reply<BlueprintList>, ClientError> {
        self.get("/blueprints").await
    }

    pub async fn get_blueprint(&self, name: &str) -> Result<Reply<BlueprintDetail>, ClientError> {
        self.get(&format!("/blueprints/{}", encode(name))).await
    }

    pub async fn blueprint_versions(&self, name: &str) -> Result<Reply<VersionList>, ClientError> {
        self.get(&format!("/blueprints/{}/versions", encode(name)))
            .await
    }
}

/// The messages of a FastAPI-style `detail: [{loc, msg}]` list, for an error without `error`.
/// The code and message of an error body: tdb's envelope (`code`, `error`), or on `/api/v1`
/// AutoDB's `error: {code, message}`, whose upper-case code is given in tdb's form
/// (`NOT_FOUND` as `not_found`), so callers match one set of codes.
fn error_of(raw: &Value) -> (String, String) {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (code, message) = match raw.get("error") {
        Some(detail @ Value::Object(_)) => (
            text(detail, "code").to_ascii_lowercase(),
            text(detail, "message"),
        ),
        _ => (text(raw, "code"), text(raw, "error")),
    };
    let message = Some(message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| validation_detail(raw));
    (code, message)
}

fn validation_detail(body: &Value) -> String {
    let items = body.get("detail").and_then(Value::as_array);
    let messages: Vec<String> = items
        .into_iter()
        .flatten()
        .map(|d| {
            let loc: Vec<String> = d["loc"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_string))
                .collect();
            let msg = d["msg"].as_str().unwrap_or("invalid");
            if loc.is_empty() {
                msg.to_string()
            } else {
                format!("{}: {msg}", loc.join("."))
            }
        })
        .collect();
    messages.join("; ")
}

/// Percent-encodes one path segment.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(super::encode("My Project/x"), "My%20Project%2Fx");
        assert_eq!(super::encode("tdb_abc"), "tdb_abc");
    }

    #[test]
    fn errors_are_read_in_both_shapes() {
        use serde_json::json;
        let tdb = json!({"success": false, "code": "not_found", "error": "tenant 'x' not found"});
        assert_eq!(
            super::error_of(&tdb),
            ("not_found".into(), "tenant 'x' not found".into())
        );
        let autodb = json!({"success": false, "data": null,
            "error": {"code": "NOT_FOUND", "message": "connection not found", "details": null}});
        assert_eq!(
            super::error_of(&autodb),
            ("not_found".into(), "connection not found".into())
        );
        let fastapi = json!({"detail": [{"loc": ["body", "name"], "msg": "Field required"}]});
        assert_eq!(
            super::error_of(&fastapi),
            (String::new(), "body.name: Field required".into())
        );
    }
}
