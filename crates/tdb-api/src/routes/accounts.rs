//! Sign-up and login. Sign-up is open, closed or by invitation (`signup`), and its attempts are
//! counted per address outside the trusted networks, so that its answers (an e-mail that has an
//! account is a 409) cannot be harvested. Login mints a fresh key per project (or for the one
//! project asked for) because stored keys cannot be shown again (API.md deviation 1); those keys
//! expire after `login_key_days`.

use axum::extract::State;
use tdb_catalog::CatalogError;
use tdb_catalog::accounts::NewAccount;
use tdb_catalog::projects::NewProject;
use tdb_core::names::check_password;
use tdb_core::{Email, ErrorCode, ProjectName, ProjectStatus, SignupMode, ids, secrets};
use tdb_types::{LoginProject, LoginRequest, LoginResponse, SignupRequest, SignupResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiJson, ClientAddr};
use crate::mint::{self, MintedKey};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
}

async fn hash(state: &AppState, password: String) -> Result<String, ApiError> {
    let _permit = state.hashing.acquire().await.map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

async fn verify(state: &AppState, phc: String, password: String) -> Result<bool, ApiError> {
    let _permit = state.hashing.acquire().await.map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || secrets::verify_password(&phc, &password))
        .await
        .map_err(ApiError::internal)
}

/// The account with this e-mail and password, or 401 `invalid e-mail or password` (taking as
/// long for an unknown e-mail as for a wrong password).
pub(crate) async fn signed_in_account(
    state: &AppState,
    email: &str,
    password: String,
) -> Result<tdb_catalog::accounts::Account, ApiError> {
    let refused = || ApiError::new(ErrorCode::Unauthorized, "invalid e-mail or password");
    let account = match Email::parse(email) {
        Ok(email) => state
            .catalog
            .account_by_email(email.as_str())
            .await
            .map_err(|e| ApiError::from_catalog(e, "account"))?,
        Err(_) => None,
    };
    let phc = account
        .as_ref()
        .map_or(secrets::DECOY_PHC.to_string(), |a| a.password_hash.clone());
    let matches = verify(state, phc, password).await?;
    account.filter(|_| matches).ok_or_else(refused)
}

/// Counts a sign-up attempt from `addr` (outside the trusted networks) and refuses it past the
/// hourly limit; then applies the sign-up mode. Returns the digest of the invitation to spend.
fn admit(
    state: &AppState,
    addr: Option<std::net::IpAddr>,
    invite_code: Option<&str>,
) -> Result<Option<Vec<u8>>, ApiError> {
    if let Some(ip) = addr.filter(|ip| !state.limits.ip.is_trusted(*ip)) {
        let key = tdb_core::ratelimit::client_key(ip);
        if let Err(retry_after) = state.limits.signups.check(&key) {
            return Err(ApiError {
                retry_after: Some(retry_after),
                ..ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "too many sign-up attempts from this address; try again in {retry_after} s"
                    ),
                )
            });
        }
        state.limits.signups.failed(&key);
    }
    match (state.config.signup, invite_code) {
        (SignupMode::Open, _) => Ok(None),
        (SignupMode::Closed, _) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "sign-up is closed on this server (signup = \"closed\"): ask its operator for an account",
        )),
        (SignupMode::Invite, None) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "sign-up is by invitation on this server (signup = \"invite\"): an existing account \
             makes one with POST /invitations; send its code as invite_code",
        )),
        (SignupMode::Invite, Some(code)) => Ok(Some(secrets::api_key_digest(code))),
    }
}

fn bad_invitation() -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        "the invitation code is unknown, used or expired",
    )
}

/// Creates an account, its first project and that project's first admin key.
#[utoipa::path(post, path = "/signup", tag = "accounts", security(()),
    request_body = SignupRequest,
    responses((status = 201, body = SignupResponse), (status = 400),
              (status = 403, description = "sign-up is closed, or needs a valid invite_code"),
              (status = 409), (status = 429, description = "too many attempts from this address")))]
async fn signup(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(req): ApiJson<SignupRequest>,
) -> ApiResult<SignupResponse> {
    let invitation = admit(&state, addr, req.invite_code.as_deref())?;
    let email = Email::parse(&req.email).map_err(|e| ApiError::field("email", e))?;
    check_password(&req.password).map_err(|e| ApiError::field("password", e))?;
    let project_name = ProjectName::parse(req.project_name.as_deref().unwrap_or("My Project"))
        .map_err(|e| ApiError::field("project_name", e))?;
    // Checked before any answer about the e-mail: only an invitee learns whether it is taken.
    if let Some(digest) = &invitation
        && !state
            .catalog
            .invitation_usable(digest)
            .await
            .map_err(|e| ApiError::from_catalog(e, "invitation"))?
    {
        return Err(bad_invitation());
    }
    let password_hash = hash(&state, req.password).await?;
    let account_id = ids::account_id();
    let project_id = ids::project_id();
    let proxy = mint::proxy_password();
    let key = MintedKey::admin("default");
    let account = NewAccount {
        id: &account_id,
        email: email.as_str(),
        password_hash: &password_hash,
        tier: state.config.default_tier,
    };
    let project = NewProject {
        id: &project_id,
        name: project_name.as_str(),
        proxy_verifier: &proxy.verifier,
        proxy_mysql_verifier: &proxy.mysql_verifier,
    };
    match state
        .catalog
        .sign_up(&account, &project, &key.record(), invitation.as_deref())
        .await
    {
        Ok(()) => {}
        Err(CatalogError::Conflict(_)) => {
            return Err(ApiError::conflict(
                "an account with this e-mail already exists; use POST /login",
            ));
        }
        Err(CatalogError::NotFound) => return Err(bad_invitation()),
        Err(e) => return Err(ApiError::from_catalog(e, "account")),
    }
    Ok(Reply::created(SignupResponse {
        api_key: key.secret.plaintext,
        project_id,
        proxy_password: proxy.plaintext,
        message:
            "Account created. Save your API key and proxy password - they won't be shown again!"
                .into(),
    }))
}

/// Returns every project of the account (or the one named by `project`), each with a freshly
/// minted admin key that expires after `login_key_days` (30 by default).
#[utoipa::path(post, path = "/login", tag = "accounts", security(()),
    request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401),
              (status = 404, description = "no such project in the account; nothing minted")))]
async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<LoginResponse> {
    let account = signed_in_account(&state, &req.email, req.password).await?;
    let mut projects = state
        .catalog
        .list_projects(&account.id)
        .await
        .map_err(|e| ApiError::from_catalog(e, "project"))?;
    // A project being deleted gets no new keys.
    projects.retain(|p| p.status == ProjectStatus::Active);
    if let Some(wanted) = &req.project {
        // By id first, as `find_project` does: a name may look like another project's id.
        let at = projects
            .iter()
            .position(|p| &p.id == wanted)
            .or_else(|| projects.iter().position(|p| &p.name == wanted))
            .ok_or_else(|| ApiError {
                field: Some("project".into()),
                ..ApiError::not_found(format!(
                    "no project '{wanted}' in this account; no key was minted"
                ))
            })?;
        projects = vec![projects.swap_remove(at)];
    }
    let mut out = Vec::with_capacity(projects.len());
    for project in projects {
        let key = MintedKey::expiring_admin("login", state.config.login_key_days);
        state
            .catalog
            .create_api_key(&project.id, &key.record())
            .await
            .map_err(|e| ApiError::from_catalog(e, "API key"))?;
        out.push(LoginProject {
            project_id: project.id,
            name: project.name,
            api_key: key.secret.plaintext,
            expires_at: key.expires_at,
        });
    }
    Ok(Reply::ok(LoginResponse { projects: out }))
}
