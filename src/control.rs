//! The control socket: `hyperclay status` and `hyperclay sync on|off` talk to the running mount
//! over a Unix socket beside its pid file (`<runtime dir>/mounts/<key>.sock`, mode 0600). One
//! JSON line in, one JSON line out. `hyperclay versions` and `hyperclay restore` ask it for a
//! file's history (the local backups and the platform's versions, through the mount's own
//! sign-in) and for one version's content; restoring then writes through the mount, as a save.
//! Windows has no Unix sockets for this: there the `.sock` file names a named pipe (`pipe`
//! below: a random name, only this user may open it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::cache::RelPath;
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
    /// Every version of a file, or of each file under a folder (`path` relative to the mount;
    /// empty for all of it): answers a [`HistoryAnswer`].
    Versions {
        path: String,
    },
    /// One version's content: answers a [`ContentAnswer`].
    Version {
        path: String,
        id: String,
    },
    /// End the mount as Ctrl-C would (answers its status first): how `hyperclay unmount` asks
    /// on Windows, which has no SIGTERM.
    Stop,
}

/// The stop a [`Request::Stop`] asked for, once per process.
fn stop_switch() -> &'static tokio::sync::watch::Sender<bool> {
    static STOP: std::sync::OnceLock<tokio::sync::watch::Sender<bool>> = std::sync::OnceLock::new();
    STOP.get_or_init(|| tokio::sync::watch::channel(false).0)
}

/// Resolves once a [`Request::Stop`] came (at once if one already did).
pub async fn stop_requested() {
    let mut stopped = stop_switch().subscribe();
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Where a version is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// `sites-versions/` in the mirror.
    Local,
    /// The platform's versions of the node.
    Platform,
}

/// One kept version. Its time means what its place records: the platform keeps a content when
/// it is replaced (the time it stopped being current); `sites-versions/` keeps a site's content
/// when it is saved (the time it became current) and any content just before a change from
/// elsewhere overwrites it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionEntry {
    /// `p<N>` for the platform's version N; the backup's file name without extension locally.
    pub id: String,
    pub place: Place,
    /// When it was kept (RFC 3339).
    pub time: String,
    pub time_ms: i64,
    pub size: u64,
    pub checksum: crate::protocol::Checksum,
    /// This mount sent this content to the platform (it was made here): known for the last 16
    /// contents it sent to the file. False says only that it is not known, not that another
    /// side made it.
    #[serde(default)]
    pub made_here: bool,
}

/// A file's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileHistory {
    /// Relative to the mount.
    pub path: String,
    /// The current content's size and checksum, when the file exists and its copy is here.
    pub current: Option<(u64, crate::protocol::Checksum)>,
    /// Newest first.
    pub versions: Vec<VersionEntry>,
    /// Why the platform's versions are missing, if they are.
    pub platform_missing: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistoryAnswer {
    #[serde(default)]
    pub files: Vec<FileHistory>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContentAnswer {
    /// Base64.
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub error: Option<String>,
}

/// Why a history or a version cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}")]
    BadPath(#[from] crate::cache::PathRefused),
    #[error("{0} is the program's own folder: it has no versions")]
    Reserved(String),
    #[error("{path} has no version {id} (`hyperclay versions {path}` lists them)")]
    NoSuchVersion { path: String, id: String },
    #[error("reading the backup {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("the platform: {0}")]
    Remote(#[from] crate::remote::RemoteError),
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
    /// How the account is kept: absent for the FUSE mount; for a plain folder, that and why.
    #[serde(default)]
    pub mode: Option<String>,
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
    #[cfg(windows)]
    return pipe::serve(&path, engine, mountpoint);
    #[cfg(unix)]
    {
        let listener = tokio::net::UnixListener::bind(&path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (engine, mountpoint) = (engine.clone(), mountpoint.clone());
                tokio::spawn(async move {
                    let (read, write) = stream.into_split();
                    converse(read, write, &engine, &mountpoint).await;
                });
            }
        }))
    }
}

/// One request read and answered.
async fn converse(
    read: impl AsyncRead + Unpin,
    mut write: impl AsyncWrite + Unpin,
    engine: &Arc<Engine>,
    mountpoint: &Path,
) {
    let mut line = String::new();
    if BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let answer = match serde_json::from_str::<Request>(&line) {
        Ok(Request::Status) => serde_json::to_string(&report(engine, mountpoint)),
        Ok(Request::Sync { on }) => {
            let _ = engine.set_sync(on);
            serde_json::to_string(&report(engine, mountpoint))
        }
        Ok(Request::Logout) => {
            engine.sign_out();
            serde_json::to_string(&report(engine, mountpoint))
        }
        Ok(Request::Stop) => {
            stop_switch().send_replace(true);
            serde_json::to_string(&report(engine, mountpoint))
        }
        Ok(Request::Versions { path }) => {
            serde_json::to_string(&match history(engine, &path).await {
                Ok(files) => HistoryAnswer { files, error: None },
                Err(e) => HistoryAnswer {
                    files: Vec::new(),
                    error: Some(e.to_string()),
                },
            })
        }
        Ok(Request::Version { path, id }) => {
            use base64::Engine as _;
            serde_json::to_string(&match content(engine, &path, &id).await {
                Ok(bytes) => ContentAnswer {
                    content: base64::engine::general_purpose::STANDARD.encode(bytes),
                    error: None,
                },
                Err(e) => ContentAnswer {
                    content: String::new(),
                    error: Some(e.to_string()),
                },
            })
        }
        Err(e) => Ok(serde_json::json!({"error": e.to_string()}).to_string()),
    };
    if let Ok(text) = answer {
        let _ = write.write_all(format!("{text}\n").as_bytes()).await;
    }
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
        mode: engine.status.mode(),
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

/// The mirror path asked for, refusing the program's own folders.
fn checked(path: &str) -> Result<RelPath, HistoryError> {
    let rel = RelPath::parse(path.trim_matches('/'))?;
    let top = rel.as_str().split('/').next().unwrap_or_default();
    if top == crate::cache::VERSIONS_DIR || top == crate::cache::INDEX_DIR {
        return Err(HistoryError::Reserved(top.to_string()));
    }
    Ok(rel)
}

/// The live index entry at `rel`, if any.
fn entry_at(engine: &Engine, rel: &RelPath) -> Option<crate::cache::Entry> {
    let mut ino = crate::cache::ROOT_INO;
    let mut found = None;
    for part in rel.as_str().split('/').filter(|p| !p.is_empty()) {
        let e = engine.index.lookup(ino, part)?;
        ino = e.ino;
        found = Some(e);
    }
    found
}

/// Every file at or under `rel` that the index knows, by path; a path the index does not know
/// (a deleted file) is taken as one file, whose local backups may remain.
fn files_at(engine: &Engine, rel: &RelPath) -> Vec<(String, Option<crate::cache::Entry>)> {
    let start = match rel.is_root() {
        true => None,
        false => match entry_at(engine, rel) {
            None => return vec![(rel.as_str().to_string(), None)],
            Some(e) if !e.is_dir() => return vec![(rel.as_str().to_string(), Some(e))],
            Some(e) => Some(e),
        },
    };
    let mut files = Vec::new();
    let mut folders = vec![(
        rel.as_str().to_string(),
        start.map_or(crate::cache::ROOT_INO, |e| e.ino),
    )];
    while let Some((path, ino)) = folders.pop() {
        for child in engine.index.children(ino) {
            let child_path = match path.is_empty() {
                true => child.name.clone(),
                false => format!("{path}/{}", child.name),
            };
            if child.is_dir() {
                folders.push((child_path, child.ino));
            } else {
                files.push((child_path, Some(child)));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// The history of each file at or under `path`: local backups and the platform's versions,
/// newest first.
pub async fn history(engine: &Engine, path: &str) -> Result<Vec<FileHistory>, HistoryError> {
    let rel = checked(path)?;
    let root = engine.mirror.versions_root();
    let mut out = Vec::new();
    for (path, entry) in files_at(engine, &rel) {
        let mut versions = Vec::new();
        let local_root = root.clone();
        let local_path = path.clone();
        let local = tokio::task::spawn_blocking(move || {
            crate::cache::versions::of_file(&local_root, &local_path)
                .into_iter()
                .filter_map(|(stamp, file)| {
                    let bytes = crate::cache::versions::open_nofollow(&file)
                        .and_then(|mut f| {
                            let mut b = Vec::new();
                            std::io::Read::read_to_end(&mut f, &mut b)?;
                            Ok(b)
                        })
                        .ok()?;
                    let time = chrono::DateTime::from_timestamp_millis(stamp.instant_ms)?;
                    Some(VersionEntry {
                        id: crate::cache::versions::id_of(&file),
                        place: Place::Local,
                        time: crate::protocol::format_time(time),
                        time_ms: stamp.instant_ms,
                        size: bytes.len() as u64,
                        checksum: crate::protocol::checksum(&bytes),
                        made_here: false,
                    })
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        versions.extend(local);
        let node = entry.as_ref().and_then(|e| e.node_id);
        let platform_missing = match node {
            None => Some("not on the platform".to_string()),
            Some(id) => match engine.client.versions(id).await {
                Ok(list) => {
                    versions.extend(list.into_iter().map(|v| {
                        VersionEntry {
                            id: format!("p{}", v.version_id),
                            place: Place::Platform,
                            time_ms: chrono::DateTime::parse_from_rfc3339(&v.created_at)
                                .map(|t| t.timestamp_millis())
                                .unwrap_or(0),
                            time: v.created_at,
                            size: v.size,
                            checksum: v.checksum,
                            made_here: false,
                        }
                    }));
                    None
                }
                Err(e) => Some(e.to_string()),
            },
        };
        if let Some(node) = node {
            for v in &mut versions {
                v.made_here = engine.index.was_sent(node, &v.checksum);
            }
        }
        versions.sort_by(|a, b| b.time_ms.cmp(&a.time_ms).then(a.id.cmp(&b.id)));
        let current = entry
            .as_ref()
            .and_then(|e| e.local.clone().map(|sum| (e.size, sum)));
        out.push(FileHistory {
            path,
            current,
            versions,
            platform_missing,
        });
    }
    Ok(out)
}

/// One version's bytes: a local backup (`id` is its name without extension) or the platform's
/// (`p<N>`).
pub async fn content(engine: &Engine, path: &str, id: &str) -> Result<Vec<u8>, HistoryError> {
    let rel = checked(path)?;
    let missing = || HistoryError::NoSuchVersion {
        path: rel.as_str().to_string(),
        id: id.to_string(),
    };
    if let Some(n) = id.strip_prefix('p').and_then(|n| n.parse::<u64>().ok()) {
        let node = entry_at(engine, &rel)
            .and_then(|e| e.node_id)
            .ok_or_else(missing)?;
        let (_, bytes) = engine.client.version(node, n).await?;
        return Ok(bytes);
    }
    let file = crate::cache::versions::of_file(&engine.mirror.versions_root(), rel.as_str())
        .into_iter()
        .map(|(_, p)| p)
        .find(|p| crate::cache::versions::id_of(p) == id)
        .ok_or_else(missing)?;
    let mut bytes = Vec::new();
    crate::cache::versions::open_nofollow(&file)
        .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut bytes))
        .map_err(|e| HistoryError::Read(file.clone(), e))?;
    Ok(bytes)
}

/// Sends one request to a mount's socket and reads its answer as `T`.
pub async fn ask_for<T: serde::de::DeserializeOwned>(
    socket: &Path,
    request: &Request,
) -> std::io::Result<T> {
    #[cfg(unix)]
    let (read, mut write) = tokio::net::UnixStream::connect(socket).await?.into_split();
    #[cfg(windows)]
    let (read, mut write) = tokio::io::split(pipe::connect(socket).await?);
    let line = serde_json::to_string(request).map_err(std::io::Error::other)?;
    write.write_all(format!("{line}\n").as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(read.take(ANSWER_LIMIT))
        .read_line(&mut answer)
        .await?;
    serde_json::from_str(&answer).map_err(std::io::Error::other)
}

/// The longest answer a mount's socket is read for: a version's content (at most 20 MiB, the
/// platform's limit) encoded in JSON, with room to spare; anything longer is not a mount's.
const ANSWER_LIMIT: u64 = 64 * 1024 * 1024;

/// Sends one request to a mount's socket.
pub async fn ask(socket: &Path, request: &Request) -> std::io::Result<StatusReport> {
    ask_for(socket, request).await
}

/// Windows: the control channel is a named pipe. Its name is random (a squatter can't create it
/// first), written in the mount's `.sock` file under the user's own runtime folder, and only this
/// user may open it (an explicit DACL: the default one lets everyone read); remote clients are
/// refused.
#[cfg(windows)]
mod pipe {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio::net::windows::named_pipe::{
        ClientOptions, NamedPipeClient, NamedPipeServer, ServerOptions,
    };

    use crate::sync::Engine;

    const PREFIX: &str = r"\\.\pipe\hyperclay-";

    /// One instance of the pipe, waiting for a client.
    fn instance(name: &str, first: bool) -> std::io::Result<NamedPipeServer> {
        let mut security = crate::os::windows::OwnerOnly::new()?;
        let mut options = ServerOptions::new();
        options
            .first_pipe_instance(first)
            .reject_remote_clients(true);
        // SAFETY: `security` holds valid SECURITY_ATTRIBUTES and outlives the call.
        unsafe { options.create_with_security_attributes_raw(name, security.as_ptr()) }
    }

    pub fn serve(
        locator: &Path,
        engine: Arc<Engine>,
        mountpoint: PathBuf,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let name = format!(
            "{PREFIX}{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let mut waiting = instance(&name, true)?;
        std::fs::write(locator, &name)?;
        Ok(tokio::spawn(async move {
            loop {
                let connected = waiting.connect().await;
                // The next client's instance exists before this one is answered.
                let next = match instance(&name, false) {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::warn!(error = %e, "the control pipe could not take another client");
                        return;
                    }
                };
                let client = std::mem::replace(&mut waiting, next);
                if connected.is_err() {
                    continue;
                }
                let (engine, mountpoint) = (engine.clone(), mountpoint.clone());
                tokio::spawn(async move {
                    let (read, write) = tokio::io::split(client);
                    super::converse(read, write, &engine, &mountpoint).await;
                });
            }
        }))
    }

    /// Opens the pipe a `.sock` file names (waiting a moment while every instance is busy).
    pub async fn connect(locator: &Path) -> std::io::Result<NamedPipeClient> {
        let name = std::fs::read_to_string(locator)?;
        let name = name.trim();
        if !name.starts_with(PREFIX) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not name a hyperclay pipe", locator.display()),
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match ClientOptions::new().open(name) {
                Err(e)
                    if e.raw_os_error()
                        == Some(windows_sys::Win32::Foundation::ERROR_PIPE_BUSY as i32)
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                opened => return opened,
            }
        }
    }
}
