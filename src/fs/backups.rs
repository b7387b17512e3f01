//! `sites-versions/` in the mount: a read-only view of the mirror's backup folder, so backups can
//! be browsed and restored by copying. Its inodes live in their own range, handed out per path
//! and never reused. Symlinks are shown as symlinks and never followed.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::cache::versions::Browse;

/// The inode of `sites-versions/` itself; its contents follow.
pub const VERSIONS_INO: u64 = 1 << 62;

pub fn is_backup_ino(ino: u64) -> bool {
    ino >= VERSIONS_INO
}

#[derive(Default)]
struct Table {
    by_ino: HashMap<u64, String>,
    by_path: HashMap<String, u64>,
    next: u64,
}

pub struct Backups {
    storage: Browse,
    table: Mutex<Table>,
}

impl Backups {
    pub fn new(root: PathBuf) -> Backups {
        let mut table = Table {
            next: VERSIONS_INO + 1,
            ..Table::default()
        };
        table.by_ino.insert(VERSIONS_INO, String::new());
        table.by_path.insert(String::new(), VERSIONS_INO);
        Backups {
            storage: Browse::new(root),
            table: Mutex::new(table),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The path under `sites-versions/` of a backup inode.
    pub fn rel(&self, ino: u64) -> Option<String> {
        self.table().by_ino.get(&ino).cloned()
    }

    /// The inode for a path, handed out on first sight.
    pub fn ino_for(&self, rel: &str) -> u64 {
        let mut t = self.table();
        if let Some(ino) = t.by_path.get(rel) {
            return *ino;
        }
        let ino = t.next;
        t.next += 1;
        t.by_ino.insert(ino, rel.to_string());
        t.by_path.insert(rel.to_string(), ino);
        ino
    }

    pub fn child(parent_rel: &str, name: &str) -> String {
        if parent_rel.is_empty() {
            name.to_string()
        } else {
            format!("{parent_rel}/{name}")
        }
    }

    /// Metadata without following a symlink.
    pub fn metadata(&self, rel: &str) -> std::io::Result<Metadata> {
        self.storage.metadata(rel)
    }

    /// The storage under the view (names, links, reads).
    pub fn storage(&self) -> &Browse {
        &self.storage
    }
}

/// Modification time of metadata in milliseconds.
pub fn mtime_ms(m: &Metadata) -> i64 {
    m.mtime() * 1000 + m.mtime_nsec() / 1_000_000
}
