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
    /// The platform's copy could not be fetched (offline, refused): why is in the log.
    #[error("the platform's copy could not be fetched ({0})")]
    NotFetched(String),
    /// The caller was killed while its request waited (the work goes on without it).
    #[error("interrupted")]
    Interrupted,
    /// Names must be UTF-8 (every name the platform holds is).
    #[error("names must be UTF-8")]
    NotUtf8,
    /// A name that can't be a file in the mirror.
    #[error(transparent)]
    BadName(#[from] crate::cache::PathRefused),
    /// A write to this open file failed before (`errno`, a full disk): no more writes until
    /// every writer has closed, so no half-written copy is ever saved.
    #[error("an earlier write to this file failed; close and reopen it")]
    EarlierWriteFailed { errno: i32 },
    /// A write failed (`errno`): the working copy is dropped, the last saved content kept.
    #[error("a write failed; the last saved content is kept")]
    WriteFailed { errno: i32 },
    /// An offset or a length past what a file can hold.
    #[error("{0} too large")]
    TooLarge(&'static str),
    /// The handle was opened read-only.
    #[error("not open for writing")]
    NotWritable,
    /// `renameat2(RENAME_EXCHANGE)`.
    #[error("exchanging names is not supported")]
    NoExchange,
    /// A kind of file the platform can't hold, at a name that is not local-only.
    #[error("{0} cannot be synced; only local-only names may be one")]
    NotSyncable(&'static str),
    /// Device files are never made here.
    #[error("device files cannot be made here")]
    NoDevices,
    #[error("exists")]
    Exists,
    /// A folder that still holds something (a symlink, which the index does not count).
    #[error("not empty")]
    NotEmpty,
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
            FsError::NotFetched(_) => libc::EIO,
            FsError::Interrupted => libc::EINTR,
            FsError::NotUtf8 => libc::EINVAL,
            FsError::BadName(e) => name_errno(e),
            FsError::EarlierWriteFailed { errno } | FsError::WriteFailed { errno } => *errno,
            FsError::TooLarge(_) => libc::EFBIG,
            FsError::NotWritable => libc::EBADF,
            FsError::NoExchange => libc::EINVAL,
            FsError::NotSyncable(_) | FsError::NoDevices => libc::EPERM,
            FsError::Exists => libc::EEXIST,
            FsError::NotEmpty => libc::ENOTEMPTY,
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
                | FsError::Interrupted
                | FsError::NotUtf8
                | FsError::Exists
                | FsError::NotEmpty
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
        SyncError::NameRefused(_) => libc::EINVAL,
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
