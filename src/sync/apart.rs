//! What "never delete across" leaves apart, for status: files and folders removed (or renamed
//! away) here that the platform still holds, and local copies kept of files the platform deleted.

use super::Engine;
use crate::cache::{is_local_only, FileState};

/// Paths that differ between the two sides on purpose, each sorted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeptApart {
    /// Removed or renamed away here; still on the platform (hidden here by a tombstone).
    pub removed_here: Vec<String>,
    /// Deleted on the platform; the local copy stays (it goes up again only once edited).
    pub deleted_there: Vec<String>,
}

impl Engine {
    pub fn kept_apart(&self) -> KeptApart {
        let mut apart = KeptApart::default();
        let kept = self
            .index
            .select(|e| matches!(e.state(), FileState::Tombstone | FileState::Detached));
        for e in kept {
            let state = e.state();
            if !matches!(state, FileState::Tombstone | FileState::Detached) {
                continue;
            }
            let Some(rel) = self.index.path(e.ino) else {
                continue;
            };
            if is_local_only(&rel) {
                continue;
            }
            match state {
                FileState::Tombstone if e.node_id.is_some() => {
                    apart.removed_here.push(rel.to_string())
                }
                FileState::Detached if !self.index.is_hidden(e.ino) => {
                    apart.deleted_there.push(rel.to_string())
                }
                _ => {}
            }
        }
        apart.removed_here.sort();
        apart.deleted_there.sort();
        apart
    }
}
