//! Where things live (architecture.md, "Where state lives"): `HYPERCLAY_HOME` puts everything under
//! one directory; otherwise the XDG directories. Also the platform address (`HYPERCLAY_URL`, from
//! the environment or a `.env` file).

use std::path::{Path, PathBuf};

/// The platform used when `HYPERCLAY_URL` is not set.
pub const DEFAULT_URL: &str = "https://hyperclay.com";

/// The user's home: `HOME` (`/tmp` without one); on Windows, where `HOME` is usually unset,
/// `USERPROFILE`.
fn home() -> PathBuf {
    #[cfg(windows)]
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
    #[cfg(not(windows))]
    let home = std::env::var_os("HOME");
    home.map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => system_default(var).unwrap_or_else(|| home().join(fallback)),
    }
}

/// Where the system keeps each XDG kind of folder when its variable is unset. Windows: the
/// roaming `%APPDATA%` for settings (the sign-in, `.env`), `%LOCALAPPDATA%` for the rest (the
/// mirror, the log), as Windows programs do. Unix: the XDG defaults under the home.
fn system_default(var: &str) -> Option<PathBuf> {
    #[cfg(windows)]
    {
        let known = match var {
            "XDG_CONFIG_HOME" => "APPDATA",
            _ => "LOCALAPPDATA",
        };
        std::env::var_os(known)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }
    #[cfg(not(windows))]
    {
        let _ = var;
        None
    }
}

fn hyperclay_home() -> Option<PathBuf> {
    std::env::var_os("HYPERCLAY_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Credentials and `.env`.
pub fn config_dir() -> PathBuf {
    hyperclay_home()
        .map(|h| h.join("config"))
        .unwrap_or_else(|| xdg("XDG_CONFIG_HOME", ".config").join("hyperclay"))
}

/// The mirror's default parent, and the dev platform's data.
pub fn data_dir() -> PathBuf {
    hyperclay_home()
        .map(|h| h.join("data"))
        .unwrap_or_else(|| xdg("XDG_DATA_HOME", ".local/share").join("hyperclay"))
}

/// The sync log.
pub fn state_dir() -> PathBuf {
    hyperclay_home()
        .map(|h| h.join("state"))
        .unwrap_or_else(|| xdg("XDG_STATE_HOME", ".local/state").join("hyperclay"))
}

/// Sockets and pid files of running mounts.
pub fn runtime_dir() -> PathBuf {
    if let Some(h) = hyperclay_home() {
        return h.join("run");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(v) if !v.is_empty() => PathBuf::from(v).join("hyperclay"),
        _ => runtime_fallback(),
    }
}

/// The runtime folder without `XDG_RUNTIME_DIR`: one per user in the shared temp folder on Unix;
/// on Windows the temp folder is the user's own already (`%LOCALAPPDATA%\Temp`).
fn runtime_fallback() -> PathBuf {
    #[cfg(unix)]
    {
        std::env::temp_dir().join(format!("hyperclay-{}", nix::unistd::getuid()))
    }
    #[cfg(windows)]
    {
        std::env::temp_dir().join("hyperclay")
    }
}

/// The sync log.
pub fn log_path() -> PathBuf {
    state_dir().join("sync.log")
}

/// The default mirror directory.
pub fn default_mirror() -> PathBuf {
    data_dir().join("mirror")
}

/// Where the platform address came from. It decides what may be sent there (README,
/// "Credentials"): a `.env` in the current folder may come with a cloned repository, so an
/// address from it is taken only when it is on this machine, and `HYPERCLAY_API_KEY` is never
/// sent to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    Environment,
    /// `./.env`, the current folder's: anybody's repository may carry one.
    ProjectDotenv,
    /// `<config dir>/.env`: the user's own.
    ConfigDotenv(PathBuf),
    Default,
}

impl std::fmt::Display for UrlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlSource::Environment => f.write_str("HYPERCLAY_URL in the environment"),
            UrlSource::ProjectDotenv => f.write_str("HYPERCLAY_URL in ./.env"),
            UrlSource::ConfigDotenv(p) => write!(f, "HYPERCLAY_URL in {}", p.display()),
            UrlSource::Default => f.write_str("the default"),
        }
    }
}

/// The platform address and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformAddress {
    pub url: String,
    pub source: UrlSource,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{url} ({from}) is not a web address: use https://...")]
    NotAnAddress { url: String, from: UrlSource },
    #[error("{url} ({from}) is plain http to another machine: credentials would cross the network unencrypted; use https://")]
    PlainHttp { url: String, from: UrlSource },
}

/// The platform address: `HYPERCLAY_URL` from the environment, else from `./.env` (only an
/// address on this machine: loopback), else from `<config dir>/.env`, else hyperclay.com. A
/// trailing `/` is dropped. Plain `http://` is refused for any host but loopback.
pub fn platform_address() -> Result<PlatformAddress, AddressError> {
    let config_env = config_dir().join(".env");
    let from_project = dotenv_value(Path::new(".env"), "HYPERCLAY_URL");
    let (url, source) = if let Some(v) = std::env::var("HYPERCLAY_URL")
        .ok()
        .filter(|v| !v.is_empty())
    {
        (v, UrlSource::Environment)
    } else if let Some(v) = from_project.clone().filter(|v| is_loopback_url(v)) {
        (v, UrlSource::ProjectDotenv)
    } else {
        if let Some(v) = &from_project {
            tracing::warn!(url = %crate::protocol::printable(v, 200), "ignoring HYPERCLAY_URL in ./.env: a project's .env may only name a platform on this machine (loopback); set HYPERCLAY_URL in the environment or in the config folder's .env to use it");
        }
        match dotenv_value(&config_env, "HYPERCLAY_URL") {
            Some(v) => (v, UrlSource::ConfigDotenv(config_env)),
            None => (DEFAULT_URL.to_string(), UrlSource::Default),
        }
    };
    let url = url.trim_end_matches('/').to_string();
    match url::Url::parse(&url).ok().map(|u| u.scheme().to_string()) {
        Some(s) if s == "https" => {}
        Some(s) if s == "http" && is_loopback_url(&url) => {}
        Some(s) if s == "http" => return Err(AddressError::PlainHttp { url, from: source }),
        _ => return Err(AddressError::NotAnAddress { url, from: source }),
    }
    Ok(PlatformAddress { url, source })
}

/// Whether `url` names this machine: 127.0.0.0/8, ::1 or `localhost`.
pub fn is_loopback_url(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The value of `key` in a `.env` file (dotenvy's syntax: quotes, `export`, comments), without
/// touching the process environment. A file that is missing or malformed has no value.
pub fn dotenv_value(file: &Path, key: &str) -> Option<String> {
    let items = dotenvy::from_path_iter(file).ok()?;
    items
        .filter_map(Result::ok)
        .find_map(|(k, v)| (k == key).then_some(v))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_only_this_machine() {
        for url in [
            "http://127.0.0.1:8787",
            "http://127.9.0.1",
            "http://[::1]:80",
            "http://localhost:1",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "http://10.0.0.1",
            "https://hyperclay.com",
            "http://localhost.evil.com",
            "http://127.0.0.1.evil.com",
            "not a url",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn dotenv_values_are_read_with_quotes_comments_and_export() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".env");
        std::fs::write(
            &file,
            "# the platform\nOTHER=1\nexport HYPERCLAY_URL=\"http://127.0.0.1:8787\" # dev\n",
        )
        .unwrap();
        assert_eq!(
            dotenv_value(&file, "HYPERCLAY_URL").as_deref(),
            Some("http://127.0.0.1:8787")
        );
        assert_eq!(dotenv_value(&file, "MISSING"), None);
        assert_eq!(
            dotenv_value(&dir.path().join("none"), "HYPERCLAY_URL"),
            None
        );
    }
}
