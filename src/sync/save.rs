//! A save: new content becomes the mirror copy. One code path for every front door (a file closed
//! or fsync'ed through the mount, a `POST /_/save` to the local server): the replaced content is
//! kept in `sites-versions/` if it is not there yet, a site's new content is recorded there too
//! (every saved version, as Hyperclay Local does), the copy is replaced atomically, the index
//! updated after the disk, and the push starts at once.

use std::path::Path;
use std::sync::Arc;

use super::{Engine, Result, SyncError};
use crate::cache::{save, FileState};

impl Engine {
    /// Makes the finished, fsync'ed file `work` the mirror copy of `ino` (renaming it into place).
    pub fn save_file(self: &Arc<Self>, ino: u64, work: &Path) -> Result<()> {
        let rel = self.save_in_place(ino, work)?;
        self.announce_change(&rel, super::ChangedBy::Mount);
        Ok(())
    }

    fn save_in_place(self: &Arc<Self>, ino: u64, work: &Path) -> Result<crate::cache::RelPath> {
        let claimed = self.file_claim(ino);
        // Checked under the file lock, which an unlink takes too: a file deleted (or replaced by
        // a rename) after its writer's last check drops what was written to it, as a local disk
        // drops writes to an unlinked file, instead of coming back in the mirror under its
        // tombstone (issue 24's race; `tests/model.rs`).
        let Some(e) = self.index.get(ino).filter(|e| !e.tombstone) else {
            save::discard(work);
            return Err(SyncError::Gone);
        };
        let Some(rel) = self.index.path(ino) else {
            save::discard(work);
            return Err(SyncError::Gone);
        };
        // The copy being replaced is on the platform too when it is what both sides last held.
        let previous_elsewhere = matches!(e.state(), FileState::Clean | FileState::Behind);
        let replaced = save::replace(&self.mirror, &rel, e.kind, work, previous_elsewhere, e.mode)?;
        if !replaced.unchanged {
            // The edit's time on the platform's clock as it is now: a wall clock stepped later
            // (NTP when the network returns) never moves it (`clock.rs`).
            let (now, edited) = (self.settings.clock.wall_ms(), self.clock.now_ms());
            self.index.modify(ino, |e| {
                e.local = Some(replaced.checksum.clone());
                e.size = replaced.size;
                e.mtime_ms = now;
                e.edited_ms = Some(edited);
            })?;
        }
        drop(claimed);
        // Saved again: the user has seen the file since its conflict.
        self.status.clear_conflict(&rel);
        self.save_succeeded(ino);
        self.request_push(ino);
        Ok(rel)
    }

    /// Saves `bytes` as the new content of `ino` from outside the mount (the local server): the
    /// kernel is told, so open editors see it.
    pub fn save_bytes(self: &Arc<Self>, ino: u64, bytes: &[u8]) -> Result<()> {
        let rel = self.rel(ino)?;
        let work = save::stage(&self.mirror, &rel, bytes)?;
        let rel = self.save_in_place(ino, &work)?;
        self.notify(super::Notice::Content { ino });
        self.announce_change(&rel, super::ChangedBy::Server);
        Ok(())
    }
}
