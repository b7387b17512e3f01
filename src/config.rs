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
    platform_url_and_source().0
}

/// The platform address and where it came from, for messages ("the environment", a `.env`
/// file's path, "the default").
pub fn platform_url_and_source() -> (String, String) {
    let config_env = config_dir().join(".env");
    let (url, source) = if let Some(v) = std::env::var("HYPERCLAY_URL")
        .ok()
        .filter(|v| !v.is_empty())
    {
        (v, "HYPERCLAY_URL in the environment".to_string())
    } else if let Some(v) = dotenv_value(Path::new(".env"), "HYPERCLAY_URL") {
        (v, "HYPERCLAY_URL in ./.env".to_string())
    } else if let Some(v) = dotenv_value(&config_env, "HYPERCLAY_URL") {
        (v, format!("HYPERCLAY_URL in {}", config_env.display()))
    } else {
        (DEFAULT_URL.to_string(), "the default".to_string())
    };
    (url.trim_end_matches('/').to_string(), source)
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
