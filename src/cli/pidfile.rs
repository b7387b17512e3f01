//! Which process serves which mount point: `<runtime dir>/mounts/<hash of the path>.pid`, so that
//! `hyperclay unmount` can ask it to finish its pushes and unmount.

use std::path::{Path, PathBuf};

use hyperclay::config;

pub fn path_for(mountpoint: &Path) -> PathBuf {
    let key = hyperclay::protocol::checksum(mountpoint.as_os_str().as_encoded_bytes());
    config::runtime_dir()
        .join("mounts")
        .join(format!("{key}.pid"))
}

// Only the FUSE mount writes one yet; the plain-folder mode will elsewhere.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub fn write(mountpoint: &Path) -> std::io::Result<PathBuf> {
    let path = path_for(mountpoint);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &path,
        format!("{}\n{}\n", std::process::id(), mountpoint.display()),
    )?;
    Ok(path)
}

/// The pid of a live process serving `mountpoint`, if any.
pub fn live_pid(mountpoint: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path_for(mountpoint)).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let alive = hyperclay::os::process_alive(pid);
    alive.then_some(pid)
}

pub fn remove(mountpoint: &Path) {
    let _ = std::fs::remove_file(path_for(mountpoint));
}
