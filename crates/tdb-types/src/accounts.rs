//! Sign-up, login and invitations.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub email: String,
    /// At least 8 characters.
    pub password: String,
    /// Defaults to "My Project".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_name: Option<String>,
    /// An invitation code from an existing account; required when sign-up is by invitation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_code: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignupResponse {
    pub api_key: String,
    pub project_id: String,
    /// The project's proxy password; shown only now.
    pub proxy_password: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// Only this project (id or name): its key alone is minted. An unknown one is a 404 and
    /// nothing is minted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginProject {
    pub project_id: String,
    pub name: String,
    /// A key minted for this login.
    pub api_key: String,
    /// When the key stops working (`login_key_days` after the login).
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    pub projects: Vec<LoginProject>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    /// Hours until the code expires: 1 to 720 (default 168).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_hours: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedInvitation {
    pub id: String,
    /// The code to give the invitee, who signs up with it as `invite_code`; shown only now.
    pub invite_code: String,
    pub expires_at: DateTime<Utc>,
    pub message: String,
}
