//! The one place an engine is booted and stopped: `hyperclay mount` (both front doors) and the
//! in-process tests all go through here, so a test runs the mount's start and stop, not a copy.
//!
//! A boot has three steps, which a caller may run apart when it has its own work between them
//! (the mount puts its front door up between the comparison and following):
//! 1. [`Boot::open`]: the mirror opened and its leftover temps swept, the index opened (a damaged
//!    one set aside and rebuilt), the platform client, and the [`Engine`] over them;
//! 2. [`compare`]: what changed in the mirror while no engine ran, recorded before the front door
//!    serves anyone (the mount's scan, or the plain folder's whole comparison);
//! 3. [`Running::follow`]: the follower, until [`Running::stop`] finishes the pushes under way
//!    and marks a clean end.
//!
//! [`Boot::start`] runs all three. It never touches FUSE or the folder's watcher: the front door
//! is the caller's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Engine, FrontDoor, Look, NoticeSink, Settings, SyncError};
use crate::cache::{Index, IndexError, Mirror, MirrorError};
use crate::remote::{Client, Credential, RemoteError};

/// How long a follower stuck in a platform request is waited for before it is dropped.
const FOLLOWER_STOP_LIMIT: Duration = Duration::from_secs(5);

/// Why an engine could not be booted. The words are the mount's (`hyperclay mount` prints them).
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("opening the mirror {}", dir.display())]
    Mirror {
        dir: PathBuf,
        #[source]
        source: MirrorError,
    },
    /// Another engine holds the index (its lock): never taken for damage and set aside.
    #[error("the index {} is in use by another hyperclay", path.display())]
    InUse {
        path: PathBuf,
        #[source]
        source: IndexError,
    },
    #[error("setting the damaged index {} aside", path.display())]
    SetAside {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating a new index {}", path.display())]
    NewIndex {
        path: PathBuf,
        #[source]
        source: IndexError,
    },
    #[error(transparent)]
    Client(#[from] RemoteError),
    /// The start-up comparison failed ([`Boot::start`] only: the mount logs it and goes on).
    #[error(transparent)]
    Compare(#[from] SyncError),
}

/// Where the engine reaches the platform.
enum Platform {
    At { url: String, credential: Credential },
    Client(Arc<Client>),
}

/// An engine to build: a mirror folder, the platform, the settings and where notices go.
pub struct Boot {
    mirror_dir: PathBuf,
    platform: Platform,
    settings: Settings,
    notices: NoticeSink,
    follow: bool,
}

impl Boot {
    /// An engine over the mirror at `mirror_dir`, signing in to `url` with `credential`; default
    /// settings, notices dropped.
    pub fn new(mirror_dir: impl Into<PathBuf>, url: &str, credential: Credential) -> Boot {
        Boot::with(
            mirror_dir.into(),
            Platform::At {
                url: url.to_string(),
                credential,
            },
        )
    }

    /// An engine over the mirror at `mirror_dir` that speaks through a client made already.
    pub fn with_client(mirror_dir: impl Into<PathBuf>, client: Arc<Client>) -> Boot {
        Boot::with(mirror_dir.into(), Platform::Client(client))
    }

    fn with(mirror_dir: PathBuf, platform: Platform) -> Boot {
        Boot {
            mirror_dir,
            platform,
            settings: Settings::default(),
            notices: Arc::new(|_| {}),
            follow: true,
        }
    }

    /// The engine's settings, fixed for its life.
    pub fn settings(mut self, settings: Settings) -> Boot {
        self.settings = settings;
        self
    }

    /// Where the engine's notices go (the mount's kernel notifier).
    pub fn notices(mut self, notices: NoticeSink) -> Boot {
        self.notices = notices;
        self
    }

    /// Whether [`Boot::start`] follows the platform (on unless turned off: a test that runs the
    /// first reconciliation itself turns it off).
    pub fn follow(mut self, follow: bool) -> Boot {
        self.follow = follow;
        self
    }

    /// Step 1: the mirror (temps swept), the index, the client and the engine over them. Must
    /// run inside the tokio runtime the engine will use.
    pub fn open(self) -> Result<Arc<Engine>, BootError> {
        let mirror = Mirror::open(&self.mirror_dir).map_err(|source| BootError::Mirror {
            dir: self.mirror_dir.clone(),
            source,
        })?;
        mirror.sweep_temps();
        let index = open_index(&mirror.index_path())?;
        let client = match self.platform {
            Platform::At { url, credential } => Arc::new(Client::new(&url, credential)?),
            Platform::Client(client) => client,
        };
        Ok(Engine::new(
            client,
            Arc::new(index),
            Arc::new(mirror),
            self.notices,
            self.settings,
        ))
    }

    /// All three steps: opened, compared (a failed comparison is an error here), following.
    pub async fn start(self) -> Result<Running, BootError> {
        let follow = self.follow;
        let engine = self.open()?;
        compare(&engine).await?;
        Ok(match follow {
            true => Running::follow(engine),
            false => Running::still(engine),
        })
    }
}

/// Opens the index; a damaged one is set aside and rebuilt from the mirror and the platform
/// (nothing is lost: the mirror files are adopted as local copies and compared with the platform).
fn open_index(path: &Path) -> Result<Index, BootError> {
    let e = match Index::open(path) {
        Ok(index) => return Ok(index),
        Err(e) if e.is_in_use() => {
            return Err(BootError::InUse {
                path: path.to_path_buf(),
                source: e,
            })
        }
        Err(e) => e,
    };
    let aside = path.with_extension(format!(
        "db.damaged-{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S")
    ));
    tracing::warn!(error = %e, aside = %aside.display(), "the index is damaged: set aside, rebuilding it from the mirror and the platform");
    std::fs::rename(path, &aside).map_err(|source| BootError::SetAside {
        path: path.to_path_buf(),
        source,
    })?;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Index::open(path).map_err(|source| BootError::NewIndex {
        path: path.to_path_buf(),
        source,
    })
}

/// Step 2, the start-up comparison for the engine's front door, on a blocking thread: the mount
/// scans the mirror against the index; the plain folder looks at every path whose size or time
/// differs (as its watcher's whole comparison does; with a watcher running, ask it instead, so
/// that its events and the comparison take turns).
pub async fn compare(engine: &Arc<Engine>) -> super::Result<()> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || match engine.settings.front_door {
        FrontDoor::Mount => engine.scan_local(),
        FrontDoor::Folder => engine
            .differing_paths()
            .into_iter()
            .try_for_each(|rel| engine.observe(&rel, Look::Hash).map(|_| ())),
    })
    .await
    .unwrap_or_else(|e| Err(SyncError::Bug(format!("the start-up comparison: {e}"))))
}

/// A booted engine and its follower (step 3).
pub struct Running {
    engine: Arc<Engine>,
    stop: watch::Sender<bool>,
    follower: Option<tokio::task::JoinHandle<()>>,
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Every push under way finished within the limit, before following stopped.
    pub drained: bool,
    /// Following stopped between two requests (not dropped in the middle of one).
    pub follower_stopped: bool,
    /// Marked as a clean end: the next start trusts the mirror's file times.
    pub clean: bool,
}

impl Running {
    /// Follows the platform (event stream, polling while it is down) until stopped.
    pub fn follow(engine: Arc<Engine>) -> Running {
        let (stop, stopped) = watch::channel(false);
        let follower = tokio::spawn(super::follow(engine.clone(), stopped));
        Running {
            engine,
            stop,
            follower: Some(follower),
        }
    }

    /// Booted without following: the caller reconciles when it wants to.
    fn still(engine: Arc<Engine>) -> Running {
        Running {
            engine,
            stop: watch::channel(false).0,
            follower: None,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The end of a run, once the front door takes no more changes (its saves finished): the
    /// pushes under way finish (at most `limit`), following stops, and what was pushed in the
    /// meantime finishes too. Only then is the run marked as a clean end.
    pub async fn stop(self, limit: Duration) -> Stopped {
        let engine = self.engine;
        let drained = engine.drain(limit).await;
        // Following stops between two requests; one stuck on a platform that does not answer (a
        // first listing that never comes) is dropped after a few seconds rather than holding the
        // stop for its time limit. Dropped mid-way, the run does not count as a clean end.
        let _ = self.stop.send(true);
        let follower_stopped = match self.follower {
            Some(mut follower) => {
                let done = tokio::time::timeout(FOLLOWER_STOP_LIMIT, &mut follower)
                    .await
                    .is_ok();
                if !done {
                    follower.abort();
                }
                done
            }
            None => true,
        };
        let clean = drained && engine.drain(limit).await && follower_stopped;
        if clean {
            engine.mark_clean_exit();
        } else if !follower_stopped {
            tracing::info!("stopped while a platform request was running: the next mount compares every mirror file");
        } else {
            tracing::warn!(
                "some pushes did not finish before unmount; they go up at the next mount"
            );
        }
        Stopped {
            drained,
            follower_stopped,
            clean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_held_by_another_engine_is_in_use_not_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        let first = open_index(&path).unwrap();
        first.set_meta("k", "v").unwrap();
        // The first holds its exclusive lock until it closes: a second open waits it out, then
        // says so, and sets nothing aside (before: renamed "damaged" and rebuilt from scratch).
        let second = open_index(&path);
        assert!(
            matches!(second, Err(BootError::InUse { .. })),
            "{:?}",
            second.err()
        );
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("damaged"))
            .count();
        assert_eq!(aside, 0, "nothing set aside");
        drop(first);
        let reopened = open_index(&path).unwrap();
        assert_eq!(reopened.meta("k").unwrap().as_deref(), Some("v"));
    }
}
