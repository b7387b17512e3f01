//! The client's one error type. The variant is decided on the HTTP status and the stable `code`
//! of Part 2; only against a Part 1 platform, whose bodies have no `code`, does the text decide
//! between "expired" and "unauthorized" and recognise the out-of-sites message.

use crate::protocol::{ErrorBody, OUT_OF_SITES_MSG};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    #[error("the platform refused the credentials: sign in again with `hyperclay login`")]
    Unauthorized,
    #[error("your sign-in expired: sign in again with `hyperclay login`")]
    Expired,
    #[error("Sync needs a paid Hyperclay plan: upgrade on hyperclay.com, then sync resumes")]
    PaymentRequired,
    #[error("{OUT_OF_SITES_MSG}")]
    OutOfSites,
    #[error("the platform refuses the name: {0}")]
    InvalidName(String),
    #[error("the name is already taken on the platform: {0}")]
    NameTaken(String),
    #[error(
        "larger than 20 MiB (20,971,520 bytes), the platform's limit: the file stays local only"
    )]
    TooLarge,
    #[error("not found on the platform")]
    NotFound,
    #[error("changed on the platform since the last sync (now {checksum})")]
    ChangedRemotely {
        checksum: crate::protocol::Checksum,
        modified_at: crate::protocol::PlatformTime,
    },
    #[error("the platform refused the request: {0}")]
    BadRequest(String),
    #[error("the platform does not offer {0}")]
    Unsupported(&'static str),
    #[error("the platform had a fault ({status}: {msg}); it will be retried")]
    Server { status: u16, msg: String },
    #[error("the platform can't be reached ({0}); syncing resumes when it is back")]
    Unreachable(String),
    #[error("the platform answered something unexpected: {0}")]
    Protocol(String),
    /// The request was abandoned under way (the platform came back after being away, and a
    /// request sent before may hang on a dead connection) and could not be sent again itself
    /// (a streamed body, or abandoned twice): its caller retries as for any transient fault.
    #[error("the request was abandoned (the platform came back); it is retried")]
    Abandoned,
    /// The platform (or anything between us and it) answered with a redirect. None is followed
    /// (client.rs, `http_client`): the API never needs one, and following it would carry the
    /// credentials, and a write's content, to the address it names. Not transient: it is a
    /// misconfigured address or an attack, and only the user can tell which.
    #[error("the platform answered with a redirect ({status}) to {to}; refused: check the platform address (HYPERCLAY_URL)")]
    Redirected { status: u16, to: String },
    /// An answer over its limit (client.rs, `limits`): dropped unread.
    #[error("the platform sent {what} larger than {limit} bytes, the limit: it was dropped")]
    Oversized { what: &'static str, limit: u64 },
}

impl RemoteError {
    /// Decides the variant from an error answer.
    pub fn from_answer(status: u16, body: &ErrorBody) -> RemoteError {
        let text = body.text();
        if let Some(code) = body.code.as_deref() {
            if let Some(e) = Self::from_code(code, &text, body) {
                return e;
            }
        }
        match status {
            401 | 403 if text.to_ascii_lowercase().contains("expired") => RemoteError::Expired,
            401 | 403 => RemoteError::Unauthorized,
            402 if text == OUT_OF_SITES_MSG => RemoteError::OutOfSites,
            402 => RemoteError::PaymentRequired,
            404 => RemoteError::NotFound,
            409 => RemoteError::NameTaken(text),
            413 => RemoteError::TooLarge,
            400..=499 => RemoteError::BadRequest(text),
            500..=599 => RemoteError::Server { status, msg: text },
            _ => RemoteError::Protocol(format!("status {status}: {text}")),
        }
    }

    fn from_code(code: &str, text: &str, body: &ErrorBody) -> Option<RemoteError> {
        Some(match code {
            "unauthorized" => RemoteError::Unauthorized,
            "expired" => RemoteError::Expired,
            "payment_required" => RemoteError::PaymentRequired,
            "out_of_sites" => RemoteError::OutOfSites,
            "invalid_name" => RemoteError::InvalidName(text.to_string()),
            "name_taken" => RemoteError::NameTaken(text.to_string()),
            "too_large" => RemoteError::TooLarge,
            "not_found" => RemoteError::NotFound,
            "changed_remotely" => RemoteError::ChangedRemotely {
                checksum: body.checksum.clone().unwrap_or_default(),
                // The edit's time where the platform keeps one (Part 2), else its store time.
                modified_at: body
                    .edited_at
                    .clone()
                    .or_else(|| body.modified_at.clone())
                    .unwrap_or_default(),
            },
            "bad_request" => RemoteError::BadRequest(text.to_string()),
            _ => return None,
        })
    }

    /// Worth trying again later: the network or a platform fault, not a refusal.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Server { .. } | RemoteError::Unreachable(_) | RemoteError::Abandoned
        )
    }

    /// The platform can't be reached at all (as opposed to answering with a fault).
    pub fn is_offline(&self) -> bool {
        matches!(self, RemoteError::Unreachable(_))
    }
}

impl From<reqwest::Error> for RemoteError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_builder() {
            return RemoteError::Protocol(e.to_string());
        }
        // Connect errors, resets, timeouts and bodies cut short (which reqwest calls "decoding"
        // errors; JSON is parsed by this client itself): the platform is out of reach for now.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        RemoteError::Unreachable(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(msg: &str, code: Option<&str>) -> ErrorBody {
        ErrorBody {
            msg: Some(msg.into()),
            code: code.map(str::to_string),
            ..ErrorBody::default()
        }
    }

    #[test]
    fn code_decides_over_text() {
        let e = RemoteError::from_answer(401, &body("token expired", Some("unauthorized")));
        assert_eq!(e, RemoteError::Unauthorized);
    }

    #[test]
    fn part1_bodies_fall_back_to_status() {
        assert_eq!(
            RemoteError::from_answer(401, &body("Token expired", None)),
            RemoteError::Expired
        );
        assert_eq!(
            RemoteError::from_answer(403, &body("nope", None)),
            RemoteError::Unauthorized
        );
        assert_eq!(
            RemoteError::from_answer(402, &body(OUT_OF_SITES_MSG, None)),
            RemoteError::OutOfSites
        );
        assert!(RemoteError::from_answer(503, &body("down", None)).is_transient());
        assert!(!RemoteError::from_answer(400, &body("bad", None)).is_transient());
    }
}
