//! New files whose only save failed (a full disk, a quota): they hold nothing the user saved,
//! only the empty file `open(O_CREAT)` made. They stay local, counted apart in status with what
//! to do, until a save of theirs succeeds: before, such a file waited to go up for ever and went
//! up empty at the next mount. Kept in the index's meta, so a restart keeps them held.

use std::sync::Mutex;

use super::cell::Cells;
use super::Engine;
use crate::cache::{FileState, Index};

const META_KEY: &str = "failed_saves";

/// Why such a file stays local, as status says it.
pub const HELD_REASON: &str = "its only save failed (disk full?): save it again, or delete it";

/// The mark itself is the file's cell's (`CellState::held`, which keeps the cell); this writes
/// the marked set to the index's meta, one writer at a time so the index keeps the last set.
#[derive(Default)]
pub(super) struct FailedSaves {
    persist: Mutex<()>,
}

impl FailedSaves {
    /// Marks the files the index kept as held (inodes it no longer has are dropped).
    pub(super) fn load(index: &Index, cells: &Cells) {
        let kept = index.meta(META_KEY).ok().flatten().unwrap_or_default();
        for ino in kept.split(',').filter_map(|s| s.parse::<u64>().ok()) {
            if index.get(ino).is_some() {
                cells.get(ino).state().held = true;
            }
        }
    }

    /// Marks or clears `ino`; true when that changed its mark (the index is written then).
    fn set(&self, index: &Index, cells: &Cells, ino: u64, held: bool) -> bool {
        let _one_writer = self.persist.lock().unwrap_or_else(|p| p.into_inner());
        let changed = {
            let cell = cells.get(ino);
            let mut state = cell.state();
            std::mem::replace(&mut state.held, held) != held
        };
        if changed {
            let mut kept = cells.inos_where(|s| s.held);
            kept.sort_unstable();
            let kept: Vec<String> = kept.iter().map(u64::to_string).collect();
            if let Err(e) = index.set_meta(META_KEY, &kept.join(",")) {
                tracing::warn!(error = %e, "could not record a failed save in the index");
            }
        }
        changed
    }
}

impl Engine {
    /// A save of `ino` failed (its working copy was dropped). A new file that holds nothing yet
    /// stays local until a save succeeds.
    pub fn save_failed(&self, ino: u64) {
        let Some(e) = self.index.get(ino) else {
            return;
        };
        if e.state() == FileState::New
            && e.size == 0
            && self.failed_saves.set(&self.index, &self.cells, ino, true)
        {
            let path = self.index.path(ino).unwrap_or_default();
            tracing::warn!(%path, "a new file's only save failed: it stays local until it is saved again");
        }
    }

    /// A save of `ino` succeeded (or it was closed empty on purpose): it goes up as any file.
    pub fn save_succeeded(&self, ino: u64) {
        if self.held_after_failed_save(ino) {
            self.failed_saves.set(&self.index, &self.cells, ino, false);
        }
    }

    /// Whether `ino` is a new file held after its only save failed.
    pub(super) fn held_after_failed_save(&self, ino: u64) -> bool {
        self.cells.peek(ino, |s| s.held).unwrap_or(false)
    }
}
