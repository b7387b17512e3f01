//! The disk side of a save, shared by every front door (the mount and the local server): the
//! content being replaced is kept in `sites-versions/` unless it already is the newest version
//! there, the new content replaces the mirror copy atomically (a finished file renamed into
//! place; fsync'ed when the save is to be durable: [`Durability`]), and a site's new content is
//! recorded as a version too (every saved version, as Hyperclay Local does). Backups and
//! versions are always fsync'ed: the program writes them on its own behalf.

use std::path::Path;

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
    work: &Path,
    previous_elsewhere: bool,
    mode: Option<u32>,
    durability: Durability,
) -> Result<Replaced, MirrorError> {
    let (checksum, size) = Mirror::checksum_of(work)?;
    let target = mirror.path(rel);
    // Never through a symlink: a link planted there would put the file it points to (maybe
    // outside the mirror) into `sites-versions/`.
    let previous = mirror.read(rel);
    if previous
        .as_deref()
        .is_some_and(|p| crate::protocol::checksum(p) == checksum)
    {
        let _ = std::fs::remove_file(work);
        return Ok(Replaced {
            checksum,
            size,
            unchanged: true,
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
    record_site_version(mirror, rel, kind);
    Ok(Replaced {
        checksum,
        size,
        unchanged: false,
    })
}

/// Records a site's saved content (now the mirror copy of `rel`) as a version, as Hyperclay
/// Local does for every save; nothing for uploads and local-only names. A failure is logged:
/// the save itself stands.
pub fn record_site_version(mirror: &Mirror, rel: &RelPath, kind: NodeKind) {
    if kind != NodeKind::Site || super::is_local_only(rel) {
        return;
    }
    let target = mirror.path(rel);
    if let Err(e) = mirror
        .read(rel)
        .ok_or_else(|| MirrorError::io("reading", &target, std::io::ErrorKind::NotFound.into()))
        .and_then(|bytes| versions::save(&mirror.versions_root(), rel, kind, &bytes))
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
