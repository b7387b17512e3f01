//! The dev platform's one error type: each variant knows its HTTP status and stable `code`
//! (sync-api.md, "error codes"), and turns into the JSON body `{msg, code}` in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::protocol::{ErrorBody, NameError, PlatformTime, OUT_OF_SITES_MSG};

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("unauthorized: missing or unknown API key or token")]
    Unauthorized,
    #[error("token expired: sign in again")]
    Expired,
    #[error("Sync needs a paid Hyperclay plan")]
    PaymentRequired,
    #[error("{0}")]
    InvalidName(String),
    #[error("{0} is already taken")]
    NameTaken(String),
    #[error("content is larger than 20 MiB")]
    TooLarge,
    #[error("{OUT_OF_SITES_MSG}")]
    OutOfSites,
    #[error("node not found")]
    NotFound,
    #[error("the content changed on the platform since your base")]
    ChangedRemotely {
        checksum: crate::protocol::Checksum,
        modified_at: String,
        edited_at: Option<String>,
    },
    #[error("{0}")]
    BadRequest(String),
    /// The sign-in page's approval without its one-time code or from another site.
    #[error("{0}")]
    Forbidden(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl PlatformError {
    pub fn status(&self) -> StatusCode {
        match self {
            PlatformError::Unauthorized | PlatformError::Expired => StatusCode::UNAUTHORIZED,
            PlatformError::PaymentRequired | PlatformError::OutOfSites => {
                StatusCode::PAYMENT_REQUIRED
            }
            PlatformError::InvalidName(_) | PlatformError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PlatformError::NameTaken(_) | PlatformError::ChangedRemotely { .. } => {
                StatusCode::CONFLICT
            }
            PlatformError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            PlatformError::NotFound => StatusCode::NOT_FOUND,
            PlatformError::Forbidden(_) => StatusCode::FORBIDDEN,
            PlatformError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            PlatformError::Unauthorized => "unauthorized",
            PlatformError::Expired => "expired",
            PlatformError::PaymentRequired => "payment_required",
            PlatformError::InvalidName(_) => "invalid_name",
            PlatformError::NameTaken(_) => "name_taken",
            PlatformError::TooLarge => "too_large",
            PlatformError::OutOfSites => "out_of_sites",
            PlatformError::NotFound => "not_found",
            PlatformError::ChangedRemotely { .. } => "changed_remotely",
            PlatformError::BadRequest(_) => "bad_request",
            PlatformError::Forbidden(_) => "forbidden",
            PlatformError::Internal(_) => "internal",
        }
    }
}

impl From<NameError> for PlatformError {
    fn from(e: NameError) -> Self {
        PlatformError::InvalidName(format!("invalid name: {}", e.rule))
    }
}

impl From<rusqlite::Error> for PlatformError {
    fn from(e: rusqlite::Error) -> Self {
        PlatformError::Internal(e.to_string())
    }
}

impl IntoResponse for PlatformError {
    fn into_response(self) -> Response {
        if let PlatformError::Internal(cause) = &self {
            tracing::error!(%cause, "dev platform internal error");
        }
        let mut body = ErrorBody {
            msg: Some(self.to_string()),
            code: Some(self.code().to_string()),
            ..ErrorBody::default()
        };
        if let PlatformError::ChangedRemotely {
            checksum,
            modified_at,
            edited_at,
        } = &self
        {
            body.checksum = Some(checksum.clone());
            body.modified_at = Some(PlatformTime::new(modified_at.clone()));
            body.edited_at = edited_at.clone().map(PlatformTime::new);
        }
        (self.status(), Json(body)).into_response()
    }
}
