//! `hyperclay unmount MOUNTPOINT`: asks the mount's process to finish its pushes and unmount;
//! if that process is gone (killed), removes the kernel mount itself. Never leaves a stale mount.
//! Where there is no FUSE (macOS, Windows) there is no kernel mount to remove: the process is
//! asked to stop (SIGTERM; on Windows over its control pipe), and waited for.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
#[cfg(target_os = "linux")]
use hyperclay::fs::fusermount_unmount;
use hyperclay::fs::is_mounted;

use super::pidfile;

/// The process exists and has not exited: a zombie (exited, not yet reaped by its parent)
/// answers `kill(pid, 0)` too, but its mount is done (Linux tells it from `/proc`).
fn is_running(pid: i32) -> bool {
    if !hyperclay::os::process_alive(pid) {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state follows the command name, which is in parentheses and may hold spaces.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        !matches!(state, Some("Z") | Some("X"))
    }
    #[cfg(not(target_os = "linux"))]
    true
}

/// Asks the mount's process to finish and end: SIGTERM.
#[cfg(unix)]
fn ask_to_stop(pid: i32, _mountpoint: &Path) -> anyhow::Result<()> {
    use nix::sys::signal::{kill, Signal};
    kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).context("signalling the mount's process")
}

/// Asks the mount's process to finish and end: Windows has no SIGTERM, so over its control pipe.
#[cfg(windows)]
fn ask_to_stop(_pid: i32, mountpoint: &Path) -> anyhow::Result<()> {
    let socket = hyperclay::control::socket_for(mountpoint);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(hyperclay::control::ask(
            &socket,
            &hyperclay::control::Request::Stop,
        ))
        .context("asking the mount's process to stop")?;
    Ok(())
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
        ask_to_stop(pid, &mountpoint)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while is_running(pid) {
            if Instant::now() > deadline {
                bail!("the mount's process (pid {pid}) did not stop within 60 s; its pushes may still be running");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    #[cfg(target_os = "linux")]
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
