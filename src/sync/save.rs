//! A save: new content becomes the mirror copy. One code path for every front door (a file closed
//! or fsync'ed through the mount, a `POST /_/save` to the local server): the replaced content is
//! kept in `sites-versions/` if it is not there yet, a site's new content is recorded there too
//! (every saved version, as Hyperclay Local does), the copy is replaced atomically, the index
//! updated after the disk, and the push starts at once.

use std::path::Path;
use std::sync::Arc;

use super::{Engine, Result, SyncError};
use crate::cache::{versions, Mirror, MirrorError};
use crate::protocol::NodeKind;

impl Engine {
    /// Makes the finished, fsync'ed file `work` the mirror copy of `ino` (renaming it into place).
    pub fn save_file(self: &Arc<Self>, ino: u64, work: &Path) -> Result<()> {
        let lock = self.file_lock(ino);
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = self.index.get(ino) else {
            let _ = std::fs::remove_file(work);
            return Err(SyncError::Refused(libc::ENOENT, "the file is gone".into()));
        };
        let (sum, size) = Mirror::checksum_of(work)?;
        let rel = self.index.path(ino).unwrap_or_default();
        let target = self.mirror.path(&rel);
        if e.local.as_deref() == Some(sum.as_str()) && target.exists() {
            let _ = std::fs::remove_file(work);
        } else {
            // Editors' swap and temp files are not worth versions.
            if e.is_hydrated() && !crate::cache::is_local_only(&rel) {
                self.back_up(&rel, &e, &target)?;
            }
            self.mirror.ensure_parent(&target)?;
            self.mirror.commit(work, &target)?;
            let now = chrono::Utc::now().timestamp_millis();
            self.index.modify(ino, |e| {
                e.local = Some(sum.clone());
                e.size = size;
                e.mtime_ms = now;
            })?;
            if e.kind == NodeKind::Site && !crate::cache::is_local_only(&rel) {
                self.record_version(&rel, &target);
            }
        }
        drop(guard);
        self.request_push(ino);
        Ok(())
    }

    /// Saves `bytes` as the new content of `ino` (the local server's save).
    pub fn save_bytes(self: &Arc<Self>, ino: u64, bytes: &[u8]) -> Result<()> {
        let rel = self.index.path(ino).unwrap_or_default();
        let target = self.mirror.path(&rel);
        self.mirror.ensure_parent(&target)?;
        let work = Mirror::temp_beside(&target);
        std::fs::write(&work, bytes)
            .and_then(|_| std::fs::File::open(&work)?.sync_all())
            .map_err(|e| MirrorError::io("writing", &work, e))?;
        self.save_file(ino, &work)
    }

    /// Keeps a just-saved site content in `sites-versions/`. A failure is logged: the content is
    /// safe in the mirror and about to go up.
    fn record_version(&self, rel: &str, target: &Path) {
        let recorded = std::fs::read(target)
            .map_err(|e| MirrorError::io("reading", target, e))
            .and_then(|bytes| {
                versions::save(&self.mirror.versions_root(), rel, NodeKind::Site, &bytes)
            });
        if let Err(e) = recorded {
            tracing::warn!(path = %rel, error = %e, "could not record the saved version in sites-versions");
        }
    }
}
