//! The times a local disk keeps that the index does not: a folder's modification time moves
//! when a name is made, removed or renamed in it, and any inode's status-change time (ctime)
//! moves on chmod, chown, utimens, truncate and on those folder changes. Kept in memory for the
//! life of the mount (the platform has neither); after a remount a folder shows its index time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

#[derive(Default)]
pub struct ChangeTimes {
    at: Mutex<HashMap<u64, SystemTime>>,
}

impl ChangeTimes {
    /// `ino` changed now.
    pub fn touch(&self, ino: u64) {
        self.at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ino, SystemTime::now());
    }

    /// When `ino` last changed in this mount, if it did.
    pub fn get(&self, ino: u64) -> Option<SystemTime> {
        self.at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ino)
            .copied()
    }
}
