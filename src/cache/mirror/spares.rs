//! The empty files a mount's saves swap out, kept for the next new file (Linux); see [`Spares`].

#[cfg(target_os = "linux")]
use std::fs;
#[cfg(target_os = "linux")]
use std::io;
use std::path::Path;
#[cfg(target_os = "linux")]
use std::path::PathBuf;

/// Empty files kept for reuse, so that a new file's save frees no inode (Linux).
///
/// A file created through the mount gets an empty mirror copy at once; its first save renames
/// the working copy over it, which frees that empty copy's inode. On ext4 without a journal
/// (this project's benchmark machines), allocating an inode skips every inode freed in the last
/// half minute or so, checking each one (`find_inode_bit` -> `recently_deleted`): with one
/// inode freed per new file, each create of `tar x` or `git clone` walked past all the
/// thousands freed before it (a fifth of the mount's time in `perf`; BENCHMARKS.md, "System
/// calls per file"). So the save swaps the working copy into place
/// (`renameat2(RENAME_EXCHANGE)`: atomic for every reader, as the rename) and, when what it
/// swapped out is an empty regular file of one link with the mode a fresh file gets here, keeps
/// it under its temp name; the next new file's empty copy is that file moved into place
/// (`RENAME_NOREPLACE`, its time set to now) instead of a new one. Anything else swapped out is
/// removed, as the rename did. Only empty files are ever reused, and no code writes into a
/// mirror copy in place (content always comes by a rename), so a descriptor still open on a
/// reused copy reads it empty, as before. The spares live in the temp folder: a crash leaves
/// them to the sweep at start ([`Mirror::sweep_temps`]); one gone meanwhile is skipped.
pub(super) struct Spares {
    #[cfg(target_os = "linux")]
    kept: std::sync::Mutex<Vec<PathBuf>>,
    /// The permission bits a file made here gets (0666 less the umask); `None` (the umask
    /// unknown): no spares.
    #[cfg(target_os = "linux")]
    fresh_mode: Option<u32>,
}

/// More spares than this are removed: one per file saved between two creates is plenty.
#[cfg(target_os = "linux")]
const MAX_SPARES: usize = 64;

impl Spares {
    pub(super) fn new() -> Spares {
        Spares {
            #[cfg(target_os = "linux")]
            kept: std::sync::Mutex::new(Vec::new()),
            #[cfg(target_os = "linux")]
            fresh_mode: umask().map(|m| 0o666 & !m),
        }
    }

    /// Puts a spare at `path` (nothing there) as a new empty file; false: none placed (no spare,
    /// or something at `path`), the caller makes one.
    pub(super) fn place(&self, path: &Path) -> bool {
        #[cfg(target_os = "linux")]
        loop {
            let Some(spare) = self.kept.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
                return false;
            };
            // Its time is now, as a file created now; a spare swept away meanwhile is skipped.
            if set_times_now(&spare).is_err() {
                continue;
            }
            match renameat2(&spare, path, nix::fcntl::RenameFlags::RENAME_NOREPLACE) {
                Ok(()) => return true,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                // Something there already: the caller empties it, as before; the spare stays.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    self.kept
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(spare);
                    return false;
                }
                Err(_) => {
                    let _ = fs::remove_file(&spare);
                    return false;
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = path;
            false
        }
    }

    /// Swaps the finished `temp` into place at `target`, keeping what was there as a spare or
    /// removing it; false: not swapped (nothing at `target`, or no exchange on this system or
    /// file system), the caller renames.
    pub(super) fn exchange(&self, temp: &Path, target: &Path) -> bool {
        #[cfg(target_os = "linux")]
        {
            let Some(fresh_mode) = self.fresh_mode else {
                return false;
            };
            if renameat2(temp, target, nix::fcntl::RenameFlags::RENAME_EXCHANGE).is_err() {
                return false;
            }
            use std::os::unix::fs::MetadataExt;
            match fs::symlink_metadata(temp) {
                // A folder swapped out: swapped back, and the caller's rename fails as it did.
                Ok(m) if m.is_dir() => {
                    return renameat2(temp, target, nix::fcntl::RenameFlags::RENAME_EXCHANGE)
                        .is_err();
                }
                Ok(m)
                    if m.is_file()
                        && m.len() == 0
                        && m.nlink() == 1
                        && m.mode() & 0o7777 == fresh_mode =>
                {
                    let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
                    if kept.len() < MAX_SPARES {
                        kept.push(temp.to_path_buf());
                        return true;
                    }
                }
                _ => {}
            }
            let _ = fs::remove_file(temp);
            true
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (temp, target);
            false
        }
    }
}

#[cfg(target_os = "linux")]
fn renameat2(from: &Path, to: &Path, flags: nix::fcntl::RenameFlags) -> io::Result<()> {
    Ok(nix::fcntl::renameat2(None, from, None, to, flags)?)
}

#[cfg(target_os = "linux")]
fn set_times_now(path: &Path) -> io::Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let now = TimeSpec::UTIME_NOW;
    Ok(utimensat(
        None,
        path,
        &now,
        &now,
        UtimensatFlags::NoFollowSymlink,
    )?)
}

/// This process's umask, from `/proc/self/status` (changing it to read it would race with the
/// files other threads create meanwhile).
#[cfg(target_os = "linux")]
fn umask() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}
