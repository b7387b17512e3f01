//! New files whose only save failed (a full disk, a quota): they hold nothing the user saved,
//! only the empty file `open(O_CREAT)` made. They stay local, counted apart in status with what
//! to do, until a save of theirs succeeds: before, such a file waited to go up for ever and went
//! up empty at the next mount. Kept in the index's meta, so a restart keeps them held.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::Engine;
use crate::cache::{FileState, Index};

const META_KEY: &str = "failed_saves";

/// Why such a file stays local, as status says it.
pub const HELD_REASON: &str = "its only save failed (disk full?): save it again, or delete it";

#[derive(Default)]
pub(super) struct FailedSaves {
    inos: Mutex<BTreeSet<u64>>,
}

impl FailedSaves {
    /// The set as the index keeps it (inodes it no longer has are dropped).
    pub(super) fn load(index: &Index) -> FailedSaves {
        let kept = index.meta(META_KEY).ok().flatten().unwrap_or_default();
        let inos = kept
            .split(',')
            .filter_map(|s| s.parse().ok())
            .filter(|&ino| index.get(ino).is_some())
            .collect();
        FailedSaves {
            inos: Mutex::new(inos),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.inos.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn contains(&self, ino: u64) -> bool {
        self.lock().contains(&ino)
    }

    /// Adds or removes `ino`; true when that changed the set (the index is written then).
    fn set(&self, index: &Index, ino: u64, held: bool) -> bool {
        let mut inos = self.lock();
        let changed = if held {
            inos.insert(ino)
        } else {
            inos.remove(&ino)
        };
        if changed {
            let kept: Vec<String> = inos.iter().map(u64::to_string).collect();
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
            && self.failed_saves.set(&self.index, ino, true)
        {
            let path = self.index.path(ino).unwrap_or_default();
            tracing::warn!(%path, "a new file's only save failed: it stays local until it is saved again");
        }
    }

    /// A save of `ino` succeeded (or it was closed empty on purpose): it goes up as any file.
    pub fn save_succeeded(&self, ino: u64) {
        if self.failed_saves.contains(ino) {
            self.failed_saves.set(&self.index, ino, false);
        }
    }

    /// Whether `ino` is a new file held after its only save failed.
    pub(super) fn held_after_failed_save(&self, ino: u64) -> bool {
        self.failed_saves.contains(ino)
    }
}
