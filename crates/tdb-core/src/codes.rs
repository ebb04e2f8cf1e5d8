//! Error and status codes of the HTTP envelope: the one table behind `GET /errors`, every error
//! response and the CLI's exit messages.

use serde::Serialize;

/// A code carried in every response envelope. Each maps to exactly one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Ok,
    Created,
    BadRequest,
    AuthRequired,
    Unauthorized,
    Forbidden,
    RoleRequired,
    ScopeDenied,
    PermissionDenied,
    NotFound,
    MethodNotAllowed,
    /// A request's headers or body did not arrive in time.
    RequestTimeout,
    Conflict,
    PayloadTooLarge,
    /// The AutoDB-compatible endpoints' request validation (FastAPI-style `detail[]`).
    ValidationError,
    RateLimited,
    InternalError,
    ServiceUnavailable,
}

impl ErrorCode {
    /// Every code, in the order `GET /errors` lists them.
    pub const ALL: [ErrorCode; 18] = [
        Self::Ok,
        Self::Created,
        Self::BadRequest,
        Self::AuthRequired,
        Self::Unauthorized,
        Self::Forbidden,
        Self::RoleRequired,
        Self::ScopeDenied,
        Self::PermissionDenied,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::Conflict,
        Self::PayloadTooLarge,
        Self::ValidationError,
        Self::RateLimited,
        Self::InternalError,
        Self::ServiceUnavailable,
    ];

    pub fn status(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::Created => 201,
            Self::BadRequest => 400,
            Self::AuthRequired | Self::Unauthorized => 401,
            Self::Forbidden | Self::RoleRequired | Self::ScopeDenied | Self::PermissionDenied => {
                403
            }
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::ValidationError => 422,
            Self::RateLimited => 429,
            Self::InternalError => 500,
            Self::ServiceUnavailable => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Created => "created",
            Self::BadRequest => "bad_request",
            Self::AuthRequired => "auth_required",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::RoleRequired => "role_required",
            Self::ScopeDenied => "scope_denied",
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::ValidationError => "validation_error",
            Self::RateLimited => "rate_limited",
            Self::InternalError => "internal_error",
            Self::ServiceUnavailable => "service_unavailable",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::Ok => "Request succeeded",
            Self::Created => "Resource was created",
            Self::BadRequest => "Invalid input or missing fields",
            Self::AuthRequired => "Authorization header missing",
            Self::Unauthorized => "Invalid or revoked API key",
            Self::Forbidden => "Tier limit reached or operation not allowed",
            Self::RoleRequired => "The API key's role does not allow this operation",
            Self::ScopeDenied => "The API key's scope does not cover this resource",
            Self::PermissionDenied => "The database refused the operation",
            Self::NotFound => "Resource does not exist",
            Self::MethodNotAllowed => "The path exists but not with this method",
            Self::RequestTimeout => "The request's body did not arrive in time",
            Self::Conflict => "Already exists or conflicts with the current state",
            Self::PayloadTooLarge => "Request body exceeds the size limit",
            Self::ValidationError => {
                "A field failed validation (/api/v1 endpoints; `detail` lists each problem)"
            }
            Self::RateLimited => "Too many requests",
            Self::InternalError => "Server error",
            Self::ServiceUnavailable => "A dependency (such as the catalog) is unreachable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_serialize_to_their_names() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
            let json = serde_json::to_string(&code).expect("serialize");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert!((200..600).contains(&code.status()));
        }
    }
}
