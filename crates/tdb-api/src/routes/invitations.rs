//! Invitations to sign up (`signup = "invite"`): an admin key of an existing account makes a
//! single-use code with an expiry. The code is shown once; the catalog keeps its digest.

use axum::extract::State;
use chrono::Utc;
use tdb_catalog::invitations::NewInvitation;
use tdb_core::ids;
use tdb_types::{CreateInvitation, CreatedInvitation};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiJson, Auth};
use crate::mint;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_invitation))
}

/// Hours an invitation lasts unless the request says otherwise: a week.
const DEFAULT_HOURS: i64 = 168;
/// The longest an invitation may last: thirty days.
const MAX_HOURS: i64 = 720;

/// Makes a single-use invitation to sign up; needs a project-wide admin key.
#[utoipa::path(post, path = "/invitations", tag = "accounts",
    request_body = CreateInvitation,
    responses((status = 201, body = CreatedInvitation), (status = 400), (status = 401),
              (status = 403, description = "not a project-wide admin key")))]
async fn create_invitation(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateInvitation>,
) -> ApiResult<CreatedInvitation> {
    auth.require_project_admin()?;
    let hours = req.expires_in_hours.unwrap_or(DEFAULT_HOURS);
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(ApiError::field(
            "expires_in_hours",
            format!("must be between 1 and {MAX_HOURS}"),
        ));
    }
    let id = ids::new_id("inv");
    let code = mint::invitation_code();
    let expires_at = Utc::now() + chrono::Duration::hours(hours);
    state
        .catalog
        .create_invitation(&NewInvitation {
            id: &id,
            digest: &code.digest,
            created_by: &auth.account_id,
            expires_at,
        })
        .await
        .map_err(|e| ApiError::from_catalog(e, "invitation"))?;
    Ok(Reply::created(CreatedInvitation {
        id,
        invite_code: code.plaintext,
        expires_at,
        message: "Give this code to the person you invite; it works once and is not shown again."
            .into(),
    }))
}
