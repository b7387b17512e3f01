//! The index's in-memory tree: entries by inode, and the lookups the mount needs (live children
//! by name, the entry holding a platform node, tombstones by place, sites by name), kept in step
//! by `put` and `take` alone. A plain type: no lock, no I/O; `Index` holds it behind its lock
//! and changes it only after the database did.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::index::Entry;
use crate::protocol::{NodeId, NodeKind};

#[derive(Default)]
pub(super) struct Tree {
    pub(super) entries: HashMap<u64, Entry>,
    /// Live (not tombstoned) children by name, sorted for stable listings.
    pub(super) children: HashMap<u64, BTreeMap<String, u64>>,
    pub(super) by_node: HashMap<NodeId, u64>,
    /// Tombstones by place, so a new file at a deleted file's name can take its identity back.
    pub(super) tombs: HashMap<(u64, String), u64>,
    /// Sites with a platform node, by name (site names are unique per account; locally a name
    /// may be held twice for a moment, so a set).
    pub(super) sites: HashMap<String, BTreeSet<u64>>,
}

impl Entry {
    pub(super) fn is_platform_site(&self) -> bool {
        self.kind == NodeKind::Site && self.node_id.is_some()
    }
}

impl Tree {
    /// Room for `additional` more entries with platform nodes, made at once: a table grown by
    /// doubling holds its old copy and its new one at the same time (26 and 52 MB at 200,000).
    pub(super) fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
        self.by_node.reserve(additional);
    }

    fn link(&mut self, e: &Entry) {
        if e.tombstone {
            self.tombs.insert((e.parent, e.name.clone()), e.ino);
        } else {
            self.children
                .entry(e.parent)
                .or_default()
                .insert(e.name.clone(), e.ino);
        }
        if let Some(id) = e.node_id {
            self.by_node.insert(id, e.ino);
        }
        if e.is_platform_site() {
            self.sites.entry(e.name.clone()).or_default().insert(e.ino);
        }
    }

    fn unlink(&mut self, e: &Entry) {
        let place = (e.parent, e.name.clone());
        if self.tombs.get(&place) == Some(&e.ino) {
            self.tombs.remove(&place);
        }
        if let Some(c) = self.children.get_mut(&e.parent) {
            if c.get(&e.name) == Some(&e.ino) {
                c.remove(&e.name);
            }
        }
        if let Some(id) = e.node_id {
            if self.by_node.get(&id) == Some(&e.ino) {
                self.by_node.remove(&id);
            }
        }
        if e.is_platform_site() {
            if let Some(set) = self.sites.get_mut(&e.name) {
                set.remove(&e.ino);
                if set.is_empty() {
                    self.sites.remove(&e.name);
                }
            }
        }
    }

    /// Forgets one entry (its children are the caller's: see `subtree`).
    pub(super) fn take(&mut self, ino: u64) -> Option<Entry> {
        let e = self.entries.remove(&ino)?;
        self.unlink(&e);
        if self.children.get(&ino).is_some_and(|c| c.is_empty()) {
            self.children.remove(&ino);
        }
        Some(e)
    }

    /// `ino` and every live entry below it, parents first.
    pub(super) fn subtree(&self, ino: u64) -> Vec<u64> {
        let mut all = vec![ino];
        let mut i = 0;
        while i < all.len() {
            if let Some(c) = self.children.get(&all[i]) {
                all.extend(c.values());
            }
            i += 1;
        }
        all
    }

    pub(super) fn put(&mut self, e: Entry) {
        if let Some(old) = self.entries.remove(&e.ino) {
            self.unlink(&old);
        }
        self.link(&e);
        self.entries.insert(e.ino, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ino: u64, parent: u64, name: &str, kind: NodeKind, node: Option<u64>) -> Entry {
        crate::cache::NewEntry::sample(parent, name, kind, node).into_entry(ino, false)
    }

    /// Every lookup agrees with the entries, whatever was put and taken.
    fn consistent(t: &Tree) {
        for (parent, children) in &t.children {
            for (name, ino) in children {
                let e = &t.entries[ino];
                assert!(!e.tombstone && e.parent == *parent && &e.name == name);
            }
        }
        for (node, ino) in &t.by_node {
            assert_eq!(t.entries[ino].node_id, Some(*node));
        }
        for ((parent, name), ino) in &t.tombs {
            let e = &t.entries[ino];
            assert!(e.tombstone && e.parent == *parent && &e.name == name);
        }
        for (name, inos) in &t.sites {
            assert!(!inos.is_empty());
            for ino in inos {
                assert!(t.entries[ino].is_platform_site() && &t.entries[ino].name == name);
            }
        }
        for e in t.entries.values() {
            if e.is_platform_site() {
                assert!(t.sites[&e.name].contains(&e.ino));
            }
        }
    }

    #[test]
    fn lookups_follow_moves_tombstones_and_removals() {
        let mut t = Tree::default();
        t.put(entry(2, 1, "blog", NodeKind::Folder, Some(10)));
        t.put(entry(3, 2, "post.html", NodeKind::Site, Some(11)));
        consistent(&t);
        assert_eq!(t.subtree(2), vec![2, 3]);
        // Renamed and moved: found under its new name only.
        t.put(entry(3, 1, "moved.html", NodeKind::Site, Some(11)));
        consistent(&t);
        assert!(!t.children[&2].contains_key("post.html"));
        assert_eq!(t.children[&1]["moved.html"], 3);
        // Deleted here: a tombstone that keeps the node, not a live child.
        let mut tomb = entry(3, 1, "moved.html", NodeKind::Site, Some(11));
        tomb.tombstone = true;
        t.put(tomb);
        consistent(&t);
        assert!(!t.children[&1].contains_key("moved.html"));
        assert_eq!(t.tombs[&(1, "moved.html".into())], 3);
        // A node passed from one entry to another.
        t.put(entry(3, 1, "moved.html", NodeKind::Site, None));
        t.put(entry(4, 1, "new.html", NodeKind::Site, Some(11)));
        consistent(&t);
        assert_eq!(t.by_node[&NodeId::new(11)], 4);
        assert!(t.take(4).is_some() && t.take(3).is_some() && t.take(3).is_none());
        consistent(&t);
        assert!(t.sites.is_empty() && t.by_node.len() == 1);
    }
}
