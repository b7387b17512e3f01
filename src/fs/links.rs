//! Special names: symlinks, named pipes and unix sockets. None of them goes to the platform
//! (it holds files and folders only) and the sync never sees them: they are not in the index.
//!
//! Symlinks are kept locally anywhere (a venv's `lib64`, npm's `.bin/` links, a tree copied with
//! `cp -a`): made in the mirror as symlinks, found again there by a later mount (a folder's
//! links are read from the mirror the first time the folder is looked into), listed like any
//! entry, never followed by the program (its own reads open with `O_NOFOLLOW`: a link leading
//! out of the mount is only a link). Pipes and sockets, at local-only names only, live in
//! memory as long as the mount (the kernel carries their data), as on a tmpfs.
//!
//! A file or folder the index holds wins over a special of the same name: a platform node that
//! arrives at a link's name is written over the link in the mirror, and the file shows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::backups;
use super::error::{FsError, Result};
use super::ops::{Attr, Kind, MountFs};
use crate::cache::{is_local_only, RelPath, ROOT_INO};

/// What a special name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Special {
    /// A symlink, with its target; also in the mirror.
    Link(String),
    /// A named pipe (`mkfifo`).
    Fifo,
    /// A unix socket's name (`bind`: editors', agents' and git fsmonitor's sockets).
    Socket,
}

#[derive(Debug, Clone)]
struct Named {
    parent: u64,
    name: String,
    special: Special,
    mtime: SystemTime,
    /// The permission bits of a pipe or socket (a symlink's are always 0777).
    perm: u16,
}

#[derive(Default)]
struct Table {
    /// Each folder's specials, by name (sorted, for stable listings).
    by_place: HashMap<u64, BTreeMap<String, u64>>,
    by_ino: HashMap<u64, Named>,
    /// Folders whose symlinks in the mirror were read in.
    loaded: HashSet<u64>,
}

/// The special names of the mount.
#[derive(Default)]
pub struct Links {
    table: Mutex<Table>,
}

/// Special inodes live in their own range, above every index inode.
const LINK_INO_BASE: u64 = 1 << 61;

pub fn is_special_ino(ino: u64) -> bool {
    (LINK_INO_BASE..backups::VERSIONS_INO).contains(&ino)
}

fn attr_of(ino: u64, n: &Named) -> Attr {
    let (kind, size, perm) = match &n.special {
        Special::Link(target) => (Kind::Symlink, target.len() as u64, 0o777),
        Special::Fifo => (Kind::Fifo, 0, n.perm),
        Special::Socket => (Kind::Socket, 0, n.perm),
    };
    Attr {
        ino,
        kind,
        size,
        mtime: n.mtime,
        perm,
        orphan: false,
    }
}

impl Links {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn attr(&self, ino: u64) -> Option<Attr> {
        if !is_special_ino(ino) {
            return None;
        }
        self.table().by_ino.get(&ino).map(|n| attr_of(ino, n))
    }

    pub fn target(&self, ino: u64) -> Option<String> {
        match &self.table().by_ino.get(&ino)?.special {
            Special::Link(t) => Some(t.clone()),
            _ => None,
        }
    }

    fn at(&self, parent: u64, name: &str) -> Option<(u64, Special)> {
        let t = self.table();
        let ino = *t.by_place.get(&parent)?.get(name)?;
        Some((ino, t.by_ino.get(&ino)?.special.clone()))
    }

    fn insert(
        &self,
        parent: u64,
        name: &str,
        special: Special,
        mtime: SystemTime,
        perm: u16,
    ) -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 =
            std::sync::atomic::AtomicU64::new(LINK_INO_BASE);
        let ino = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut t = self.table();
        if let Some(old) = t
            .by_place
            .entry(parent)
            .or_default()
            .insert(name.to_string(), ino)
        {
            t.by_ino.remove(&old);
        }
        t.by_ino.insert(
            ino,
            Named {
                parent,
                name: name.to_string(),
                special,
                mtime,
                perm,
            },
        );
        ino
    }

    /// chmod and utimens of a special: kept for the life of the mount (a symlink has no mode
    /// of its own; its time is kept the same way).
    pub fn set(&self, ino: u64, mode: Option<u32>, mtime: Option<SystemTime>) {
        if let Some(n) = self.table().by_ino.get_mut(&ino) {
            if let (Some(mode), false) = (mode, matches!(n.special, Special::Link(_))) {
                n.perm = (mode & 0o7777) as u16;
            }
            if let Some(t) = mtime {
                n.mtime = t;
            }
        }
    }

    fn remove(&self, parent: u64, name: &str) -> Option<Special> {
        let mut t = self.table();
        let ino = t.by_place.get_mut(&parent)?.remove(name)?;
        t.by_ino.remove(&ino).map(|n| n.special)
    }

    /// Moves a special to a new place, under the same inode (the kernel keeps it).
    fn rename(&self, ino: u64, new_parent: u64, new_name: &str) {
        let mut t = self.table();
        let Some(n) = t.by_ino.get(&ino).cloned() else {
            return;
        };
        if let Some(places) = t.by_place.get_mut(&n.parent) {
            places.remove(&n.name);
        }
        if let Some(replaced) = t
            .by_place
            .entry(new_parent)
            .or_default()
            .insert(new_name.to_string(), ino)
        {
            t.by_ino.remove(&replaced);
        }
        if let Some(n) = t.by_ino.get_mut(&ino) {
            n.parent = new_parent;
            n.name = new_name.to_string();
        }
    }

    /// The specials in folder `parent`, sorted by name.
    fn children(&self, parent: u64) -> Vec<(String, Attr)> {
        let t = self.table();
        let Some(places) = t.by_place.get(&parent) else {
            return Vec::new();
        };
        places
            .iter()
            .filter_map(|(name, ino)| Some((name.clone(), attr_of(*ino, t.by_ino.get(ino)?))))
            .collect()
    }
}

impl MountFs {
    /// Reads the symlinks of folder `dir` from the mirror, the first time it is looked into
    /// (those a mount made before this one).
    fn load_links(&self, dir: u64) {
        if backups::is_backup_ino(dir)
            || is_special_ino(dir)
            || self.links.table().loaded.contains(&dir)
        {
            return;
        }
        let Some(rel) = self.engine.index.path(dir) else {
            return;
        };
        let found = self.engine.mirror.links_in(&rel);
        let mut t = self.links.table();
        if !t.loaded.insert(dir) {
            return;
        }
        drop(t);
        for (name, target, mtime) in found {
            // Made meanwhile through the mount, or a name that can't be shown here.
            let fits =
                rel.join(&name).is_ok() && !(dir == ROOT_INO && name == super::ops::VERSIONS_NAME);
            if fits && self.links.at(dir, &name).is_none() {
                self.links
                    .insert(dir, &name, Special::Link(target), mtime, 0o777);
            }
        }
    }

    /// The special at a place, unless the index holds a file or folder there (a platform node
    /// that came down over a link replaced it in the mirror: the link is forgotten).
    pub(super) fn special_at(&self, parent: u64, name: &str) -> Option<(u64, Special)> {
        self.load_links(parent);
        let found = self.links.at(parent, name)?;
        if self.engine.index.lookup(parent, name).is_some() {
            self.links.remove(parent, name);
            return None;
        }
        Some(found)
    }

    /// `lookup` of a special name.
    pub(super) fn lookup_special(&self, parent: u64, name: &str) -> Option<Attr> {
        let (ino, _) = self.special_at(parent, name)?;
        self.links.attr(ino)
    }

    /// The specials folder `dir` shows, sorted by name (one the index shadows is left out).
    pub(super) fn specials_in(&self, dir: u64) -> Vec<(String, Attr)> {
        self.load_links(dir);
        let mut list = self.links.children(dir);
        list.retain(|(name, _)| self.special_at(dir, name).is_some());
        list
    }

    /// Whether folder `dir` holds a special (rmdir refuses it as not empty).
    pub(super) fn has_specials(&self, dir: u64) -> bool {
        !self.specials_in(dir).is_empty()
    }

    /// unlink(2) of a special; false when `name` is none.
    pub(super) fn unlink_special(&self, parent: u64, name: &str) -> Result<bool> {
        let Some((_, special)) = self.special_at(parent, name) else {
            return Ok(false);
        };
        if let Special::Link(_) = special {
            let rel = self.child_path(parent, name)?;
            self.engine.mirror.remove_file(&rel)?;
        }
        self.links.remove(parent, name);
        Ok(true)
    }

    /// A special moving (rename(2)): local only, under the same inode. Over a file, that file
    /// is deleted here first, as by unlink (never across); over a folder, refused. Answers false
    /// when `name` is no special.
    pub(super) fn rename_special(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<bool> {
        let Some((ino, special)) = self.special_at(parent, name) else {
            return Ok(false);
        };
        self.load_links(new_parent);
        if let Some(target) = self.engine.index.lookup(new_parent, new_name) {
            if no_replace {
                return Err(FsError::Exists);
            }
            if target.is_dir() {
                return Err(FsError::IsDir);
            }
            self.unlink(new_parent, OsStr::new(new_name))?;
        } else if no_replace && self.special_at(new_parent, new_name).is_some() {
            return Err(FsError::Exists);
        }
        let to = self.child_path(new_parent, new_name)?;
        if let Special::Link(_) = special {
            let from = self.child_path(parent, name)?;
            self.engine.mirror.rename(&from, &to)?;
        } else if self.special_at(new_parent, new_name).is_some() {
            // A pipe or socket over a link: the link leaves the mirror too.
            self.engine.mirror.remove_file(&to)?;
        }
        self.links.rename(ino, new_parent, new_name);
        Ok(true)
    }

    /// Whether a file or folder may be renamed over the special at a place, if any: a folder
    /// can't replace one. A file can: its link leaves the mirror with the rename itself, and
    /// the special is forgotten once the index holds the file there (`special_at`), so a
    /// rename that fails leaves it as it was.
    pub(super) fn replacing_special(
        &self,
        source_is_dir: bool,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<()> {
        if self.special_at(new_parent, new_name).is_none() {
            return Ok(());
        }
        if no_replace {
            return Err(FsError::Exists);
        }
        if source_is_dir {
            return Err(FsError::NotDir);
        }
        Ok(())
    }

    /// symlink(2): kept locally, anywhere (never synced).
    pub fn symlink(&self, parent: u64, name: &OsStr, target: &std::path::Path) -> Result<Attr> {
        refuse_backups(parent)?;
        let name = name.to_str().ok_or(FsError::NotUtf8)?;
        let rel = self.child_path(parent, name)?;
        if self.lookup(parent, OsStr::new(name)).is_ok() {
            return Err(FsError::Exists);
        }
        let target_text = target.to_string_lossy().into_owned();
        self.engine.mirror.make_link(&rel, target)?;
        let ino = self.links.insert(
            parent,
            name,
            Special::Link(target_text),
            SystemTime::now(),
            0o777,
        );
        self.touch(parent);
        self.links.attr(ino).ok_or(FsError::NotFound)
    }

    /// mknod(2) of a named pipe or a unix socket's name: only where the name is local-only (a
    /// segment starting with `.`, and the other local-only names of docs/semantics.md), since
    /// the platform holds neither and they mean nothing on another machine.
    pub(super) fn make_special(
        &self,
        parent: u64,
        name: &OsStr,
        special: Special,
        mode: u32,
    ) -> Result<Attr> {
        refuse_backups(parent)?;
        let name = name.to_str().ok_or(FsError::NotUtf8)?;
        let rel = self.child_path(parent, name)?;
        if !is_local_only(&rel) {
            tracing::warn!(path = %rel, "a named pipe or socket can't be synced: only local-only names (starting with .) may be one");
            return Err(FsError::NotSyncable("a named pipe or socket"));
        }
        if self.lookup(parent, OsStr::new(name)).is_ok() {
            return Err(FsError::Exists);
        }
        let ino = self.links.insert(
            parent,
            name,
            special,
            SystemTime::now(),
            (mode & 0o7777) as u16,
        );
        self.touch(parent);
        self.links.attr(ino).ok_or(FsError::NotFound)
    }

    pub(super) fn child_path(&self, parent: u64, name: &str) -> Result<RelPath> {
        let dir = self.engine.index.path(parent).ok_or(FsError::NotFound)?;
        Ok(dir.join(name)?)
    }
}

fn refuse_backups(ino: u64) -> Result<()> {
    if backups::is_backup_ino(ino) {
        return Err(FsError::ReadOnly(
            "sites-versions/ is read-only: copy a version out to restore it",
        ));
    }
    Ok(())
}
