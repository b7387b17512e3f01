//! Mounting and unmounting (Linux: FUSE through fuser, `fusermount3`, `/proc/self/mountinfo`).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use fuser::{Config, MountOption};

use super::{fuse, notify, MountFs};
use crate::sync::Notice;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{0} does not exist: create it first (mkdir -p {0})")]
    Missing(String),
    #[error("{0} is not a folder")]
    NotDir(String),
    #[error("{0} is not empty: mount on an empty folder")]
    NotEmpty(String),
    #[error("{0} is already mounted: run `hyperclay unmount {0}` first")]
    AlreadyMounted(String),
    #[error("could not mount {path} (is fuse3 installed and /dev/fuse usable?)")]
    Mount { path: String, source: io::Error },
}

/// Whether `path` is a mount point right now (from /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    text.lines().any(|line| {
        line.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(wanted.as_ref())
    })
}

fn unescape_mountinfo(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Unmounts with `fusermount3 -u`, lazily if the mount is busy or stale.
pub fn fusermount_unmount(path: &Path) -> io::Result<()> {
    for args in [&["-u"][..], &["-u", "-z"][..]] {
        let status = Command::new("fusermount3")
            .args(args)
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()?;
        // Also done when the kernel's auto-unmount (after a killed process) got there first.
        if status.success() || !is_mounted(path) {
            return Ok(());
        }
    }
    // As root, umount works where fusermount3 may not.
    let status = Command::new("umount")
        .arg("-l")
        .arg(path)
        .stderr(std::process::Stdio::null())
        .status()?;
    if !is_mounted(path) {
        return Ok(());
    }
    let _ = status;
    Err(io::Error::other(format!(
        "could not unmount {}",
        path.display()
    )))
}

/// Checks the mount point; a stale mount left by a killed process is cleaned up.
pub fn check_mountpoint(path: &Path) -> Result<(), MountError> {
    let shown = path.display().to_string();
    if is_mounted(path) {
        // statfs, not stat: the kernel answers a stat of the mount's root from its attribute
        // cache while that is valid, also after the process behind it died; a statfs always
        // asks the process, and a dead one's connection answers ENOTCONN.
        match nix::sys::statvfs::statvfs(path) {
            Err(nix::errno::Errno::ENOTCONN) => {
                tracing::info!(mountpoint = %shown, "cleaning up a stale mount left by a stopped process");
                fusermount_unmount(path).map_err(|source| MountError::Mount {
                    path: shown.clone(),
                    source,
                })?;
            }
            _ => return Err(MountError::AlreadyMounted(shown)),
        }
    }
    let meta = std::fs::metadata(path).map_err(|_| MountError::Missing(shown.clone()))?;
    if !meta.is_dir() {
        return Err(MountError::NotDir(shown));
    }
    let mut entries = std::fs::read_dir(path).map_err(|e| MountError::Mount {
        path: shown.clone(),
        source: e,
    })?;
    if entries.next().is_some() {
        return Err(MountError::NotEmpty(shown));
    }
    Ok(())
}

/// A live mount.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    notices: Option<std::thread::JoinHandle<()>>,
    pub mountpoint: PathBuf,
}

/// Mounts `fs` at `mountpoint`; kernel notices from the engine are forwarded from `notices`.
pub fn mount(
    fs: Arc<MountFs>,
    mountpoint: &Path,
    notices: std::sync::mpsc::Receiver<Notice>,
    runtime: tokio::runtime::Handle,
) -> Result<Mounted, MountError> {
    let shown = mountpoint.display().to_string();
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("hyperclay".into()),
        MountOption::Subtype("hyperclay".into()),
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    config.n_threads = Some(4);
    config.clone_fd = true;
    // No AutoUnmount, decided: after a kill -9 of this process the dead mount stays ("Transport
    // endpoint is not connected"), so every save fails loudly until `hyperclay mount` or
    // `hyperclay unmount` cleans it up. With auto-unmount, saves went on succeeding into the bare
    // folder underneath, where nothing syncs them, and the next mount refused the folder.
    let adapter = fuse::FuseAdapter::new(fs.clone(), runtime);
    let session =
        fuser::Session::new(adapter, mountpoint, &config).map_err(|source| MountError::Mount {
            path: shown.clone(),
            source,
        })?;
    let notifier = session.notifier();
    let session = session.spawn().map_err(|source| MountError::Mount {
        path: shown,
        source,
    })?;
    let notices = notify::run(notifier, notices, fs);
    Ok(Mounted {
        session: Some(session),
        notices: Some(notices),
        mountpoint: mountpoint.to_path_buf(),
    })
}

impl Mounted {
    /// The kernel side ended (someone ran `fusermount3 -u`, or the session failed).
    pub fn has_ended(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.guard.is_finished())
    }

    /// Unmounts and waits for the session to end. Call after pushes have drained.
    pub fn unmount(mut self) -> io::Result<()> {
        let result = if is_mounted(&self.mountpoint) {
            fusermount_unmount(&self.mountpoint)
        } else {
            Ok(())
        };
        if let Some(session) = self.session.take() {
            let _ = session.join();
        }
        // The notices thread ends when the engine's sink is dropped; do not wait on it here.
        drop(self.notices.take());
        result
    }
}
