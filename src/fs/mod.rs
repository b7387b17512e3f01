//! The mount: FUSE (fuser) in front of the cache and the sync engine. `ops` holds the logic,
//! `fuse` the thin adapter, `notify` the thread that tells the kernel what the engine changed,
//! `backups` the read-only `sites-versions/` view, `kernel` what the kernel holds of each inode
//! (in the inode's cell, until its `forget`), `mount` mounts and unmounts. Linux only: on
//! other systems nothing is mounted (README, "Other systems"), and only the helpers below are
//! built.

#[cfg(target_os = "linux")]
mod backups;
#[cfg(target_os = "linux")]
mod error;
#[cfg(target_os = "linux")]
mod fuse;
#[cfg(target_os = "linux")]
mod kernel;
#[cfg(target_os = "linux")]
mod links;
#[cfg(target_os = "linux")]
mod mount;
#[cfg(target_os = "linux")]
mod notify;
#[cfg(target_os = "linux")]
mod ops;
#[cfg(target_os = "linux")]
mod process;
#[cfg(target_os = "linux")]
mod write;

use std::path::{Path, PathBuf};

#[cfg(target_os = "linux")]
pub use error::FsError;
#[cfg(target_os = "linux")]
pub use mount::{check_mountpoint, fusermount_unmount, is_mounted, mount, MountError, Mounted};
#[cfg(target_os = "linux")]
pub use ops::MountFs;

/// A sink for the engine, and the receiving end for the kernel-notices thread (`notify`). Built
/// on every system: a plain folder has no kernel to tell, and drops the receiver.
pub fn notice_channel() -> (
    crate::sync::NoticeSink,
    std::sync::mpsc::Receiver<crate::sync::Notice>,
) {
    let (tx, rx) = std::sync::mpsc::channel::<crate::sync::Notice>();
    let tx = std::sync::Mutex::new(tx);
    let sink: crate::sync::NoticeSink = std::sync::Arc::new(move |n| {
        let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send(n);
    });
    (sink, rx)
}

/// Whether `path` is a mount point right now: never where there is no FUSE (nothing is mounted).
#[cfg(not(target_os = "linux"))]
pub fn is_mounted(_path: &Path) -> bool {
    false
}

/// The absolute form of a mount point without resolving it (a stale mount cannot be resolved).
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}
