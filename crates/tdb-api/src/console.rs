//! The web console: three static files shipped in the binary (a page, its script and its
//! stylesheet) and the session they run on. The page calls the REST API like any client; what
//! it authenticates with is an HttpOnly cookie, never an API key it could read.
//!
//! - `POST /console/session` signs in with an e-mail and password (a key is minted for the
//!   session and revoked at sign-out) or with an API key (the session acts with that key). The
//!   cookie holds a random token; the catalog holds its digest and the key's id.
//! - The API's authentication ([`crate::extract::Auth`]) takes the cookie where no
//!   `Authorization` header is given. A request that can change something (any method but GET
//!   and HEAD) must then also carry `X-TDB-CSRF` with the session's CSRF token, which the page
//!   learns from `GET /console/session`: a page of another site can make a browser send the
//!   cookie (where `SameSite=Strict` does not already stop it) but cannot read that token.
//! - Every console file is served with a Content-Security-Policy that allows scripts and styles
//!   from the console's own files only.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tdb_catalog::api_keys::KeyOwner;
use tdb_catalog::console::{ConsoleSession, NewSession};
use tdb_core::secrets::{self, api_key_digest};
use tdb_core::{ErrorCode, KeyRole, ProjectStatus, ScopeType};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, Reply};
use crate::extract::{ApiJson, Auth};
use crate::mint::MintedKey;

/// The cookie that carries a console session's token over plain HTTP.
pub const COOKIE_NAME: &str = "tdb_console";
/// Its name behind HTTPS: browsers take a `__Host-` cookie only with `Secure`, `Path=/` and no
/// `Domain`, so a neighbouring subdomain cannot plant one.
pub const SECURE_COOKIE_NAME: &str = "__Host-tdb_console";
/// The header that carries a console session's CSRF token.
pub const CSRF_HEADER: &str = "x-tdb-csrf";
/// How long a console session lasts.
const SESSION_HOURS: i64 = 12;

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/app.js");
const STYLE: &str = include_str!("../console/app.css");

/// Scripts, styles and connections from the console's own origin only: no inline script, no
/// `eval`, no framing.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                      form-action 'self'; frame-ancestors 'none'";

/// The session endpoints, part of the API's document.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in, current, sign_out))
        .routes(routes!(switch))
}

/// The console's files, and `/` sending a browser to them.
pub fn pages() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(|| async { page(INDEX, "text/html") }))
        .route("/console/", get(|| async { page(INDEX, "text/html") }))
        .route(
            "/console/app.js",
            get(|| async { page(SCRIPT, "text/javascript") }),
        )
        .route(
            "/console/app.css",
            get(|| async { page(STYLE, "text/css") }),
        )
        // The page's own routes (`/console/tenants/acme`) load the page, which reads its path.
        .route(
            "/console/{*rest}",
            get(|| async { page(INDEX, "text/html") }),
        )
}

fn page(body: &'static str, kind: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    let content_type = format!("{kind}; charset=utf-8");
    for (name, value) in [
        (CONTENT_TYPE.as_str(), content_type.as_str()),
        ("content-security-policy", POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (CACHE_CONTROL.as_str(), "no-cache"),
    ] {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name),
            HeaderValue::try_from(value),
        ) {
            headers.insert(name, value);
        }
    }
    response
}

/// How to sign in: an account's `email` and `password` (and which `project` to open), or an
/// `api_key`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub email: Option<String>,
    pub password: Option<String>,
    /// Project id or name; the account's oldest project when absent.
    pub project: Option<String>,
    pub api_key: Option<String>,
}

/// Switches the session to another project of the account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchProject {
    /// Project id or name.
    pub project: String,
}

/// The signed-in session, as the console shows it. It never holds the API key.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    pub project_id: String,
    pub project_name: String,
    pub role: KeyRole,
    pub scope_type: ScopeType,
    pub scope_values: Vec<String>,
    pub expires_at: DateTime<Utc>,
    /// `password` or `api_key`.
    pub signed_in_with: String,
    /// Send it as `X-TDB-CSRF` on every request but GET and HEAD.
    pub csrf_token: String,
}

/// Signs in to the console: sets the session cookie (HttpOnly, `SameSite=Strict`, `Secure`
/// behind HTTPS) and answers the session without any key. Only the console's own page may ask:
/// the body must be sent as `application/json` (which a form on another site cannot send
/// without the browser asking tdb first, and tdb allows no other origin), and a browser's
/// `Sec-Fetch-Site` must say the request comes from this origin. A session the browser already
/// held ends.
#[utoipa::path(post, path = "/console/session", tag = "console", security(()),
    request_body = SignIn,
    responses((status = 200, body = SessionInfo), (status = 400), (status = 401),
              (status = 403, description = "not sent by the console's own page"),
              (status = 404)))]
async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    from_the_console_page(&headers)?;
    let expires_at = Utc::now() + chrono::Duration::hours(SESSION_HOURS);
    let token = secrets::new_session_token();
    let digest = api_key_digest(&token);
    match (req.email, req.password, req.api_key) {
        (Some(email), Some(password), None) => {
            let account =
                crate::routes::accounts::signed_in_account(&state, &email, password).await?;
            let project = account_project(&state, &account.id, req.project.as_deref()).await?;
            let key = session_key(expires_at);
            let session = NewSession {
                digest: &digest,
                key_id: &key.id,
                by_password: true,
                expires_at,
            };
            state
                .catalog
                .create_console_session(&session, Some((&project, &key.record())))
                .await?;
        }
        (None, None, Some(api_key)) if req.project.is_none() => {
            let owner = state
                .catalog
                .authenticate_key(&api_key_digest(api_key.trim()))
                .await?
                .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "Invalid API key"))?;
            let session = NewSession {
                digest: &digest,
                key_id: &owner.key_id,
                by_password: false,
                expires_at,
            };
            state.catalog.create_console_session(&session, None).await?;
        }
        _ => {
            return Err(ApiError::bad_request(
                "sign in with `email` and `password` (and optionally `project`), or with \
                 `api_key` alone",
            ));
        }
    }
    if let Some(old) = cookie_token(&headers) {
        state
            .catalog
            .end_console_session(&api_key_digest(old))
            .await?;
    }
    let session = live_session(&state, &digest).await?;
    let mut response = Reply::ok(info(&state, &session, &token).await?).into_response();
    let cookie = if behind_https(&headers) {
        format!(
            "{SECURE_COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age={}",
            SESSION_HOURS * 3600
        )
    } else {
        format!(
            "{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_HOURS * 3600
        )
    };
    set_cookie(&mut response, &cookie);
    Ok(response)
}

/// Refuses a sign-in that a page of another origin could have sent.
fn from_the_console_page(headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    let site = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
    if !json || !matches!(site, None | Some(b"same-origin" | b"none")) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a console sign-in must come from the console's own page, with its body sent as \
             application/json",
        ));
    }
    Ok(())
}

/// The signed-in session (401 when there is none): its project, its key's role and scope, and
/// the CSRF token.
#[utoipa::path(get, path = "/console/session", tag = "console", security(()),
    responses((status = 200, body = SessionInfo), (status = 401)))]
async fn current(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Reply<SessionInfo>, ApiError> {
    let token = cookie_token(&headers).ok_or_else(not_signed_in)?;
    let session = live_session(&state, &api_key_digest(token)).await?;
    Ok(Reply::ok(info(&state, &session, token).await?))
}

/// Signs out: the session ends, the key minted for it is revoked, and the cookie is cleared
/// (also when the session had already ended). Needs the CSRF token, like every change.
#[utoipa::path(delete, path = "/console/session", tag = "console", security(()),
    responses((status = 200, body = tdb_types::Message), (status = 401), (status = 403)))]
async fn sign_out(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = cookie_token(&headers).ok_or_else(not_signed_in)?;
    check_change(&method, &headers, token)?;
    state
        .catalog
        .end_console_session(&api_key_digest(token))
        .await?;
    let mut response = Reply::ok(tdb_types::Message {
        message: "Signed out.".into(),
    })
    .into_response();
    set_cookie(
        &mut response,
        &format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    if behind_https(&headers) {
        set_cookie(
            &mut response,
            &format!("{SECURE_COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"),
        );
    }
    Ok(response)
}

/// Switches the session to another project of the account: a key is minted for it (lasting as
/// long as the session) and the key the session held, if minted for it, is revoked. The answer
/// never holds the key.
#[utoipa::path(post, path = "/console/session/project", tag = "console", security(()),
    request_body = SwitchProject,
    responses((status = 200, body = SessionInfo), (status = 401), (status = 403), (status = 404)))]
async fn switch(
    State(state): State<AppState>,
    headers: HeaderMap,
    auth: Auth,
    ApiJson(req): ApiJson<SwitchProject>,
) -> Result<Reply<SessionInfo>, ApiError> {
    // `auth` is this cookie's session (not an `Authorization` header's key).
    let token = cookie_token(&headers)
        .filter(|_| auth.console)
        .ok_or_else(not_signed_in)?;
    auth.require_project_admin()?;
    let digest = api_key_digest(token);
    let session = live_session(&state, &digest).await?;
    let project = account_project(&state, &auth.account_id, Some(&req.project)).await?;
    let key = session_key(session.expires_at);
    state
        .catalog
        .switch_console_session(&digest, &project, &key.record())
        .await
        .map_err(|e| match e {
            tdb_catalog::CatalogError::NotFound => session_ended(),
            other => other.into(),
        })?;
    let session = live_session(&state, &digest).await?;
    Ok(Reply::ok(info(&state, &session, token).await?))
}

/// A project-wide admin key for a session, lasting as long as the session.
fn session_key(expires_at: DateTime<Utc>) -> MintedKey {
    MintedKey {
        expires_at: Some(expires_at),
        ..MintedKey::admin("console")
    }
}

/// The id of the account's active project named by id or name, or its oldest active project.
async fn account_project(
    state: &AppState,
    account_id: &str,
    wanted: Option<&str>,
) -> Result<String, ApiError> {
    let mut projects = state.catalog.list_projects(account_id).await?;
    projects.retain(|p| p.status == ProjectStatus::Active);
    projects.sort_by_key(|p| p.created_at);
    let found = match wanted {
        None => projects.first(),
        Some(wanted) => projects
            .iter()
            .find(|p| p.id == wanted)
            .or_else(|| projects.iter().find(|p| p.name == wanted)),
    };
    found.map(|p| p.id.clone()).ok_or_else(|| ApiError {
        field: Some("project".into()),
        ..ApiError::not_found(match wanted {
            Some(wanted) => format!("no project '{wanted}' in this account"),
            None => "this account has no active project".into(),
        })
    })
}

async fn live_session(state: &AppState, digest: &[u8]) -> Result<ConsoleSession, ApiError> {
    state
        .catalog
        .console_session(digest)
        .await?
        .ok_or_else(session_ended)
}

async fn info(
    state: &AppState,
    session: &ConsoleSession,
    token: &str,
) -> Result<SessionInfo, ApiError> {
    let owner = &session.owner;
    let project = state
        .catalog
        .list_projects(&owner.account_id)
        .await?
        .into_iter()
        .find(|p| p.id == owner.project_id)
        .ok_or_else(session_ended)?;
    Ok(SessionInfo {
        project_id: owner.project_id.clone(),
        project_name: project.name,
        role: owner.role,
        scope_type: owner.scope_type,
        scope_values: owner.scope_values.clone(),
        expires_at: session.expires_at,
        signed_in_with: if session.by_password {
            "password"
        } else {
            "api_key"
        }
        .into(),
        csrf_token: csrf_token(token),
    })
}

/// Who a request with a console cookie is, for [`Auth`]: `None` without the cookie; an error
/// when the session has ended, or when a request that can change something lacks the session's
/// CSRF token or comes from another site.
pub async fn session_owner(parts: &Parts, state: &AppState) -> Result<Option<KeyOwner>, ApiError> {
    let Some(token) = cookie_token(&parts.headers) else {
        return Ok(None);
    };
    let session = live_session(state, &api_key_digest(token)).await?;
    check_change(&parts.method, &parts.headers, token)?;
    Ok(Some(session.owner))
}

/// A request that can change something (any method but GET and HEAD) must carry the
/// session's CSRF token and must not come from another site.
fn check_change(method: &Method, headers: &HeaderMap, token: &str) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    let sent = headers
        .get(CSRF_HEADER)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if cross_site || !same(sent, csrf_token(token).as_bytes()) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a console request that changes something must come from the console's own page \
             with the session's X-TDB-CSRF header",
        ));
    }
    Ok(())
}

/// The CSRF token of a session: derived from its cookie's token, which it does not reveal.
fn csrf_token(token: &str) -> String {
    secrets::console_csrf_token(token)
}

/// Compares in time that does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME || *name == SECURE_COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Whether the browser reached tdb over HTTPS (through a proxy that terminates TLS and says so).
/// A client that claims it falsely only gets a cookie its own browser will not send over HTTP.
fn behind_https(headers: &HeaderMap) -> bool {
    let says = |name: &str, wanted: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains(wanted))
    };
    says("x-forwarded-proto", "https") || says("forwarded", "proto=https")
}

fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::try_from(cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

fn not_signed_in() -> ApiError {
    ApiError::new(ErrorCode::AuthRequired, "not signed in to the console")
}

fn session_ended() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "the console session has ended or its key was revoked; sign in again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=1; tdb_console=abc ; b=2"),
        );
        assert_eq!(cookie_token(&headers), Some("abc"));
        let mut other = HeaderMap::new();
        other.append(
            COOKIE,
            HeaderValue::from_static("tdb_consolex=abc; x=tdb_console"),
        );
        assert_eq!(cookie_token(&other), None);
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_exactly() {
        let (a, b) = (csrf_token("one"), csrf_token("two"));
        assert_ne!(a, b);
        assert!(same(a.as_bytes(), csrf_token("one").as_bytes()));
        assert!(!same(a.as_bytes(), b.as_bytes()));
        assert!(!same(a.as_bytes(), &a.as_bytes()[1..]));
    }

    #[test]
    fn secure_follows_the_forwarded_scheme() {
        let mut headers = HeaderMap::new();
        assert!(!behind_https(&headers));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(behind_https(&headers));
    }

    #[test]
    fn the_policy_allows_no_inline_script() {
        assert!(!POLICY.contains("unsafe-inline") && !POLICY.contains("unsafe-eval"));
        assert!(!INDEX.contains(" style="));
        let scripts: Vec<&str> = INDEX.split("<script").skip(1).collect();
        assert!(!scripts.is_empty());
        for script in scripts {
            let tag = &script[..script.find('>').expect("a closed tag")];
            assert!(
                tag.contains("src=\"/console/"),
                "an inline script: <script{tag}>"
            );
            assert!(
                script[tag.len() + 1..].starts_with("</script>"),
                "<script{script}"
            );
        }
    }
}
