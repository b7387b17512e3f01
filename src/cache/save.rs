//! The disk side of a save, shared by every front door (the mount and the local server): the
//! content being replaced is kept in `sites-versions/` unless it already is the newest version
//! there, the new content replaces the mirror copy atomically (a finished file renamed into
//! place; fsync'ed when the save is to be durable: [`Durability`]), and a site's new content is
//! recorded as a version too (every saved version, as Hyperclay Local does). Backups and
//! versions are always fsync'ed: the program writes them on its own behalf.

use std::io::Read;
use std::path::Path;

use bytes::Bytes;

use super::mirror::{Mirror, MirrorError};
use super::versions;
use super::RelPath;
use crate::protocol::{Checksum, NodeKind};

/// The outcome of [`replace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    pub checksum: Checksum,
    pub size: u64,
    /// The new content equals the old: nothing was written.
    pub unchanged: bool,
    /// The new content, when it was read into memory (at most [`IN_MEMORY_MAX`]): the save
    /// hands it to its push, which then neither reads nor hashes the file again.
    pub bytes: Option<Bytes>,
}

/// The most of a save's new content read into memory, once, to hash it, record it as a version
/// and hand it to the push: the platform's own limit, since a bigger file never goes up (it is
/// hashed as it is read, in chunks, and nothing is handed on).
pub const IN_MEMORY_MAX: u64 = crate::protocol::MAX_CONTENT_BYTES;

/// A save's finished new content: the file to rename into place, and its bytes when the caller
/// holds them already (the local server's save), so they are not read back.
pub struct Work<'a> {
    pub path: &'a Path,
    pub bytes: Option<Bytes>,
}

impl<'a> Work<'a> {
    /// A finished file whose bytes are read by the save.
    pub fn file(path: &'a Path) -> Self {
        Work { path, bytes: None }
    }
}

/// Reads the new content once: its checksum and size, and its bytes when it is small enough to
/// hold ([`IN_MEMORY_MAX`]).
fn read_new(work: &Path) -> Result<(Checksum, u64, Option<Bytes>), MirrorError> {
    let file = super::versions::open_nofollow(work).map_err(|e| match e.raw_os_error() {
        Some(crate::os::SYMLINK_REFUSED) => MirrorError::Symlink(work.to_path_buf()),
        _ => MirrorError::io("reading", work, e),
    })?;
    let len = file
        .metadata()
        .map_err(|e| MirrorError::io("reading", work, e))?
        .len();
    if len <= IN_MEMORY_MAX {
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(IN_MEMORY_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| MirrorError::io("reading", work, e))?;
        if bytes.len() as u64 <= IN_MEMORY_MAX {
            let size = bytes.len() as u64;
            return Ok((
                crate::protocol::checksum(&bytes),
                size,
                Some(Bytes::from(bytes)),
            ));
        }
    }
    let (sum, size) = Mirror::checksum_of(work)?;
    Ok((sum, size, None))
}

/// How a save's new mirror copy lands on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// As a local disk keeps a closed file (a program's close through the mount): renamed into
    /// place, whole for every process and across a `kill -9`, on the disk when the kernel writes
    /// it back. After a power cut the start-up comparison's rule applies (docs/semantics.md,
    /// "Crash safety").
    Closed,
    /// On the disk before the save returns: the new copy's content, then its folder, fsync'ed
    /// (a program's `fsync`, the local server's save).
    Synced,
}

/// Replaces the mirror copy of `rel` with the finished file `work`. `previous_elsewhere` says
/// the content being replaced is also safe somewhere else (on the platform): a failed backup is
/// then logged and the save goes on; otherwise a failed backup stops the save. The new copy
/// keeps the file's mode (`mode`, its entry's kept mode, else the replaced copy's).
pub fn replace(
    mirror: &Mirror,
    rel: &RelPath,
    kind: NodeKind,
    work: Work<'_>,
    previous_elsewhere: bool,
    mode: Option<u32>,
    durability: Durability,
) -> Result<Replaced, MirrorError> {
    let (checksum, size, new_bytes) = match work.bytes {
        Some(b) => (crate::protocol::checksum(&b), b.len() as u64, Some(b)),
        None => read_new(work.path)?,
    };
    let work = work.path;
    let target = mirror.path(rel);
    // Never through a symlink: a link planted there would put the file it points to (maybe
    // outside the mirror) into `sites-versions/`.
    let previous = mirror.read(rel);
    let unchanged = match (&previous, &new_bytes) {
        (Some(p), Some(b)) => p[..] == b[..],
        (Some(p), None) => crate::protocol::checksum(p) == checksum,
        (None, _) => false,
    };
    if unchanged {
        let _ = std::fs::remove_file(work);
        return Ok(Replaced {
            checksum,
            size,
            unchanged: true,
            bytes: new_bytes,
        });
    }
    let keep_versions = !super::is_local_only(rel);
    if let (Some(previous), true) = (&previous, keep_versions) {
        if let Err(e) = back_up(mirror, rel, kind, previous) {
            if !previous_elsewhere {
                let _ = std::fs::remove_file(work);
                tracing::error!(path = %rel, error = %e, "could not back up the copy being replaced: not saving over it");
                return Err(e);
            }
            tracing::warn!(path = %rel, error = %e, "could not back up the copy being replaced; the platform keeps it");
        }
    }
    mirror.ensure_parent(rel)?;
    mirror.carry_mode(work, rel, mode);
    match durability {
        Durability::Closed => mirror.put_in_place(work, &target)?,
        Durability::Synced => {
            std::fs::File::open(work)
                .and_then(|f| f.sync_all())
                .map_err(|e| MirrorError::io("syncing", work, e))?;
            mirror.commit(work, &target)?
        }
    }
    record_site_version(mirror, rel, kind, new_bytes.as_deref());
    Ok(Replaced {
        checksum,
        size,
        unchanged: false,
        bytes: new_bytes,
    })
}

/// Records a site's saved content (now the mirror copy of `rel`) as a version, as Hyperclay
/// Local does for every save; nothing for uploads and local-only names. `saved`: that content,
/// when the caller holds it (else it is read from the mirror copy). A failure is logged: the
/// save itself stands.
pub fn record_site_version(mirror: &Mirror, rel: &RelPath, kind: NodeKind, saved: Option<&[u8]>) {
    if kind != NodeKind::Site || super::is_local_only(rel) {
        return;
    }
    let target = mirror.path(rel);
    let read;
    let bytes = match saved {
        Some(b) => Ok(b),
        None => {
            read = mirror.read(rel);
            read.as_deref().ok_or_else(|| {
                MirrorError::io("reading", &target, std::io::ErrorKind::NotFound.into())
            })
        }
    };
    if let Err(e) =
        bytes.and_then(|bytes| versions::save(&mirror.versions_root(), rel, kind, bytes))
    {
        tracing::warn!(path = %rel, error = %e, "could not record the saved version in sites-versions");
    }
}

/// Keeps `bytes` as a version of `rel` unless the newest version already holds them.
pub fn back_up(
    mirror: &Mirror,
    rel: &RelPath,
    kind: NodeKind,
    bytes: &[u8],
) -> Result<(), MirrorError> {
    if bytes.is_empty() {
        // Nothing to keep (a file just created, about to get its first content).
        return Ok(());
    }
    let root = mirror.versions_root();
    let newest_same = versions::list(&versions::dir_for(&root, rel))
        .last()
        .and_then(|(_, p)| std::fs::read(p).ok())
        .is_some_and(|b| b == bytes);
    if !newest_same {
        let path = versions::save(&root, rel, kind, bytes)?;
        tracing::info!(path = %rel, version = %path.display(), "backed up the copy being replaced");
    }
    Ok(())
}

/// Removes a finished working copy that will not be saved (its file left the index meanwhile).
pub fn discard(work: &std::path::Path) {
    if let Err(e) = std::fs::remove_file(work) {
        tracing::debug!(path = %work.display(), error = %e, "could not remove a discarded copy");
    }
}

/// Writes `bytes` to a finished temp file, ready to replace `rel`'s mirror copy ([`replace`]
/// fsyncs it when the save is [`Durability::Synced`]).
pub fn stage(
    mirror: &Mirror,
    rel: &RelPath,
    bytes: &[u8],
) -> Result<std::path::PathBuf, MirrorError> {
    mirror.ensure_parent(rel)?;
    let work = mirror.temp();
    std::fs::write(&work, bytes).map_err(|e| {
        let _ = std::fs::remove_file(&work);
        MirrorError::io("writing", &work, e)
    })?;
    Ok(work)
}
