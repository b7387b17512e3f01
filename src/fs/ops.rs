//! The mounted filesystem as plain methods, knowing nothing of FUSE replies: listings and
//! attributes come from the index in memory, contents from the mirror; a copy not on disk yet is
//! fetched through the engine (the one network wait, taken off the FUSE threads by the adapter).
//! `sites-versions/` is a read-only view of the backups; the index folder is never visible.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::backups::{self, Backups, VERSIONS_INO};
use super::error::{FsError, Result};
use crate::cache::{Entry, ROOT_INO};
use crate::protocol::Checksum;
use crate::sync::Engine;

pub const VERSIONS_NAME: &str = "sites-versions";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// A named pipe (local-only names): the kernel carries its data.
    Fifo,
    /// A unix socket's name (local-only names): the kernel carries its traffic.
    Socket,
}

/// Attributes of one inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    /// Lost its last name while open (unlinked, or renamed over): `fstat` on a descriptor
    /// answers no links, as ext4 does.
    pub orphan: bool,
}

/// One open file. Every descriptor reads the file's current content, as on a local disk where a
/// file saved in place is the same file: the kernel's page cache is one per inode, so a reader
/// that kept an older copy would mix its pages with newer ones. A reader keeps the copy it
/// opened while that is still current (`copy`), and reopens it when a save or a platform change
/// replaced it, or a writer's working copy exists.
pub(super) struct Handle {
    pub(super) ino: u64,
    pub(super) file: Option<Arc<File>>,
    pub(super) writable: bool,
    /// The checksum of the mirror copy `file` is (None: a backup, or a working copy).
    pub(super) copy: Option<Checksum>,
    /// Who opened it for writing, when known (the mount notes the opener's thread): its close
    /// saves (see `flush`).
    pub(super) opener: Option<u32>,
    /// Opened with O_APPEND: every write goes to the end of the working copy.
    pub(super) append: bool,
}

/// What `open` answers.
pub struct Opened {
    pub fh: u64,
    /// The kernel's cached pages of this file are still right.
    pub keep_cache: bool,
}

pub struct MountFs {
    pub engine: Arc<Engine>,
    pub(super) backups: Backups,
    pub(super) handles: Mutex<HashMap<u64, Handle>>,
    pub(super) links: super::links::Links,
    next_fh: AtomicU64,
    mounted_at: SystemTime,
}

fn time_of(ms: i64) -> SystemTime {
    if ms <= 0 {
        return UNIX_EPOCH;
    }
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

fn name_str(name: &OsStr) -> Result<&str> {
    // Every name the platform holds is UTF-8; others cannot exist here.
    name.to_str().ok_or(FsError::NotFound)
}

impl MountFs {
    pub fn new(engine: Arc<Engine>) -> MountFs {
        let backups = Backups::new(engine.mirror.versions_root());
        let fs = MountFs {
            engine,
            backups,
            handles: Mutex::new(HashMap::new()),
            links: super::links::Links::default(),
            next_fh: AtomicU64::new(1),
            mounted_at: SystemTime::now(),
        };
        // The kernel holds the root from the mount to its end without a lookup.
        fs.kernel_took(ROOT_INO);
        fs
    }

    pub(super) fn entry_attr(&self, e: &Entry) -> Attr {
        let mut attr = Attr {
            ino: e.ino,
            kind: if e.is_dir() { Kind::Dir } else { Kind::File },
            size: if e.is_dir() { 0 } else { e.size },
            mtime: time_of(e.mtime_ms),
            perm: e.perm() as u16,
            orphan: false,
        };
        if e.is_dir() {
            // A name made, removed or renamed in it through the mount.
            if let Some(t) = self.changed_at(e.ino) {
                attr.mtime = attr.mtime.max(t);
            }
            return attr;
        }
        // A file being written: its working copy is the truth.
        if let Some(m) = self.working_metadata(e.ino) {
            attr.size = m.len();
            attr.mtime = m.modified().unwrap_or(attr.mtime);
        } else if !e.is_dir() {
            // Read again after the session: a save that ended since `e` was read took the
            // working copy away and left the new size in the index (the stale size made the
            // kernel put another process's O_APPEND write over this one's).
            if let Some((size, mtime_ms)) = self.engine.index.size_and_mtime(e.ino) {
                attr.size = size;
                attr.mtime = time_of(mtime_ms);
            }
        }
        attr
    }

    fn root_attr(&self) -> Attr {
        Attr {
            ino: ROOT_INO,
            kind: Kind::Dir,
            size: 0,
            mtime: self.changed_at(ROOT_INO).unwrap_or(self.mounted_at),
            perm: 0o755,
            orphan: false,
        }
    }

    /// The status-change time of `ino`: its last change through the mount, else `mtime`.
    pub fn ctime(&self, ino: u64, mtime: SystemTime) -> SystemTime {
        self.changed_at(ino).map_or(mtime, |t| t.max(mtime))
    }

    /// A folder's link count: 2 and one per subfolder (as ext4 counts them; `find` uses it).
    pub fn dir_links(&self, ino: u64) -> u32 {
        if backups::is_backup_ino(ino) {
            return 2;
        }
        let mut subfolders = u32::from(ino == ROOT_INO);
        self.engine.index.for_children(ino, 0, |_, e| {
            if e.is_dir() {
                subfolders += 1;
            }
            true
        });
        2 + subfolders
    }

    fn backup_attr(&self, ino: u64, rel: &str) -> Result<Attr> {
        let m = self.backups.metadata(rel).map_err(|_| FsError::NotFound)?;
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        Ok(Attr {
            ino,
            kind,
            size: if kind == Kind::Dir { 0 } else { m.len() },
            mtime: time_of(backups::mtime_ms(&m)),
            perm: if kind == Kind::Dir { 0o555 } else { 0o444 },
            orphan: false,
        })
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        if ino == ROOT_INO {
            return Ok(self.root_attr());
        }
        if let Some(attr) = self.links.attr(ino) {
            return Ok(attr);
        }
        if backups::is_backup_ino(ino) {
            let rel = self.backups.rel(ino).ok_or(FsError::NotFound)?;
            return self.backup_attr(ino, &rel);
        }
        let Some(e) = self.engine.index.get(ino).filter(|e| !e.tombstone) else {
            // Unlinked while open: `fstat` on its descriptor still answers.
            return self.open_orphan_attr(ino).ok_or(FsError::NotFound);
        };
        Ok(self.entry_attr(&e))
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr> {
        // A name no file here can have is told as such, as ext4 does, not as a missing file.
        if name.len() > crate::cache::MAX_SEGMENT_BYTES {
            return Err(FsError::NameTooLong);
        }
        let name = name_str(name)?;
        if backups::is_backup_ino(parent) {
            let parent_rel = self.backups.rel(parent).ok_or(FsError::NotFound)?;
            let rel = Backups::child(&parent_rel, name);
            let ino = self.backups.ino_for(&rel);
            return self.backup_attr(ino, &rel);
        }
        if parent == ROOT_INO && name == VERSIONS_NAME {
            return self.backup_attr(VERSIONS_INO, "");
        }
        match self.engine.index.lookup(parent, name) {
            Some(e) => Ok(self.entry_attr(&e)),
            None => self.lookup_special(parent, name).ok_or(FsError::NotFound),
        }
    }

    /// Lists a folder from position `offset`; `add` answers false when the kernel's buffer is
    /// full. Positions: 0 `.`, 1 `..`, then the children, then (at the root) `sites-versions`,
    /// then the symlinks, pipes and sockets.
    pub fn readdir(
        &self,
        ino: u64,
        offset: u64,
        mut add: impl FnMut(u64, &str, Attr) -> bool,
    ) -> Result<()> {
        let own = self.getattr(ino)?;
        if own.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let mut pos = offset;
        if pos == 0 {
            if !add(1, ".", own) {
                return Ok(());
            }
            pos = 1;
        }
        if pos == 1 {
            if !add(2, "..", own) {
                return Ok(());
            }
            pos = 2;
        }
        if backups::is_backup_ino(ino) {
            return self.readdir_backups(ino, pos, add);
        }
        let mut skip = (pos - 2) as usize;
        let mut full = false;
        // Taken a page at a time and answered with no index lock held: an attribute may wait
        // for a file's write gate (a lock above the index's), and the tree's read lock must
        // never be taken twice by one thread (a writer waiting between the two deadlocks both).
        const PAGE: usize = 256;
        loop {
            let mut page = Vec::with_capacity(PAGE);
            self.engine.index.for_children(ino, skip, |i, e| {
                page.push((i, e.clone()));
                page.len() < PAGE
            });
            for (i, e) in &page {
                // A platform folder of that name is shadowed by the backups.
                if ino == ROOT_INO && e.name == VERSIONS_NAME {
                    continue;
                }
                if !add(*i as u64 + 3, &e.name, self.entry_attr(e)) {
                    full = true;
                    break;
                }
            }
            match page.last() {
                Some((last, _)) if !full && page.len() == PAGE => skip = last + 1,
                _ => break,
            }
        }
        if full {
            return Ok(());
        }
        // Then `sites-versions` (at the root: its place is kept in every folder), then the
        // symlinks, pipes and sockets, which the index does not hold.
        let versions_pos = self.engine.index.child_count(ino) as u64 + 3;
        if ino == ROOT_INO && pos < versions_pos {
            if let Ok(attr) = self.backup_attr(VERSIONS_INO, "") {
                if !add(versions_pos, VERSIONS_NAME, attr) {
                    return Ok(());
                }
            }
        }
        let first = pos.saturating_sub(versions_pos) as usize;
        for (j, (name, attr)) in self.specials_in(ino).into_iter().enumerate().skip(first) {
            if !add(versions_pos + j as u64 + 1, &name, attr) {
                break;
            }
        }
        Ok(())
    }

    fn readdir_backups(
        &self,
        ino: u64,
        pos: u64,
        mut add: impl FnMut(u64, &str, Attr) -> bool,
    ) -> Result<()> {
        let rel = self.backups.rel(ino).ok_or(FsError::NotFound)?;
        let names = self.backups.storage().names(&rel)?;
        for (i, name) in names.iter().enumerate().skip((pos - 2) as usize) {
            let child = Backups::child(&rel, name);
            let child_ino = self.backups.ino_for(&child);
            let Ok(attr) = self.backup_attr(child_ino, &child) else {
                continue;
            };
            if !add(i as u64 + 3, name, attr) {
                break;
            }
        }
        Ok(())
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        if let Some(target) = self.links.target(ino) {
            return Ok(target.into_bytes());
        }
        let rel = self.backups.rel(ino).ok_or(FsError::NotFound)?;
        let target = self.backups.storage().read_link(&rel)?;
        Ok(target.into_os_string().into_encoded_bytes())
    }

    /// The entry of a file the mount shows (not a folder, not deleted).
    pub(super) fn live_file(&self, ino: u64) -> Result<Entry> {
        let e = self
            .engine
            .index
            .get(ino)
            .filter(|e| !e.tombstone)
            .ok_or(FsError::NotFound)?;
        if e.is_dir() {
            return Err(FsError::IsDir);
        }
        Ok(e)
    }

    /// The engine changed the names in folder `ino` (a platform change): its modification time
    /// moves, as for a change made through the mount.
    pub fn folder_changed(&self, ino: u64) {
        self.touch(ino);
    }

    /// Whether opening `ino` must first wait for its content to come down (it is not on disk;
    /// a copy that is on disk but older is the engine's `needs_fetch`, and opens at once).
    pub fn must_fetch_before_open(&self, ino: u64) -> bool {
        !backups::is_backup_ino(ino)
            && self
                .engine
                .index
                .get(ino)
                .is_some_and(|e| e.state() == crate::cache::FileState::NotOnDisk)
    }

    /// Opens a file for reading from its mirror copy (which must be on disk).
    pub fn open_read(&self, ino: u64) -> Result<Opened> {
        if backups::is_backup_ino(ino) {
            let rel = self.backups.rel(ino).ok_or(FsError::NotFound)?;
            let file = self.backups.storage().open(&rel)?;
            return Ok(Opened {
                fh: self.add_handle(ino, Some(file), false),
                keep_cache: true,
            });
        }
        let e = self.live_file(ino)?;
        let Some(local) = e.local.clone() else {
            return Err(FsError::NotFetched("see the log".into()));
        };
        if let Some(work) = self.working_copy(ino) {
            let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
            let handle = Handle {
                ino,
                file: Some(work),
                writable: false,
                copy: None,
                opener: None,
                append: false,
            };
            self.handles
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(fh, handle);
            return Ok(Opened {
                fh,
                keep_cache: false,
            });
        }
        let rel = self.engine.index.path(ino).ok_or(FsError::NotFound)?;
        let file = self.engine.mirror.open_read(&rel)?;
        let keep_cache = self.kernel_opens(ino, &local);
        let fh = self.add_handle(ino, Some(file), false);
        if let Some(h) = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&fh)
        {
            h.copy = Some(local);
        }
        Ok(Opened { fh, keep_cache })
    }

    /// Fetches the content if needed (run off the FUSE threads).
    pub async fn fetch(&self, ino: u64) -> Result<()> {
        if let Err(e) = self.engine.fetch(ino).await {
            let path = self.engine.index.path(ino).unwrap_or_default();
            tracing::warn!(%path, error = %e, "the file is not in the mirror and could not be fetched");
            return Err(FsError::Sync(e));
        }
        Ok(())
    }

    pub(super) fn add_handle(&self, ino: u64, file: Option<File>, writable: bool) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let handle = Handle {
            ino,
            file: file.map(Arc::new),
            writable,
            copy: None,
            opener: None,
            append: false,
        };
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, handle);
        fh
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        let h = handles.get(&fh).ok_or(FsError::BadHandle)?;
        let (ino, file, writable, copy) = (h.ino, h.file.clone(), h.writable, h.copy.clone());
        // The read itself runs without the table's lock.
        drop(handles);
        let current = |copy: &Option<Checksum>| {
            self.working_copy(ino).is_none()
                && copy.is_some()
                && self.engine.index.get(ino).and_then(|e| e.local) == *copy
        };
        let file = match (writable, file) {
            (false, Some(f)) if backups::is_backup_ino(ino) || current(&copy) => f,
            _ => self.current_copy(ino)?,
        };
        let mut buf = vec![0u8; size as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }
}
