//! The control socket: `hyperclay status` and `hyperclay sync on|off` talk to the running mount
//! over a Unix socket beside its pid file (`<runtime dir>/mounts/<key>.sock`, mode 0600). One
//! JSON line in, one JSON line out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::sync::listed::Listing;
use crate::sync::status::{Problem, ProblemKind};
use crate::sync::Engine;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Sync {
        on: bool,
    },
    /// The user signed out: stop syncing (not kept across restarts).
    Logout,
}

/// What `hyperclay status` shows for one mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub account: Option<String>,
    pub platform: String,
    /// Where the platform address came from.
    #[serde(default)]
    pub platform_source: String,
    pub mountpoint: String,
    pub mirror: String,
    pub sync_on: bool,
    pub online: bool,
    /// Transfers are running right now.
    pub syncing: bool,
    pub last_sync: Option<String>,
    /// Files that wait to go up (and will).
    pub waiting: usize,
    /// Files that stay local as they are, counted by reason (too large, a refused name...).
    #[serde(default)]
    pub stays_local: std::collections::BTreeMap<String, usize>,
    /// Set while the account was never listed into the index: why (or that it is being listed).
    /// The mount then shows only what the mirror holds, never as the whole account.
    #[serde(default)]
    pub not_listed: Option<String>,
    /// The most important problem, with what to do about it.
    pub problem: Option<Problem>,
    /// Every file changed on both sides whose loser is kept, one each: which side lost and
    /// where its copy is (docs/semantics.md, "Conflicts").
    #[serde(default)]
    pub conflicts: Vec<Problem>,
    /// Never delete across: removed (or renamed away) here, still on the platform.
    #[serde(default)]
    pub removed_here: Vec<String>,
    /// Never delete across: deleted on the platform, the local copy kept here.
    #[serde(default)]
    pub deleted_there: Vec<String>,
    pub log: String,
}

/// The socket of the mount at `mountpoint`.
pub fn socket_for(mountpoint: &Path) -> PathBuf {
    let key = crate::protocol::checksum(mountpoint.as_os_str().as_encoded_bytes());
    crate::config::runtime_dir()
        .join("mounts")
        .join(format!("{key}.sock"))
}

/// Every mount's socket that exists now.
pub fn all_sockets() -> Vec<PathBuf> {
    let dir = crate::config::runtime_dir().join("mounts");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sock"))
        .collect()
}

/// Serves the socket until the task is dropped.
pub fn serve(
    engine: Arc<Engine>,
    mountpoint: PathBuf,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let path = socket_for(&mountpoint);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (engine, mountpoint) = (engine.clone(), mountpoint.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                if BufReader::new(read).read_line(&mut line).await.is_err() {
                    return;
                }
                let answer = match serde_json::from_str::<Request>(&line) {
                    Ok(Request::Status) => serde_json::to_string(&report(&engine, &mountpoint)),
                    Ok(Request::Sync { on }) => {
                        let _ = engine.set_sync(on);
                        serde_json::to_string(&report(&engine, &mountpoint))
                    }
                    Ok(Request::Logout) => {
                        engine.sign_out();
                        serde_json::to_string(&report(&engine, &mountpoint))
                    }
                    Err(e) => Ok(serde_json::json!({"error": e.to_string()}).to_string()),
                };
                if let Ok(text) = answer {
                    let _ = write.write_all(format!("{text}\n").as_bytes()).await;
                }
            });
        }
    }))
}

pub fn report(engine: &Engine, mountpoint: &Path) -> StatusReport {
    let pending = engine.pending_uploads();
    let apart = engine.kept_apart();
    StatusReport {
        account: engine.account(),
        platform: engine.client.url().to_string(),
        platform_source: engine.client.url_source(),
        mountpoint: mountpoint.display().to_string(),
        mirror: engine.mirror.root().display().to_string(),
        sync_on: engine.sync_on(),
        online: engine.is_online(),
        syncing: engine.transfers_running() > 0,
        last_sync: engine.last_sync().map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        }),
        waiting: pending.waiting,
        stays_local: pending.held,
        not_listed: match engine.first_listing.now() {
            Listing::Listed => None,
            Listing::Waiting => Some("the account is being listed".into()),
            Listing::NotListed(why) => Some(why),
        },
        // A conflict's data is safe: any other problem (something to do) comes first.
        problem: {
            let all = engine.status.all();
            all.iter()
                .find(|p| p.kind != ProblemKind::Conflict)
                .or(all.first())
                .cloned()
        },
        conflicts: engine.status.conflicts(),
        removed_here: apart.removed_here,
        deleted_there: apart.deleted_there,
        log: crate::config::log_path().display().to_string(),
    }
}

/// Sends one request to a mount's socket.
pub async fn ask(socket: &Path, request: &Request) -> std::io::Result<StatusReport> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let line = serde_json::to_string(request).map_err(std::io::Error::other)?;
    write.write_all(format!("{line}\n").as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    serde_json::from_str(&answer).map_err(std::io::Error::other)
}
