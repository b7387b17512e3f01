//! Opening a path in the mirror with no symlink anywhere on the way, in one call where the
//! system has one (Linux's `openat2`); the caller walks the path otherwise.

use std::fs::File;
use std::io;
use std::path::Path;

/// Opens `path` (a path in the mirror, from its canonical root) with `flags`, refusing a symlink
/// anywhere on the way, its last name included, in one call: `openat2` with
/// `RESOLVE_NO_SYMLINKS` (Linux 5.6). `None`: it can't tell, and the caller walks the path a
/// folder at a time as on other systems: a symlink on the way (`ELOOP`: the walk says which
/// name, for the error), or no `openat2` here (`ENOSYS`, remembered; a filter's `EPERM`). Any
/// other error is the open's own: with no symlink before the name that failed, the walk would
/// have found none either and the open failed the same way.
///
/// From the root's path, not from a descriptor of the root kept open: every other mirror
/// operation goes by path, so a root folder replaced while the program runs (moved away and
/// another put in its place) is the same folder for all of them, not the old one for these
/// and the new one for the rest. A symlink put in place of a folder above the root makes this
/// answer `None` and the walk (which starts below the root, as before) decide.
pub(super) fn open_no_symlinks(path: &Path, flags: nix::fcntl::OFlag) -> Option<io::Result<File>> {
    use nix::errno::Errno;
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use std::os::fd::FromRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    static MISSING: AtomicBool = AtomicBool::new(false);
    if MISSING.load(Ordering::Relaxed) {
        return None;
    }
    let how = OpenHow::new()
        // No O_NOFOLLOW: with O_PATH it would open a symlink at the end instead of refusing it;
        // RESOLVE_NO_SYMLINKS alone refuses one there too (ELOOP).
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    match openat2(libc::AT_FDCWD, path, how) {
        // SAFETY: a descriptor just opened, owned by nothing else.
        Ok(fd) => Some(Ok(unsafe { File::from_raw_fd(fd) })),
        Err(Errno::ENOSYS) => {
            MISSING.store(true, Ordering::Relaxed);
            None
        }
        Err(
            Errno::ELOOP
            | Errno::EPERM
            | Errno::EINVAL
            | Errno::E2BIG
            | Errno::EAGAIN
            | Errno::EXDEV,
        ) => None,
        Err(e) => Some(Err(io::Error::from(e))),
    }
}
