//! The signed-in account: `credentials.json` in the config directory, mode 0600, refused if
//! others can read it. Written atomically. Secrets never reach the log or the command line
//! (`Credential`'s Debug prints `..`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::remote::Credential;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("not signed in: run `hyperclay login` (or set HYPERCLAY_API_KEY)")]
    SignedOut,
    #[error("{0} is readable by other users; fix it with `chmod 600 {0}` and try again")]
    TooOpen(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is damaged; run `hyperclay login` again")]
    Damaged(String),
    /// Stored credentials go only to the platform they were issued by.
    #[error("signed in to {issued}, but the platform address is {url} ({from}): run `hyperclay login` to sign in there")]
    OtherPlatform {
        issued: String,
        url: String,
        from: crate::config::UrlSource,
    },
    /// `HYPERCLAY_API_KEY` is never sent to an address a project's `.env` chose.
    #[error("HYPERCLAY_API_KEY is not sent to {url}, which comes from ./.env (a project's .env could steal it): set HYPERCLAY_URL in the environment or the config folder's .env, or sign in with `hyperclay login`")]
    KeyToProjectAddress { url: String },
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    /// `token` or `api_key`.
    pub kind: String,
    pub secret: String,
    pub username: String,
    pub platform: String,
    /// When the token was issued or last refreshed (RFC 3339).
    pub obtained_at: String,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("kind", &self.kind)
            .field("username", &self.username)
            .field("platform", &self.platform)
            .finish()
    }
}

impl Stored {
    pub fn credential(&self) -> Credential {
        match self.kind.as_str() {
            "token" => Credential::Token(self.secret.clone()),
            _ => Credential::ApiKey(self.secret.clone()),
        }
    }

    pub fn obtained(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        crate::protocol::parse_time(&self.obtained_at)
    }
}

pub fn path() -> PathBuf {
    crate::config::config_dir().join("credentials.json")
}

fn io(path: &Path, source: std::io::Error) -> CredentialsError {
    CredentialsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The stored credentials, if any.
pub fn load() -> Result<Option<Stored>, CredentialsError> {
    let path = path();
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path, e)),
    };
    if crate::os::readable_by_others(&meta) {
        return Err(CredentialsError::TooOpen(path.display().to_string()));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|_| CredentialsError::Damaged(path.display().to_string()))
}

/// Stores credentials atomically, readable by the user only.
pub fn store(stored: &Stored) -> Result<(), CredentialsError> {
    use std::io::Write;
    let path = path();
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let temp = dir.join(format!(".credentials-{:016x}", rand::random::<u64>()));
    let text =
        serde_json::to_string_pretty(stored).map_err(|e| io(&path, std::io::Error::other(e)))?;
    let written = (|| {
        let mut f =
            crate::os::owner_only_file(std::fs::OpenOptions::new().write(true).create_new(true))
                .open(&temp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&temp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io(&path, e));
    }
    Ok(())
}

pub fn remove() -> Result<bool, CredentialsError> {
    let path = path();
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(&path, e)),
    }
}

/// What to sign in with at `address`: `HYPERCLAY_API_KEY` from the environment (never for an
/// address from `./.env`), else the stored credentials (only for the platform that issued them).
pub fn resolve(
    address: &crate::config::PlatformAddress,
) -> Result<(Credential, Option<Stored>), CredentialsError> {
    if let Ok(key) = std::env::var("HYPERCLAY_API_KEY") {
        if !key.trim().is_empty() {
            if address.source == crate::config::UrlSource::ProjectDotenv {
                return Err(CredentialsError::KeyToProjectAddress {
                    url: address.url.clone(),
                });
            }
            return Ok((Credential::ApiKey(key.trim().to_string()), None));
        }
    }
    match load()? {
        Some(stored) if stored.platform.trim_end_matches('/') != address.url => {
            Err(CredentialsError::OtherPlatform {
                issued: stored.platform,
                url: address.url.clone(),
                from: address.source.clone(),
            })
        }
        Some(stored) => Ok((stored.credential(), Some(stored))),
        None => Err(CredentialsError::SignedOut),
    }
}
