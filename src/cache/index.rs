//! The index: one row per local node in SQLite (WAL) and the same tree in memory, so that every
//! lookup, getattr and readdir is answered from memory while every change is durable. Only this
//! file touches `index.db`.
//!
//! An entry keeps: its inode (never reused), parent and name, kind, the platform node id (none
//! for local-only files and detached ones), size and modification time, the **base** checksum
//! (what both sides held at the last sync), the platform's checksum and `modifiedAt`, the mirror
//! copy's checksum (none while the copy is not on disk yet), when that copy's content was made
//! (on the platform's clock) and the tombstone flag.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rusqlite::{params, Connection, OptionalExtension};

use super::relpath::{check_child, PathRefused, RelPath, MAX_DEPTH};
use super::tree::Tree;

mod change;
use crate::protocol::{Checksum, NodeId, NodeKind, PlatformTime};
pub use change::Change;

pub const ROOT_INO: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the index database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("no such entry (inode {0})")]
    Missing(u64),
    /// Every name the index keeps is a valid file name here ([`check_segment`]): paths built
    /// from the index can't leave the mirror.
    #[error("refused {0}")]
    BadName(#[from] PathRefused),
}

impl IndexError {
    /// Another connection holds the index (SQLite's busy or locked): it is in use, not damaged.
    pub fn is_in_use(&self) -> bool {
        matches!(
            self,
            IndexError::Db(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

type Result<T> = std::result::Result<T, IndexError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ino: u64,
    pub parent: u64,
    pub name: String,
    pub kind: NodeKind,
    pub node_id: Option<NodeId>,
    pub size: u64,
    /// Milliseconds since the epoch.
    pub mtime_ms: i64,
    pub base: Option<Checksum>,
    pub remote: Option<Checksum>,
    pub remote_modified: Option<PlatformTime>,
    /// Checksum of the mirror copy; `None` while it is not on disk.
    pub local: Option<Checksum>,
    /// When the mirror copy's content was made, on the platform's clock as it was calibrated at
    /// that moment (`sync/clock.rs`), in milliseconds since the epoch: the local side of "the
    /// later edit wins". A wall clock stepped afterwards never moves it. `None` where not known
    /// (an index from before it was kept): `mtime_ms` plus the current offset stands in.
    pub edited_ms: Option<i64>,
    pub tombstone: bool,
    /// The permission bits set here (`chmod`, or given at create), kept locally only: the
    /// platform has no modes. `None`: the default, 0644 for a file and 0755 for a folder.
    pub mode: Option<u32>,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.kind == NodeKind::Folder
    }

    /// The permission bits the mount shows (see [`Entry::mode`]).
    pub fn perm(&self) -> u32 {
        self.mode.unwrap_or(default_mode(self.is_dir()))
    }

    /// The mirror copy is on disk (folders always are).
    pub fn is_hydrated(&self) -> bool {
        self.is_dir() || self.local.is_some()
    }

    /// The mirror copy differs from what both sides held at the last sync (or there never was
    /// one): a change made here.
    pub fn changed_here(&self) -> bool {
        self.local.is_some() && self.local != self.base
    }

    /// What the fields say about this entry, in one place (callers match on it instead of
    /// retyping the predicates).
    pub fn state(&self) -> FileState {
        if self.tombstone {
            FileState::Tombstone
        } else if self.is_dir() {
            FileState::Folder
        } else if self.local.is_none() {
            FileState::NotOnDisk
        } else if self.node_id.is_none() {
            if self.changed_here() {
                FileState::New
            } else {
                FileState::Detached
            }
        } else if self.changed_here() {
            FileState::Changed
        } else if self.remote.is_some() && self.remote != self.local {
            FileState::Behind
        } else {
            FileState::Clean
        }
    }

    /// Its content must go up (new to the platform, or changed here since the base).
    pub fn goes_up(&self) -> bool {
        matches!(self.state(), FileState::New | FileState::Changed)
    }
}

/// The permission bits of a file or folder nobody set any for.
pub fn default_mode(dir: bool) -> u32 {
    if dir {
        0o755
    } else {
        0o644
    }
}

/// What [`Entry::mode`] keeps of permission bits `mode` (`None` when they are the default).
pub fn kept_mode(mode: u32, dir: bool) -> Option<u32> {
    let mode = mode & 0o7777;
    (mode != default_mode(dir)).then_some(mode)
}

/// An entry's sync state, from its fields (see [`Entry::state`]). A push's own progress (queued,
/// sending, a follow-up wanted) is the engine's push queue, `sync::push::Phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Deleted (or renamed away) here: the entry keeps the platform node's place, hidden, so the
    /// node is never deleted across nor brought back.
    Tombstone,
    Folder,
    /// Known from the platform; the content is not on disk yet (fetched on first read).
    NotOnDisk,
    /// Made here, not on the platform yet.
    New,
    /// Deleted on the platform, the local copy kept (never delete across): it goes up again
    /// only once it is edited here.
    Detached,
    /// Changed here since the last sync: it goes up.
    Changed,
    /// Unchanged here, and the platform holds newer content: it comes down.
    Behind,
    /// Both sides hold the base.
    Clean,
}

/// What a new entry starts with.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub parent: u64,
    pub name: String,
    pub kind: NodeKind,
    pub node_id: Option<NodeId>,
    pub size: u64,
    pub mtime_ms: i64,
    pub base: Option<Checksum>,
    pub remote: Option<Checksum>,
    pub remote_modified: Option<PlatformTime>,
    pub local: Option<Checksum>,
    /// See [`Entry::edited_ms`].
    pub edited_ms: Option<i64>,
    /// See [`Entry::mode`].
    pub mode: Option<u32>,
}

impl NewEntry {
    /// A new entry made here: not on the platform yet, made now, holding `local` (an empty
    /// file's checksum, or nothing for a folder).
    pub fn made_here(parent: u64, name: &str, kind: NodeKind, local: Option<Checksum>) -> NewEntry {
        NewEntry {
            parent,
            name: name.to_string(),
            kind,
            node_id: None,
            size: 0,
            mtime_ms: chrono::Utc::now().timestamp_millis(),
            base: None,
            remote: None,
            remote_modified: None,
            local,
            edited_ms: None,
            mode: None,
        }
    }

    /// A bare entry for the index's tests.
    #[cfg(test)]
    pub(super) fn sample(parent: u64, name: &str, kind: NodeKind, node: Option<u64>) -> NewEntry {
        NewEntry {
            node_id: node.map(NodeId::new),
            mtime_ms: 0,
            ..NewEntry::made_here(parent, name, kind, None)
        }
    }

    pub(super) fn into_entry(self, ino: u64, tombstone: bool) -> Entry {
        Entry {
            ino,
            parent: self.parent,
            name: self.name,
            kind: self.kind,
            node_id: self.node_id,
            size: self.size,
            mtime_ms: self.mtime_ms,
            base: self.base,
            remote: self.remote,
            remote_modified: self.remote_modified,
            local: self.local,
            edited_ms: self.edited_ms,
            tombstone,
            mode: self.mode,
        }
    }
}

/// Writes a whole entry's row (matched by inode); the name is checked first.
fn write_row(db: &Connection, e: &Entry) -> Result<()> {
    check_child(e.parent == ROOT_INO, &e.name)?;
    let changed = db.prepare_cached("UPDATE entries SET parent = ?2, name = ?3, kind = ?4, node_id = ?5, size = ?6, mtime_ms = ?7,
         base = ?8, remote = ?9, remote_modified = ?10, local = ?11, tombstone = ?12, edited_ms = ?13, mode = ?14 WHERE ino = ?1")?.execute(params![e.ino, e.parent, e.name, e.kind.as_str(), e.node_id, e.size, e.mtime_ms, e.base, e.remote, e.remote_modified, e.local, e.tombstone, e.edited_ms, e.mode])?;
    if changed == 0 {
        return Err(IndexError::Missing(e.ino));
    }
    Ok(())
}

/// Inserts a new entry's row; its inode is the row id.
fn insert_row(db: &Connection, new: &NewEntry, tombstone: bool) -> Result<u64> {
    check_child(new.parent == ROOT_INO, &new.name)?;
    db.prepare_cached("INSERT INTO entries(parent, name, kind, node_id, size, mtime_ms, base, remote, remote_modified, local, tombstone, edited_ms, mode)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)")?.execute(params![new.parent, new.name, new.kind.as_str(), new.node_id, new.size, new.mtime_ms, new.base, new.remote, new.remote_modified, new.local, tombstone, new.edited_ms, new.mode])?;
    Ok(db.last_insert_rowid() as u64)
}

/// Adds the columns an index made by an earlier version lacks.
fn add_missing_columns(conn: &Connection) -> Result<()> {
    let mut have = std::collections::HashSet::new();
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('entries')")?;
    for name in stmt.query_map([], |r| r.get::<_, String>(0))? {
        have.insert(name?);
    }
    for (column, kind) in ADDED_COLUMNS {
        if !have.contains(*column) {
            conn.execute_batch(&format!("ALTER TABLE entries ADD COLUMN {column} {kind}"))?;
        }
    }
    Ok(())
}

pub struct Index {
    db: Mutex<Connection>,
    tree: RwLock<Tree>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries(
  ino INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER NOT NULL, name TEXT NOT NULL,
  kind TEXT NOT NULL, node_id INTEGER UNIQUE, size INTEGER NOT NULL DEFAULT 0,
  mtime_ms INTEGER NOT NULL DEFAULT 0, base TEXT, remote TEXT, remote_modified TEXT, local TEXT,
  tombstone INTEGER NOT NULL DEFAULT 0, edited_ms INTEGER, mode INTEGER);
CREATE TABLE IF NOT EXISTS sent(node_id INTEGER NOT NULL, checksum TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sent_node ON sent(node_id);
INSERT OR IGNORE INTO sqlite_sequence(name, seq)
  SELECT 'entries', 1 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'entries');
";

const COLUMNS: &str =
    "ino, parent, name, kind, node_id, size, mtime_ms, base, remote, remote_modified, local, tombstone, edited_ms, mode";

/// Columns added since the first schema, each with its type: an index made before gets them
/// (empty) when it is opened.
const ADDED_COLUMNS: &[(&str, &str)] = &[("edited_ms", "INTEGER"), ("mode", "INTEGER")];

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let kind: String = r.get(3)?;
    Ok(Entry {
        ino: r.get(0)?,
        parent: r.get(1)?,
        name: r.get(2)?,
        kind: NodeKind::parse(&kind).unwrap_or(NodeKind::Upload),
        node_id: r.get(4)?,
        size: r.get(5)?,
        mtime_ms: r.get(6)?,
        base: r.get(7)?,
        remote: r.get(8)?,
        remote_modified: r.get(9)?,
        local: r.get(10)?,
        tombstone: r.get(11)?,
        edited_ms: r.get(12)?,
        mode: r.get(13)?,
    })
}

/// [`Index::record_sent`] inside a transaction of the caller's.
fn record_sent_in(db: &Connection, node: NodeId, checksum: &Checksum) -> Result<()> {
    db.prepare_cached("INSERT INTO sent(node_id, checksum, at_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![
            node,
            checksum,
            chrono::Utc::now().timestamp_millis()
        ])?;
    // The last few per node are enough.
    db.prepare_cached(
        "DELETE FROM sent WHERE node_id = ?1 AND rowid NOT IN
           (SELECT rowid FROM sent WHERE node_id = ?1 ORDER BY rowid DESC LIMIT 16)",
    )?
    .execute(params![node])?;
    Ok(())
}

impl Index {
    /// Opens the index at `path` and loads it into memory.
    pub fn open(path: &std::path::Path) -> Result<Index> {
        let conn = Connection::open(path)?;
        // One process owns a mirror (`cli/mirror_lock.rs`), so the index is never shared: an
        // exclusive lock, held from the first write to the close, spares every transaction its
        // file-lock and shared-memory calls (a tenth of a small file's cost, issue 25). Set before WAL
        // mode is entered, so the WAL index lives in memory, not in a shared `-shm` file.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Survives a kill -9 at any moment; the mirror is written (and fsync'ed) before the index.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        add_missing_columns(&conn)?;
        let mut tree = Tree::default();
        {
            let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM entries"))?;
            for e in stmt.query_map([], row_to_entry)? {
                let e = e?;
                // A damaged (or hand-edited) index must not name a file outside the mirror.
                if let Err(refused) = check_child(e.parent == ROOT_INO, &e.name) {
                    tracing::warn!(ino = e.ino, %refused, "skipping an index entry with a name that can't be a file here");
                    continue;
                }
                tree.put(e);
            }
        }
        Ok(Index {
            db: Mutex::new(conn),
            tree: RwLock::new(tree),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        // SQLite keeps itself consistent across a panic (open transactions roll back).
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> RwLockReadGuard<'_, Tree> {
        self.tree.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tree> {
        self.tree.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, ino: u64) -> Option<Entry> {
        self.read().entries.get(&ino).cloned()
    }

    /// An entry's size and modification time, without copying the entry.
    pub fn size_and_mtime(&self, ino: u64) -> Option<(u64, i64)> {
        self.read().entries.get(&ino).map(|e| (e.size, e.mtime_ms))
    }

    /// A live (not tombstoned) child by name.
    pub fn lookup(&self, parent: u64, name: &str) -> Option<Entry> {
        let tree = self.read();
        let ino = tree.children.get(&parent)?.get(name)?;
        tree.entries.get(ino).cloned()
    }

    /// Live children, sorted by name.
    pub fn children(&self, parent: u64) -> Vec<Entry> {
        let tree = self.read();
        tree.children
            .get(&parent)
            .map(|c| {
                c.values()
                    .filter_map(|ino| tree.entries.get(ino).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn child_count(&self, parent: u64) -> usize {
        self.read().children.get(&parent).map_or(0, |c| c.len())
    }

    /// Calls `f` on each live child from position `skip`, until it answers false. `f` runs under
    /// the tree's read lock: it must not call the index or wait for anything (copy out, then act).
    pub fn for_children(&self, parent: u64, skip: usize, mut f: impl FnMut(usize, &Entry) -> bool) {
        let tree = self.read();
        let Some(children) = tree.children.get(&parent) else {
            return;
        };
        for (i, ino) in children.values().enumerate().skip(skip) {
            if let Some(e) = tree.entries.get(ino) {
                if !f(i, e) {
                    break;
                }
            }
        }
    }

    /// A tombstone (a file deleted locally whose platform node stays) at a place.
    pub fn tombstone_at(&self, parent: u64, name: &str) -> Option<Entry> {
        let tree = self.read();
        let ino = tree.tombs.get(&(parent, name.to_string()))?;
        tree.entries.get(ino).cloned()
    }

    /// The site of that name with a platform node, wherever it is (site names are unique per account).
    pub fn site_named(&self, name: &str) -> Option<Entry> {
        let tree = self.read();
        let ino = tree.sites.get(name)?.first()?;
        tree.entries.get(ino).cloned()
    }

    /// Whether the entry or one of its folders is deleted locally.
    pub fn is_hidden(&self, ino: u64) -> bool {
        let tree = self.read();
        let mut current = ino;
        let mut steps = 0;
        while current != ROOT_INO && steps < 256 {
            match tree.entries.get(&current) {
                Some(e) if e.tombstone => return true,
                Some(e) => current = e.parent,
                None => return true,
            }
            steps += 1;
        }
        false
    }

    pub fn by_node(&self, node_id: NodeId) -> Option<Entry> {
        let tree = self.read();
        tree.by_node
            .get(&node_id)
            .and_then(|ino| tree.entries.get(ino))
            .cloned()
    }

    /// The relative path of an entry (`blog/post.html`); the root's is empty. None for an entry
    /// that is gone or not under the root (a cycle in a damaged index).
    pub fn path(&self, ino: u64) -> Option<RelPath> {
        let tree = self.read();
        let mut parts = Vec::new();
        let mut current = ino;
        while current != ROOT_INO {
            let e = tree.entries.get(&current)?;
            parts.push(e.name.as_str());
            current = e.parent;
            if parts.len() > MAX_DEPTH {
                return None;
            }
        }
        // Every stored name passed `check_child` on its way in.
        Some(
            parts
                .iter()
                .rev()
                .fold(RelPath::root(), |p, name| p.join_checked(name)),
        )
    }

    /// Whether any entry holds a platform node (the index has seen the platform).
    pub fn has_platform_nodes(&self) -> bool {
        !self.read().by_node.is_empty()
    }

    /// Every entry, for start-up comparison.
    pub fn all(&self) -> Vec<Entry> {
        self.read().entries.values().cloned().collect()
    }

    /// The entries `pick` chooses, copied: only those (a copy of every entry of a 200,000-node
    /// account is about 40 MB). `pick` runs under the tree's read lock: it must not call the
    /// index.
    pub fn select(&self, pick: impl Fn(&Entry) -> bool) -> Vec<Entry> {
        self.read()
            .entries
            .values()
            .filter(|e| pick(e))
            .cloned()
            .collect()
    }

    /// Makes room for `additional` more entries at once (a listing about to be placed).
    pub fn reserve(&self, additional: usize) {
        self.write().reserve(additional);
    }

    pub fn insert(&self, new: NewEntry) -> Result<Entry> {
        self.insert_as(new, false)
    }

    /// Records a platform node deleted here, in one step: it never shows as a live entry, even
    /// for a moment (it would hide a live file of the same name).
    pub fn insert_tombstone(&self, new: NewEntry) -> Result<Entry> {
        self.insert_as(new, true)
    }

    fn insert_as(&self, new: NewEntry, tombstone: bool) -> Result<Entry> {
        let db = self.db();
        let ino = insert_row(&db, &new, tombstone)?;
        let entry = new.into_entry(ino, tombstone);
        // The tree changes under the database lock, so memory and disk change in the same order.
        self.write().put(entry.clone());
        Ok(entry)
    }

    /// Writes the whole entry (matched by inode).
    pub fn update(&self, e: &Entry) -> Result<()> {
        self.write_entry(&self.db(), e)
    }

    fn write_entry(&self, db: &Connection, e: &Entry) -> Result<()> {
        write_row(db, e)?;
        self.write().put(e.clone());
        Ok(())
    }

    /// Changes an entry in place: `f` edits a copy, which is then written. Read and write happen
    /// under the database lock, so two concurrent changes of one entry never lose one another.
    pub fn modify(&self, ino: u64, f: impl FnOnce(&mut Entry)) -> Result<Entry> {
        let db = self.db();
        let mut e = self.get(ino).ok_or(IndexError::Missing(ino))?;
        f(&mut e);
        self.write_entry(&db, &e)?;
        Ok(e)
    }

    /// Forgets an entry (and its live subtree) entirely.
    pub fn remove(&self, ino: u64) -> Result<()> {
        let doomed = self.read().subtree(ino);
        let mut db = self.db();
        let tx = db.transaction()?;
        for ino in &doomed {
            tx.prepare_cached("DELETE FROM entries WHERE ino = ?1")?
                .execute(params![ino])?;
        }
        tx.commit()?;
        let mut tree = self.write();
        for ino in doomed {
            tree.take(ino);
            tree.children.remove(&ino);
        }
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .db()
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.db().prepare_cached("INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2")?.execute(params![key, value])?;
        Ok(())
    }

    /// Remembers that this mount sent `checksum` to `node` (before sending), so that the platform
    /// holding it later is known as our own doing, even after a crash.
    pub fn record_sent(&self, node: NodeId, checksum: &Checksum) -> Result<()> {
        let mut db = self.db();
        // One commit, not two: a commit is most of the cost of recording a push.
        let db = db.transaction()?;
        record_sent_in(&db, node, checksum)?;
        db.commit()?;
        Ok(())
    }

    /// Whether this mount sent `checksum` to `node` lately.
    pub fn was_sent(&self, node: NodeId, checksum: &Checksum) -> bool {
        self.db()
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM sent WHERE node_id = ?1 AND checksum = ?2)",
                params![node, checksum],
                |r| r.get(0),
            )
            .unwrap_or(false)
    }

    /// Whether this mount's latest sending of `newer` to `node` came after its latest sending of
    /// `older` (both sent lately). An echo of `older` arriving after `newer` was answered is stale.
    pub fn sent_after(&self, node: NodeId, newer: &Checksum, older: &Checksum) -> bool {
        self.db()
            .query_row(
                "SELECT (SELECT MAX(rowid) FROM sent WHERE node_id = ?1 AND checksum = ?2)
                      > (SELECT MAX(rowid) FROM sent WHERE node_id = ?1 AND checksum = ?3)",
                params![node, newer, older],
                |r| r.get::<_, Option<bool>>(0),
            )
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    /// Folds the write-ahead log into the database (at a clean exit), so the next start opens fast.
    pub fn checkpoint(&self) {
        let _ = self.db().execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }

    /// The account's change cursor: the last change this index reflects.
    pub fn cursor(&self) -> Option<u64> {
        self.meta("cursor")
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
    }

    pub fn set_cursor(&self, cursor: u64) -> Result<()> {
        self.set_meta("cursor", &cursor.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(parent: u64, name: &str, kind: NodeKind, node: Option<u64>) -> NewEntry {
        NewEntry::sample(parent, name, kind, node)
    }

    /// An index made before the edit time and the mode were kept opens with the columns added,
    /// its entries whole, their edit time not known, their mode the default.
    #[test]
    fn an_index_from_before_gets_the_new_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE entries(
                   ino INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER NOT NULL, name TEXT NOT NULL,
                   kind TEXT NOT NULL, node_id INTEGER UNIQUE, size INTEGER NOT NULL DEFAULT 0,
                   mtime_ms INTEGER NOT NULL DEFAULT 0, base TEXT, remote TEXT, remote_modified TEXT,
                   local TEXT, tombstone INTEGER NOT NULL DEFAULT 0);
                 INSERT INTO entries(parent, name, kind, node_id, mtime_ms, local)
                   VALUES (1, 'post.html', 'site', 7, 1234, 'abc');",
            )
            .unwrap();
        }
        let index = Index::open(&path).unwrap();
        let e = index.lookup(ROOT_INO, "post.html").unwrap();
        assert_eq!((e.mtime_ms, e.edited_ms, e.mode), (1234, None, None));
        assert_eq!(e.perm(), 0o644, "no mode kept: the default");
        index
            .modify(e.ino, |e| {
                e.edited_ms = Some(99);
                e.mode = Some(0o755);
            })
            .unwrap();
        drop(index);
        let index = Index::open(&path).unwrap();
        let e = index.get(e.ino).unwrap();
        assert_eq!(
            (e.edited_ms, e.mode, e.perm()),
            (Some(99), Some(0o755), 0o755)
        );
        assert_eq!(kept_mode(0o100644, false), None);
        assert_eq!(kept_mode(0o40755, true), None);
        assert_eq!(kept_mode(0o100755, false), Some(0o755));
    }

    #[test]
    fn sites_are_found_by_name_as_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.db")).unwrap();
        let folder = index
            .insert(new(ROOT_INO, "blog", NodeKind::Folder, Some(1)))
            .unwrap();
        let local = index
            .insert(new(ROOT_INO, "post.html", NodeKind::Site, None))
            .unwrap();
        assert!(
            index.site_named("post.html").is_none(),
            "not on the platform yet"
        );
        index
            .modify(local.ino, |e| e.node_id = Some(NodeId::new(7)))
            .unwrap();
        assert_eq!(index.site_named("post.html").unwrap().ino, local.ino);
        index
            .modify(local.ino, |e| {
                e.parent = folder.ino;
                e.name = "moved.html".into();
            })
            .unwrap();
        assert!(index.site_named("post.html").is_none());
        assert_eq!(index.site_named("moved.html").unwrap().ino, local.ino);
        assert!(index.site_named("blog").is_none(), "folders are not sites");
        index.remove(local.ino).unwrap();
        assert!(index.site_named("moved.html").is_none());
        // Rebuilt on open from the database.
        let other = index
            .insert(new(ROOT_INO, "kept.html", NodeKind::Site, Some(8)))
            .unwrap();
        drop(index);
        let index = Index::open(&dir.path().join("index.db")).unwrap();
        assert_eq!(index.site_named("kept.html").unwrap().ino, other.ino);
    }

    #[test]
    fn survives_reopen_and_never_reuses_inodes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        let (blog, post) = {
            let index = Index::open(&path).unwrap();
            let blog = index
                .insert(new(ROOT_INO, "blog", NodeKind::Folder, Some(10)))
                .unwrap();
            assert!(blog.ino > ROOT_INO);
            let post = index
                .insert(new(blog.ino, "post.html", NodeKind::Site, Some(11)))
                .unwrap();
            index.set_cursor(42).unwrap();
            (blog, post)
        };
        let index = Index::open(&path).unwrap();
        assert_eq!(index.lookup(ROOT_INO, "blog").unwrap(), blog);
        assert_eq!(index.by_node(NodeId::new(11)).unwrap().ino, post.ino);
        assert_eq!(index.path(post.ino).unwrap(), "blog/post.html");
        assert_eq!(index.cursor(), Some(42));
        index.remove(blog.ino).unwrap();
        assert!(index.get(post.ino).is_none(), "the subtree goes with it");
        let again = index
            .insert(new(ROOT_INO, "blog", NodeKind::Folder, Some(10)))
            .unwrap();
        assert!(again.ino > post.ino, "inode numbers are never reused");
    }

    #[test]
    fn tombstones_hide_from_lookup_but_stay_known() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.db")).unwrap();
        let e = index
            .insert(new(ROOT_INO, "a.html", NodeKind::Site, Some(1)))
            .unwrap();
        index.modify(e.ino, |e| e.tombstone = true).unwrap();
        assert!(index.lookup(ROOT_INO, "a.html").is_none());
        assert!(index.children(ROOT_INO).is_empty());
        assert!(index.by_node(NodeId::new(1)).unwrap().tombstone);
        assert_eq!(
            index.tombstone_at(ROOT_INO, "a.html").map(|t| t.ino),
            Some(e.ino),
            "found by place, so a new file there takes its node back"
        );
    }

    #[test]
    fn a_tombstone_never_hides_a_live_file_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.db")).unwrap();
        let live = index
            .insert(new(ROOT_INO, "c.html", NodeKind::Site, None))
            .unwrap();
        let t = index
            .insert_tombstone(new(ROOT_INO, "c.html", NodeKind::Site, Some(7)))
            .unwrap();
        assert_eq!(index.lookup(ROOT_INO, "c.html").unwrap().ino, live.ino);
        assert_eq!(index.tombstone_at(ROOT_INO, "c.html").unwrap().ino, t.ino);
        drop(index);
        let index = Index::open(&dir.path().join("i.db")).unwrap();
        assert_eq!(index.lookup(ROOT_INO, "c.html").unwrap().ino, live.ino);
        assert!(index.by_node(NodeId::new(7)).unwrap().tombstone);
    }
}
