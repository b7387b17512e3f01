//! Who is calling: an API key (`X-API-Key`) or a signed token (`Authorization: Bearer`), resolved
//! to an account. Tokens are HS256 JWTs signed with a secret kept in the database.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{
    decode, encode, errors::ErrorKind, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

use super::error::PlatformError;
use super::store::Account;
use super::AppState;
use crate::protocol::format_time;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    aid: i64,
    iat: i64,
    exp: i64,
    /// Makes every token unique, even two issued in the same second.
    jti: String,
}

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl Tokens {
    pub fn new(secret: &[u8], ttl: Duration) -> Tokens {
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    /// A fresh token for `account` and the time it expires.
    pub fn issue(&self, account: &Account) -> Result<(String, String), PlatformError> {
        let now = chrono::Utc::now();
        let expires =
            now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(10));
        let claims = Claims {
            sub: account.username.clone(),
            aid: account.id,
            iat: now.timestamp(),
            exp: expires.timestamp(),
            jti: format!("{:032x}", rand::random::<u128>()),
        };
        let token = encode(&Header::default(), &claims, &self.encoding)
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        Ok((token, format_time(expires)))
    }

    /// The account id a token was issued to, if it is genuine and not expired.
    fn verify(&self, token: &str) -> Result<i64, PlatformError> {
        let mut validation = Validation::default();
        validation.leeway = 0;
        match decode::<Claims>(token, &self.decoding, &validation) {
            Ok(data) => Ok(data.claims.aid),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                Err(PlatformError::Expired)
            }
            Err(_) => Err(PlatformError::Unauthorized),
        }
    }
}

/// An authenticated caller, paid plan or not (`status`, token refresh).
pub struct Authed(pub Account);

/// An authenticated caller with a paid plan (every sync endpoint).
pub struct Paid(pub Account);

impl FromRequestParts<AppState> for Authed {
    type Rejection = PlatformError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bearer = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let platform = state.clone();
        let account = tokio::task::spawn_blocking(move || match (key, bearer) {
            (Some(key), _) => platform.store.account_by_key(&key),
            (None, Some(token)) => {
                let id = platform.tokens.verify(&token)?;
                platform.store.account_by_id(id)
            }
            (None, None) => Ok(None),
        })
        .await
        .map_err(|e| PlatformError::Internal(e.to_string()))??;
        account.map(Authed).ok_or(PlatformError::Unauthorized)
    }
}

impl FromRequestParts<AppState> for Paid {
    type Rejection = PlatformError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Authed(account) = Authed::from_request_parts(parts, state).await?;
        if !account.paid {
            return Err(PlatformError::PaymentRequired);
        }
        Ok(Paid(account))
    }
}
