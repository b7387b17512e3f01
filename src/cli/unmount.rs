//! `hyperclay unmount MOUNTPOINT`: asks the mount's process to finish its pushes and unmount;
//! if that process is gone (killed), removes the kernel mount itself. Never leaves a stale mount.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hyperclay::fs::{fusermount_unmount, is_mounted};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::pidfile;

/// The process exists and has not exited: a zombie (exited, not yet reaped by its parent)
/// answers `kill(pid, 0)` too, but its mount is done.
fn is_running(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name, which is in parentheses and may hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X"))
}

pub fn run(mountpoint: &Path) -> anyhow::Result<()> {
    let mountpoint = super::mount_path(mountpoint);
    let running = pidfile::live_pid(&mountpoint);
    if running.is_none() && !is_mounted(&mountpoint) {
        // Nothing to end: said so, and a failure (a script must not believe it unmounted).
        pidfile::remove(&mountpoint);
        bail!(
            "{} is not mounted: nothing to unmount (`hyperclay status` lists the running mounts)",
            mountpoint.display()
        );
    }
    if let Some(pid) = running {
        kill(Pid::from_raw(pid), Signal::SIGTERM).context("signalling the mount's process")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while is_running(pid) {
            if Instant::now() > deadline {
                bail!("the mount's process (pid {pid}) did not stop within 60 s; its pushes may still be running");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if is_mounted(&mountpoint) {
        fusermount_unmount(&mountpoint)
            .with_context(|| format!("unmounting {}", mountpoint.display()))?;
    }
    pidfile::remove(&mountpoint);
    if is_mounted(&mountpoint) {
        bail!(
            "{} is still mounted: close the programs using it and try again",
            mountpoint.display()
        );
    }
    println!("unmounted {}", mountpoint.display());
    Ok(())
}
