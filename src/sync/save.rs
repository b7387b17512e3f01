//! A save: new content becomes the mirror copy. One code path for every front door (a file closed
//! or fsync'ed through the mount, a `POST /_/save` to the local server): the replaced content is
//! kept in `sites-versions/` if it is not there yet, a site's new content is recorded there too
//! (every saved version, as Hyperclay Local does), the copy is replaced atomically (durably when
//! the caller asks: a program's fsync, the local server), the index updated after the disk, and
//! the push starts at once.

use std::path::Path;
use std::sync::Arc;

use super::{Engine, Result, SyncError};
use crate::cache::save::Durability;
use crate::cache::{save, FileState};

impl Engine {
    /// Makes the finished file `work` the mirror copy of `ino` (renaming it into place) at a
    /// program's close: as a local disk keeps a closed file, without an fsync of its own
    /// ([`Durability::Closed`]; a program's fsync then calls [`Engine::make_durable`]).
    /// `mtime_ms`: a time the program set on the open file, which `work` already shows; the
    /// index records it with the content (as [`Engine::keep_mtime`] would after).
    pub fn save_file(self: &Arc<Self>, ino: u64, work: &Path, mtime_ms: Option<i64>) -> Result<()> {
        let rel = self.save_in_place(ino, save::Work::file(work), Durability::Closed, mtime_ms)?;
        self.announce_change(&rel, super::ChangedBy::Mount);
        Ok(())
    }

    fn save_in_place(
        self: &Arc<Self>,
        ino: u64,
        work: save::Work<'_>,
        durability: Durability,
        mtime_ms: Option<i64>,
    ) -> Result<crate::cache::RelPath> {
        let claimed = self.file_claim(ino);
        // Checked under the file lock, which an unlink takes too: a file deleted (or replaced by
        // a rename) after its writer's last check drops what was written to it, as a local disk
        // drops writes to an unlinked file, instead of coming back in the mirror under its
        // tombstone (issue 24's race; `tests/model.rs`).
        let Some(e) = self.index.get(ino).filter(|e| !e.tombstone) else {
            save::discard(work.path);
            return Err(SyncError::Gone);
        };
        let Some(rel) = self.index.path(ino) else {
            save::discard(work.path);
            return Err(SyncError::Gone);
        };
        // The copy being replaced is on the platform too when it is what both sides last held.
        let previous_elsewhere = matches!(e.state(), FileState::Clean | FileState::Behind);
        let replaced = save::replace(
            &self.mirror,
            &rel,
            e.kind,
            work,
            previous_elsewhere,
            e.mode,
            durability,
        )?;
        if !replaced.unchanged {
            // The edit's time on the platform's clock as it is now: a wall clock stepped later
            // (NTP when the network returns) never moves it (`clock.rs`).
            let (now, edited) = (self.settings.clock.wall_ms(), self.clock.now_ms());
            self.index.modify(ino, |e| {
                e.local = Some(replaced.checksum.clone());
                e.size = replaced.size;
                e.mtime_ms = mtime_ms.unwrap_or(now);
                e.edited_ms = Some(edited);
            })?;
        } else if let Some(ms) = mtime_ms {
            // The same content: the mirror copy stays, and takes the time set.
            self.index.modify(ino, |e| e.mtime_ms = ms)?;
            self.mirror.set_modified(&rel, ms);
        }
        // The bytes just read go to the push as they are: it reads and hashes nothing again.
        // (The plain folder's saves are handed on by the look that sees them: `observe.rs`.)
        // Nothing for a name that stays local: no push would take it.
        if let (Some(bytes), false, false) = (
            &replaced.bytes,
            self.settings.front_door == super::FrontDoor::Folder,
            crate::cache::is_local_only(&rel),
        ) {
            self.cells
                .hand_on(&mut claimed.state(), &replaced.checksum, bytes);
        }
        // Saved again: the user has seen the file since its conflict.
        self.status.clear_conflict(&rel);
        self.save_succeeded(ino);
        // Asked for before the claim is let go, so that the cell (and what was handed on) stays
        // for the push; the push itself waits for the claim.
        self.request_push(ino);
        drop(claimed);
        Ok(rel)
    }

    /// A program's `fsync` (or `fdatasync`) of `ino` through the mount, after its save: the
    /// mirror copy and the folder naming it are on the disk before the reply.
    pub fn make_durable(&self, ino: u64, data_only: bool) -> Result<()> {
        let _claimed = self.file_claim(ino);
        let Some(rel) = self.index.path(ino) else {
            return Ok(());
        };
        match self.index.get(ino) {
            _ if ino == crate::cache::ROOT_INO => self.mirror.make_folder_durable(&rel)?,
            Some(e) if e.is_dir() => self.mirror.make_folder_durable(&rel)?,
            Some(e) if !e.tombstone => self.mirror.make_durable(&rel, data_only)?,
            _ => {}
        }
        Ok(())
    }

    /// Saves `bytes` as the new content of `ino` from outside the mount (the local server): the
    /// kernel is told, so open editors see it.
    pub fn save_bytes(self: &Arc<Self>, ino: u64, bytes: impl Into<bytes::Bytes>) -> Result<()> {
        let bytes = bytes.into();
        let rel = self.rel(ino)?;
        let work = save::stage(&self.mirror, &rel, &bytes)?;
        let work = save::Work {
            path: &work,
            bytes: Some(bytes),
        };
        let rel = self.save_in_place(ino, work, Durability::Synced, None)?;
        self.notify(super::Notice::Content { ino });
        self.announce_change(&rel, super::ChangedBy::Server);
        Ok(())
    }
}
