//! Where things live (architecture.md, "Where state lives"): `HYPERCLAY_HOME` puts everything under
//! one directory; otherwise the XDG directories. Also the platform address (`HYPERCLAY_URL`, from
//! the environment or a `.env` file).

use std::path::{Path, PathBuf};

/// The platform used when `HYPERCLAY_URL` is not set.
pub const DEFAULT_URL: &str = "https://hyperclay.com";

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => home().join(fallback),
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
        _ => std::env::temp_dir().join(format!("hyperclay-{}", nix::unistd::getuid())),
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

/// The platform address: `HYPERCLAY_URL` from the environment, else from `./.env`, else from
/// `<config dir>/.env`, else hyperclay.com. A trailing `/` is dropped.
pub fn platform_url() -> String {
    let from_env = std::env::var("HYPERCLAY_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let url = from_env
        .or_else(|| dotenv_value(Path::new(".env"), "HYPERCLAY_URL"))
        .or_else(|| dotenv_value(&config_dir().join(".env"), "HYPERCLAY_URL"))
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    url.trim_end_matches('/').to_string()
}

/// The value of `key` in a `.env` file (`KEY=value`, optional quotes, `#` comments).
pub fn dotenv_value(file: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let line = line.trim().strip_prefix("export ").unwrap_or(line.trim());
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}
