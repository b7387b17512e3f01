//! `Index::change`: several entry changes as one. They go to SQLite in one transaction and
//! reach the in-memory tree under one write lock, only once that transaction committed: a
//! reader (a lookup, a listing, the pull) sees all of them or none, and a crash between two of
//! them cannot happen (moving a platform node from one entry to another, a create where a
//! tombstone was, a merge).
//!
//! The closure runs under the database lock: it must not call the `Index` itself (use the
//! `Change` it is given, which reads its own changes), and must not wait for anything.

use std::collections::HashMap;

use rusqlite::{params, Transaction};

use super::{Entry, Index, IndexError, NewEntry, Result};

enum Staged {
    Put(Entry),
    Remove(u64),
}

/// The changes under way, and what they look like so far.
pub struct Change<'a> {
    tx: Transaction<'a>,
    index: &'a Index,
    staged: Vec<Staged>,
    /// What the staged changes made of an inode (None: removed).
    overlay: HashMap<u64, Option<Entry>>,
}

impl Change<'_> {
    /// The entry as the changes so far leave it.
    pub fn get(&self, ino: u64) -> Option<Entry> {
        match self.overlay.get(&ino) {
            Some(e) => e.clone(),
            None => self.index.get(ino),
        }
    }

    /// Every entry (live or tombstone) whose parent is `parent`, as the changes leave them.
    pub fn entries_under(&self, parent: u64) -> Vec<Entry> {
        let mut out: HashMap<u64, Entry> = {
            let tree = self.index.read();
            let live = tree
                .children
                .get(&parent)
                .into_iter()
                .flat_map(|c| c.values());
            let tombs = tree
                .tombs
                .iter()
                .filter(|((p, _), _)| *p == parent)
                .map(|(_, ino)| ino);
            live.chain(tombs)
                .filter_map(|ino| tree.entries.get(ino))
                .map(|e| (e.ino, e.clone()))
                .collect()
        };
        for (ino, e) in &self.overlay {
            match e {
                Some(e) if e.parent == parent => out.insert(*ino, e.clone()),
                _ => out.remove(ino),
            };
        }
        out.into_values().collect()
    }

    /// The live entry at a place, as the changes leave it.
    pub fn lookup(&self, parent: u64, name: &str) -> Option<Entry> {
        let staged = self
            .overlay
            .values()
            .flatten()
            .find(|e| !e.tombstone && e.parent == parent && e.name == name);
        if let Some(e) = staged {
            return Some(e.clone());
        }
        let ino = *self.index.read().children.get(&parent)?.get(name)?;
        if self.overlay.contains_key(&ino) {
            return None;
        }
        self.index.get(ino)
    }

    /// The tombstone at a place, as the changes leave it.
    pub fn tombstone_at(&self, parent: u64, name: &str) -> Option<Entry> {
        let staged = self
            .overlay
            .values()
            .flatten()
            .find(|e| e.tombstone && e.parent == parent && e.name == name);
        if let Some(e) = staged {
            return Some(e.clone());
        }
        let ino = *self.index.read().tombs.get(&(parent, name.to_string()))?;
        // Changed by this change and no longer a tombstone here (it would have been found above).
        if self.overlay.contains_key(&ino) {
            return None;
        }
        self.index.get(ino)
    }

    pub fn insert(&mut self, new: NewEntry) -> Result<Entry> {
        self.insert_as(new, false)
    }

    pub fn insert_tombstone(&mut self, new: NewEntry) -> Result<Entry> {
        self.insert_as(new, true)
    }

    fn insert_as(&mut self, new: NewEntry, tombstone: bool) -> Result<Entry> {
        let ino = super::insert_row(&self.tx, &new, tombstone)?;
        let entry = new.into_entry(ino, tombstone);
        self.stage(Staged::Put(entry.clone()));
        Ok(entry)
    }

    pub fn update(&mut self, e: &Entry) -> Result<()> {
        super::write_row(&self.tx, e)?;
        self.stage(Staged::Put(e.clone()));
        Ok(())
    }

    pub fn modify(&mut self, ino: u64, f: impl FnOnce(&mut Entry)) -> Result<Entry> {
        let mut e = self.get(ino).ok_or(IndexError::Missing(ino))?;
        f(&mut e);
        self.update(&e)?;
        Ok(e)
    }

    /// Records a push with the changes ([`Index::record_sent`]): a create's answer is then one
    /// commit, the node sent and attached together.
    pub fn record_sent(
        &mut self,
        node: crate::protocol::NodeId,
        checksum: &crate::protocol::Checksum,
    ) -> Result<()> {
        super::record_sent_in(&self.tx, node, checksum)
    }

    /// Forgets one entry. (A folder's children are moved or removed by the caller first.)
    pub fn remove(&mut self, ino: u64) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM entries WHERE ino = ?1")?
            .execute(params![ino])?;
        self.stage(Staged::Remove(ino));
        Ok(())
    }

    fn stage(&mut self, s: Staged) {
        match &s {
            Staged::Put(e) => self.overlay.insert(e.ino, Some(e.clone())),
            Staged::Remove(ino) => self.overlay.insert(*ino, None),
        };
        self.staged.push(s);
    }
}

impl Index {
    /// Runs `f` as one change of the index: all of it or nothing (an error from `f` or from the
    /// database rolls everything back, and the tree never saw any of it).
    pub fn change<T, E: From<IndexError>>(
        &self,
        f: impl FnOnce(&mut Change<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut db = self.db();
        let tx = db.transaction().map_err(IndexError::from)?;
        let mut change = Change {
            tx,
            index: self,
            staged: Vec::new(),
            overlay: HashMap::new(),
        };
        let out = f(&mut change)?;
        let Change { tx, staged, .. } = change;
        tx.commit().map_err(IndexError::from)?;
        let mut tree = self.write();
        for s in staged {
            match s {
                Staged::Put(e) => tree.put(e),
                Staged::Remove(ino) => {
                    tree.take(ino);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::ROOT_INO;
    use crate::protocol::NodeKind;

    fn new(parent: u64, name: &str, node: Option<u64>) -> NewEntry {
        NewEntry::sample(parent, name, NodeKind::of_file_name(name), node)
    }

    /// A node passed from a tombstone to a new file: one step, or (failing half-way) none.
    #[test]
    fn a_change_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        let index = Index::open(&path).unwrap();
        let tomb = index
            .insert_tombstone(new(ROOT_INO, "a.html", Some(7)))
            .unwrap();

        // Fails after the tombstone was removed: nothing happened, on disk or in memory.
        let failed: std::result::Result<(), IndexError> = index.change(|c| {
            c.remove(tomb.ino)?;
            assert!(
                c.tombstone_at(ROOT_INO, "a.html").is_none(),
                "the change sees itself"
            );
            c.insert(new(ROOT_INO, "a.html", Some(7)))?;
            Err(IndexError::Missing(0))
        });
        assert!(failed.is_err());
        assert_eq!(
            index.tombstone_at(ROOT_INO, "a.html").unwrap().ino,
            tomb.ino
        );
        assert!(index.lookup(ROOT_INO, "a.html").is_none());
        assert_eq!(
            index.by_node(crate::protocol::NodeId::new(7)).unwrap().ino,
            tomb.ino
        );

        // Succeeds: the node moved, and the database agrees after a reopen.
        let made = index
            .change(|c| {
                let t = c.tombstone_at(ROOT_INO, "a.html").unwrap();
                c.remove(t.ino)?;
                c.insert(new(ROOT_INO, "a.html", t.node_id.map(|n| n.get())))
            })
            .unwrap();
        assert_eq!(
            index.by_node(crate::protocol::NodeId::new(7)).unwrap().ino,
            made.ino
        );
        assert!(index.tombstone_at(ROOT_INO, "a.html").is_none());
        drop(index);
        let index = Index::open(&path).unwrap();
        assert_eq!(
            index.lookup(ROOT_INO, "a.html").unwrap().node_id,
            Some(crate::protocol::NodeId::new(7))
        );
        assert!(index.tombstone_at(ROOT_INO, "a.html").is_none());
    }

    /// A bad name inside a change refuses the whole change.
    #[test]
    fn a_refused_name_refuses_the_change() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.db")).unwrap();
        let result = index.change(|c| {
            c.insert(new(ROOT_INO, "ok.html", None))?;
            c.insert(new(ROOT_INO, "../escape.html", None))
        });
        assert!(matches!(result, Err(IndexError::BadName(_))));
        assert!(index.lookup(ROOT_INO, "ok.html").is_none());
    }
}
