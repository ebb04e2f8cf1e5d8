//! Extractors that answer in the envelope: JSON bodies whose errors name the field, path
//! parameters, and the API-key authentication of a request.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use tdb_catalog::api_keys::KeyOwner;
use tdb_core::secrets::api_key_digest;
use tdb_core::{ErrorCode, KeyRole, ScopeType, Tier};

use crate::AppState;
use crate::envelope::ApiError;

/// A JSON request body. Any content type is read as JSON (so `curl -d` just works); malformed
/// JSON, a missing field, an unknown field or a wrong type is a 400 that names the field.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        parse_json(&body_bytes(req, state).await?).map(ApiJson)
    }
}

/// The request body, or 413 in the envelope when it is over the limit, 408 when it did not
/// arrive within the listener's deadline.
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large");
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
        while let Some(e) = cause {
            if let Some(timeout) = e.downcast_ref::<crate::listener::BodyTimeout>() {
                return ApiError::new(ErrorCode::RequestTimeout, timeout.to_string());
            }
            cause = e.source();
        }
        ApiError::bad_request(rejection.body_text())
    })
}

/// Deserializes a JSON body, turning serde's errors into messages that name the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is required: a JSON object",
        ));
    }
    // serde would also build a struct from an array, by position; the contract is objects.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        json_error(&path, &inner)
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

fn json_error(path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    if matches!(
        e.classify(),
        Category::Syntax | Category::Eof | Category::Io
    ) {
        return ApiError::bad_request(format!("malformed JSON: {e}"));
    }
    // serde reports errors about a field it never reached (missing, unknown) at the parent path,
    // naming the field between backticks.
    let text = strip_position(&e.to_string());
    let named = text
        .split('`')
        .nth(1)
        .filter(|_| text.starts_with("missing field") || text.starts_with("unknown field"));
    let field = match (named, path) {
        (Some(name), "." | "") => name.to_string(),
        // An unknown field is already the last segment of the path; a missing one is not.
        (Some(name), p) if p == name || p.ends_with(&format!(".{name}")) => p.to_string(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, "." | "") => return ApiError::bad_request(format!("invalid request body: {text}")),
        (None, p) => p.to_string(),
    };
    let problem = if text.starts_with("missing field") {
        "is required".to_string()
    } else if text.starts_with("unknown field") {
        "is not a known field".to_string()
    } else {
        text
    };
    ApiError::field(&field, problem)
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// A path parameter; a malformed one is a 400 in the envelope.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// Query-string parameters; a malformed one is a 400 in the envelope.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// The client's address, when the request came over the network (not in-process).
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The caller, authenticated by `Authorization: Bearer <api_key>`.
#[derive(Debug, Clone)]
pub struct Auth {
    pub key_id: String,
    pub project_id: String,
    pub account_id: String,
    pub role: KeyRole,
    pub scope_type: ScopeType,
    pub scope_values: Vec<String>,
    pub tier: Tier,
    /// Authenticated by the web console's session cookie (see [`crate::console`]), not by an
    /// `Authorization` header.
    pub console: bool,
}

impl Auth {
    fn from_owner(owner: KeyOwner) -> Result<Self, ApiError> {
        Ok(Self {
            console: false,
            role: owner.role,
            scope_type: owner.scope_type,
            key_id: owner.key_id,
            project_id: owner.project_id,
            account_id: owner.account_id,
            scope_values: owner.scope_values,
            tier: owner.tier,
        })
    }

    /// Refuses keys whose role is below `needed` (admin > write > read).
    pub fn require_role(&self, needed: KeyRole) -> Result<(), ApiError> {
        let rank = |r: KeyRole| match r {
            KeyRole::Read => 0,
            KeyRole::Write => 1,
            KeyRole::Admin => 2,
        };
        if rank(self.role) >= rank(needed) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::RoleRequired,
            format!(
                "this operation needs a key with role '{needed}'; this key's role is '{}'",
                self.role
            ),
        ))
    }

    /// Refuses keys scoped to tenants, or to workspaces other than `name`.
    pub fn require_workspace(&self, name: &str) -> Result<(), ApiError> {
        if self.sees_workspace(name) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::ScopeDenied,
            format!(
                "this key is scoped to {} {:?} and cannot reach workspace '{name}'",
                self.scope_type, self.scope_values
            ),
        ))
    }

    /// True when the key's scope covers workspace `name`.
    pub fn sees_workspace(&self, name: &str) -> bool {
        match self.scope_type {
            ScopeType::Project => true,
            ScopeType::Workspace => self.scope_values.iter().any(|v| v == name),
            ScopeType::Tenant | ScopeType::Provision => false,
        }
    }

    /// True when the key's scope covers tenant `name`.
    pub fn sees_tenant(&self, name: &str) -> bool {
        match self.scope_type {
            ScopeType::Project => true,
            ScopeType::Tenant => self.scope_values.iter().any(|v| v == name),
            ScopeType::Workspace | ScopeType::Provision => false,
        }
    }

    /// Refuses keys scoped to workspaces, or to tenants other than `name`.
    pub fn require_tenant(&self, name: &str) -> Result<(), ApiError> {
        if self.sees_tenant(name) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::ScopeDenied,
            format!(
                "this key is scoped to {} {:?} and cannot reach tenant '{name}'",
                self.scope_type, self.scope_values
            ),
        ))
    }

    /// Project-wide operations (deployments): refuses scoped keys.
    pub fn require_project_scope(&self) -> Result<(), ApiError> {
        if self.scope_type == ScopeType::Project {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::ScopeDenied,
            format!(
                "this key is scoped to {} {:?}; this operation needs a project-scoped key",
                self.scope_type, self.scope_values
            ),
        ))
    }

    /// Account- and project-wide management (projects, keys) needs an admin key scoped to the
    /// whole project.
    pub fn require_project_admin(&self) -> Result<(), ApiError> {
        self.require_role(KeyRole::Admin)?;
        if self.scope_type != ScopeType::Project {
            return Err(ApiError::new(
                ErrorCode::ScopeDenied,
                format!(
                    "this key is scoped to {} {:?}; managing projects and keys needs a \
                     project-scoped key",
                    self.scope_type, self.scope_values
                ),
            ));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            // The web console's session cookie, where no key is given.
            let owner = crate::console::session_owner(parts, state)
                .await?
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::AuthRequired, "Authorization header required")
                })?;
            let auth = Auth {
                console: true,
                ..Auth::from_owner(owner)?
            };
            return admit(state, auth);
        };
        let key = header
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, key) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "Authorization header must be 'Bearer <api_key>'",
                )
            })?;
        let owner = state
            .catalog
            .authenticate_key(&api_key_digest(key))
            .await
            .map_err(|e| ApiError::from_catalog(e, "API key"))?
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "Invalid API key"))?;
        admit(state, Auth::from_owner(owner)?)
    }
}

/// Counts the request against the tier's quota, per project per minute.
fn admit(state: &AppState, auth: Auth) -> Result<Auth, ApiError> {
    let limit = state.limits.per_minute(auth.tier);
    if let Err(retry_after) = state.limits.projects.take(&auth.project_id, limit) {
        return Err(ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                ErrorCode::RateLimited,
                format!("rate limit exceeded: max {limit} requests per minute"),
            )
        });
    }
    Ok(auth)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Deserialize;

    use super::parse_json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        email: String,
        count: Option<u32>,
        tags: Option<Vec<String>>,
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"count": 1}"#, Some("email")),
            (r#"{"email": 5}"#, Some("email")),
            (r#"{"email": "a", "count": "x"}"#, Some("count")),
            (r#"{"email": "a", "tags": [1]}"#, Some("tags[0]")),
            (r#"{"email": "a", "other": 1}"#, Some("other")),
            (r#"{"email": "#, None),
            (r#"{"email": "a"} x"#, None),
            (r#"["a@example.com", 1]"#, None),
        ];
        for (body, field) in cases {
            let err = parse_json::<Sample>(body.as_bytes()).expect_err(body);
            assert_eq!(err.field.as_deref(), field, "{body}: {}", err.message);
            assert_eq!(err.code, tdb_core::ErrorCode::BadRequest);
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "\\PC{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("(email|count|tags|\\PC{0,6})", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Err(e) = parse_json::<Sample>(&bytes) {
                prop_assert_eq!(e.code, tdb_core::ErrorCode::BadRequest);
                prop_assert!(!e.message.is_empty());
            }
        }

        #[test]
        fn arbitrary_json_is_accepted_or_refused_with_a_message(value in json_value()) {
            let bytes = serde_json::to_vec(&value).expect("serialize");
            match parse_json::<Sample>(&bytes) {
                Ok(sample) => prop_assert!(value["email"].as_str() == Some(sample.email.as_str())),
                Err(e) => prop_assert!(!e.message.is_empty()),
            }
        }
    }
}
