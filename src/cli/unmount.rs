//! `hyperclay unmount MOUNTPOINT`: asks the mount's process to finish its pushes and unmount;
//! if that process is gone (killed), removes the kernel mount itself. Never leaves a stale mount.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hyperclay::fs::{absolute, fusermount_unmount, is_mounted};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::pidfile;

pub fn run(mountpoint: &Path) -> anyhow::Result<()> {
    let mountpoint = absolute(mountpoint);
    if let Some(pid) = pidfile::live_pid(&mountpoint) {
        kill(Pid::from_raw(pid), Signal::SIGTERM).context("signalling the mount's process")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while kill(Pid::from_raw(pid), None).is_ok() {
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
