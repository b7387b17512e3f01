//! The mount's one error type: every failure knows the errno the kernel gets (never EIO when a
//! better one exists) and is logged once, with its cause, where it is answered.

use crate::cache::{IndexError, MirrorError};
use crate::sync::SyncError;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or folder")]
    NotFound,
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
            FsError::ReadOnly(_) => libc::EROFS,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::BadHandle => libc::EBADF,
            FsError::NotSupported => libc::ENOTSUP,
            FsError::Refused(_, errno) => *errno,
            FsError::Mirror(e) => e.raw_os_error().unwrap_or(libc::EIO),
            FsError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            FsError::Sync(SyncError::Refused(errno, _)) => *errno,
            FsError::Sync(SyncError::Mirror(e)) => e.raw_os_error().unwrap_or(libc::EIO),
            FsError::Sync(SyncError::Gone) => libc::ENOENT,
            FsError::Index(IndexError::BadName(e)) | FsError::Sync(SyncError::BadPath(e)) => {
                name_errno(e)
            }
            FsError::Sync(SyncError::Index(IndexError::BadName(e))) => name_errno(e),
            FsError::Index(_) | FsError::Sync(_) => libc::EIO,
        }
    }

    /// Expected answers (a missing name, a read-only place) are not worth a log line.
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            FsError::NotFound
                | FsError::ReadOnly(_)
                | FsError::NotDir
                | FsError::IsDir
                | FsError::NotSupported
        )
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
