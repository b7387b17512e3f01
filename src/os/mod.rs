//! What differs between operating systems, for the code that runs on all of them (the cache, the
//! commands' edges, the local server): opening a file without following a symlink, owner-only
//! folders, a file's modification time, whether a process runs. Each function says what it does
//! on Unix (Linux and macOS: unchanged from before the split) and on Windows. Linux-only parts
//! (FUSE, systemd, netlink) are not here: they live behind `cfg(target_os = "linux")` where they
//! are used (README, "Other systems").

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::path::Path;

#[cfg(windows)]
pub mod windows;

/// The OS error a refused symlink is reported with: `ELOOP` on Unix (what `O_NOFOLLOW` answers);
/// on Windows `ERROR_CANT_RESOLVE_FILENAME` (1921, what Windows answers for a symlink loop).
#[cfg(unix)]
pub const SYMLINK_REFUSED: i32 = libc::ELOOP;
#[cfg(windows)]
pub const SYMLINK_REFUSED: i32 = windows_sys::Win32::Foundation::ERROR_CANT_RESOLVE_FILENAME as i32;

/// The OS error for "a file is where a folder was expected": `ENOTDIR` on Unix, Windows'
/// `ERROR_DIRECTORY` (267, "the directory name is invalid").
#[cfg(unix)]
pub const NOT_A_FOLDER: i32 = libc::ENOTDIR;
#[cfg(windows)]
pub const NOT_A_FOLDER: i32 = windows_sys::Win32::Foundation::ERROR_DIRECTORY as i32;

/// Opens `path` with `options`, never through a symlink at its last component: the open fails
/// with [`SYMLINK_REFUSED`] instead. Unix: `O_NOFOLLOW`. Windows: the symlink or junction itself
/// is opened (`FILE_FLAG_OPEN_REPARSE_POINT`) and refused; any other reparse point (a cloud
/// placeholder, a deduplicated file) is a file, opened again normally.
pub fn open_nofollow(options: &OpenOptions, path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = options.clone();
        options.custom_flags(libc::O_NOFOLLOW).open(path)
    }
    #[cfg(windows)]
    {
        windows::open_nofollow(options, path)
    }
}

/// Opens `path` for reading, never through a symlink at its last component.
pub fn open_read_nofollow(path: &Path) -> io::Result<File> {
    open_nofollow(OpenOptions::new().read(true), path)
}

/// Makes a folder the user's alone. Unix: mode 0700. Windows: nothing to do: a folder under the
/// user's profile (where every default place is) inherits the profile's ACL (the user, SYSTEM
/// and the administrators); a folder given elsewhere (`--mirror D:\x`) keeps that place's ACL.
pub fn make_owner_only(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(windows)]
    {
        let _ = dir;
        Ok(())
    }
}

/// Whether others than the owner may read a file of secrets (the stored sign-in). Unix: any of
/// the group and other bits. Windows: never said (see [`make_owner_only`]).
pub fn readable_by_others(meta: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o077 != 0
    }
    #[cfg(windows)]
    {
        let _ = meta;
        false
    }
}

/// `options` creating files that only the owner may read or write: mode 0600 on Unix; on
/// Windows the folder's inherited ACL (see [`make_owner_only`]).
pub fn owner_only_file(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600)
    }
    #[cfg(windows)]
    {
        options
    }
}

/// A file's modification time in milliseconds since the epoch, as the disk has it.
pub fn mtime_ms(meta: &Metadata) -> i64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000
    }
    #[cfg(windows)]
    {
        use std::time::UNIX_EPOCH;
        match meta.modified() {
            Ok(t) => match t.duration_since(UNIX_EPOCH) {
                Ok(d) => d.as_millis() as i64,
                Err(before) => -(before.duration().as_millis() as i64),
            },
            Err(_) => 0,
        }
    }
}

/// When a file last changed, as far as the disk can tell, in milliseconds since the epoch: the
/// earlier of its modification time and (on Unix) its status-change time. A program can set the
/// first to anything; the second is the kernel's, taken when the file last changed, and so is
/// never later than a write the disk lost. Windows has only the first.
pub fn last_change_ms(meta: &Metadata) -> i64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let ctime_ms = meta.ctime() * 1000 + meta.ctime_nsec() / 1_000_000;
        mtime_ms(meta).min(ctime_ms)
    }
    #[cfg(windows)]
    {
        mtime_ms(meta)
    }
}

/// Everything written to the file system holding `path` reaches the disk (a clean stop: after
/// it, the next start may trust file times). Linux: `syncfs`, which waits for the writes. macOS:
/// `sync`, which schedules them. Windows: nothing (a user's files there are written by their own
/// programs; the program's own writes are fsync'ed as they are made).
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let dir = File::open(path)?;
        // SAFETY: syncfs on a descriptor this function owns for the call's duration.
        match unsafe { libc::syncfs(dir.as_raw_fd()) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        let _ = path;
        // SAFETY: sync(2) takes no arguments and can't fail.
        unsafe { libc::sync() };
        Ok(())
    }
    #[cfg(windows)]
    {
        let _ = path;
        Ok(())
    }
}

/// Whether the process `pid` runs (and is this user's: on Unix `kill(pid, 0)` fails for another
/// user's process, and on Windows such a process can't be opened, so neither counts).
pub fn process_alive(pid: i32) -> bool {
    #[cfg(unix)]
    {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
    }
    #[cfg(windows)]
    {
        u32::try_from(pid).is_ok_and(windows::process_alive)
    }
}
