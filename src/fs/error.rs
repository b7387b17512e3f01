//! The mount's one error type: every failure knows the errno the kernel gets (never EIO when a
//! better one exists) and is logged once, with its cause, where it is answered.

use crate::cache::{IndexError, MirrorError};
use crate::sync::{Refusal, SyncError};

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or folder")]
    NotFound,
    #[error("a name over 255 bytes")]
    NameTooLong,
    #[error("read-only: {0}")]
    ReadOnly(&'static str),
    #[error("not a folder")]
    NotDir,
    #[error("is a folder")]
    IsDir,
    #[error("bad file handle")]
    BadHandle,
    #[error("not supported")]
    NotSupported,
    #[error("{0}")]
    Refused(String, i32),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl FsError {
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::ReadOnly(_) => libc::EROFS,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::BadHandle => libc::EBADF,
            FsError::NotSupported => libc::ENOTSUP,
            FsError::Refused(_, errno) => *errno,
            FsError::Mirror(e) => e.raw_os_error().unwrap_or(libc::EIO),
            FsError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            FsError::Index(IndexError::BadName(e)) => name_errno(e),
            FsError::Index(_) => libc::EIO,
            FsError::Sync(e) => sync_errno(e.cause()),
        }
    }

    /// Expected answers (a missing name, a read-only place) are not worth a log line.
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            FsError::NotFound
                | FsError::NameTooLong
                | FsError::ReadOnly(_)
                | FsError::NotDir
                | FsError::IsDir
                | FsError::NotSupported
        )
    }
}

/// The kernel's answer for what the engine said: the one place sync's outcomes become errnos.
fn sync_errno(e: &SyncError) -> i32 {
    match e {
        SyncError::Refused(why) => match why {
            Refusal::NoSuchFile | Refusal::NoSuchFolder => libc::ENOENT,
            Refusal::NotAFolder => libc::ENOTDIR,
            Refusal::IsAFolder => libc::EISDIR,
            Refusal::Exists => libc::EEXIST,
            Refusal::NotEmpty => libc::ENOTEMPTY,
            Refusal::IntoItself => libc::EINVAL,
        },
        SyncError::Mirror(e) => e.raw_os_error().unwrap_or(libc::EIO),
        SyncError::Gone => libc::ENOENT,
        SyncError::BadPath(e) | SyncError::Index(IndexError::BadName(e)) => name_errno(e),
        // A file that is not on disk and can't be fetched now (offline, refused, a bug).
        SyncError::Remote(_)
        | SyncError::Index(_)
        | SyncError::Bug(_)
        | SyncError::Inconsistent(_)
        | SyncError::WrongAccount { .. }
        | SyncError::Shared(_) => libc::EIO,
    }
}

/// A name that can't be a file here: too long is ENAMETOOLONG, anything else EINVAL.
fn name_errno(e: &crate::cache::PathRefused) -> i32 {
    if e.is_too_long() {
        libc::ENAMETOOLONG
    } else if e.is_reserved() {
        libc::EPERM
    } else {
        libc::EINVAL
    }
}

pub type Result<T> = std::result::Result<T, FsError>;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cache::MirrorError;
    use crate::remote::RemoteError;

    fn full_disk() -> SyncError {
        SyncError::Mirror(MirrorError::Io {
            action: "writing",
            path: "a.html".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        })
    }

    /// A fetch shared by several readers keeps its cause: a full disk is ENOSPC to the reader
    /// and not "offline" to the engine (before, every shared failure became "unreachable").
    #[test]
    fn a_shared_fetch_failure_keeps_its_cause() {
        let shared = SyncError::Shared(Arc::new(full_disk()));
        assert!(!shared.is_offline() && !shared.is_transient());
        assert_eq!(FsError::Sync(shared).errno(), libc::ENOSPC);
        let offline = SyncError::Shared(Arc::new(SyncError::Remote(RemoteError::Unreachable(
            "refused".into(),
        ))));
        assert!(offline.is_offline() && offline.is_transient());
        assert_eq!(FsError::Sync(offline).errno(), libc::EIO);
    }

    #[test]
    fn refusals_get_their_errno_here() {
        for (why, errno) in [
            (Refusal::NoSuchFile, libc::ENOENT),
            (Refusal::NotAFolder, libc::ENOTDIR),
            (Refusal::IsAFolder, libc::EISDIR),
            (Refusal::Exists, libc::EEXIST),
            (Refusal::NotEmpty, libc::ENOTEMPTY),
            (Refusal::IntoItself, libc::EINVAL),
        ] {
            assert_eq!(FsError::Sync(SyncError::Refused(why)).errno(), errno);
        }
    }
}
