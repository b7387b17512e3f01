//! What the platform sends is checked before it can name anything here. A listing is vetted as a
//! whole (every name a valid file name that is not ours, no id twice, every parent a listed
//! folder, no cycle, each `path` what its `parentId` chain says); a single change has its name
//! vetted where it is applied (pull.rs). What fails is skipped, with its reason, and everything
//! else keeps syncing.

use std::collections::HashMap;

use crate::cache::{check_platform_name, MAX_DEPTH};
use crate::protocol::{printable, Node, NodeKind};

/// A node the platform sent that is not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub node_id: u64,
    /// The name as sent, made printable.
    pub name: String,
    pub reason: String,
}

impl Refusal {
    fn new(node: &Node, reason: impl Into<String>) -> Refusal {
        Refusal {
            node_id: node.id,
            name: printable(&node.name, 80),
            reason: reason.into(),
        }
    }
}

/// Splits a listing into the nodes that may be placed here and those refused.
pub fn vet_listing(nodes: &[Node]) -> (Vec<&Node>, Vec<Refusal>) {
    let mut refused = Vec::new();
    let mut by_id: HashMap<u64, &Node> = HashMap::with_capacity(nodes.len());
    for node in nodes {
        if node.id == 0 {
            refused.push(Refusal::new(node, "node id 0 is the root's"));
            continue;
        }
        match by_id.entry(node.id) {
            std::collections::hash_map::Entry::Occupied(_) => refused.push(Refusal::new(
                node,
                format!("node {} is listed twice", node.id),
            )),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(node);
            }
        }
    }
    // Whether each node is placeable, worked out once per node (parents first, by recursion
    // bounded by MAX_DEPTH).
    let mut verdicts: HashMap<u64, Result<String, String>> = HashMap::with_capacity(by_id.len());
    let mut accepted = Vec::with_capacity(by_id.len());
    for node in nodes {
        if by_id.get(&node.id).is_none_or(|n| !std::ptr::eq(*n, node)) {
            continue; // a duplicate, refused above
        }
        match full_path(node.id, &by_id, &mut verdicts, 0) {
            Ok(_) => accepted.push(node),
            Err(reason) => refused.push(Refusal::new(node, reason)),
        }
    }
    (accepted, refused)
}

/// The full path of node `id` as its parent chain spells it, or why it can't be placed.
fn full_path(
    id: u64,
    by_id: &HashMap<u64, &Node>,
    verdicts: &mut HashMap<u64, Result<String, String>>,
    depth: usize,
) -> Result<String, String> {
    if let Some(v) = verdicts.get(&id) {
        return v.clone();
    }
    if depth > MAX_DEPTH {
        // Only a cycle gets this deep: the platform allows 5 folder levels.
        return Err("its folders form a cycle".into());
    }
    let node = by_id[&id];
    let verdict = (|| {
        let parent = node.parent();
        check_platform_name(&node.name, parent == 0).map_err(|e| e.to_string())?;
        let parent_path = match parent {
            0 => String::new(),
            p if p == id => return Err("it is its own folder".to_string()),
            p => match by_id.get(&p) {
                None => return Err(format!("its folder (node {p}) is not in the listing")),
                Some(f) if f.kind != NodeKind::Folder => {
                    return Err(format!("its folder (node {p}) is not a folder"))
                }
                Some(_) => match full_path(p, by_id, verdicts, depth + 1) {
                    Ok(path) => path,
                    // A cycle's reason stays as it is; anything else names the folder.
                    Err(e) if e.ends_with("cycle") => return Err(e),
                    Err(_) => return Err(format!("it is inside a refused folder (node {p})")),
                },
            },
        };
        if node.path.trim_matches('/') != parent_path {
            return Err(format!(
                "its path {:?} disagrees with its folders ({:?})",
                printable(&node.path, 80),
                parent_path
            ));
        }
        Ok(crate::protocol::join_path(&parent_path, &node.name))
    })();
    verdicts.insert(id, verdict.clone());
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, kind: NodeKind, name: &str, path: &str, parent: u64) -> Node {
        Node {
            id,
            kind,
            name: name.into(),
            path: path.into(),
            parent_id: Some(parent),
            size: None,
            modified_at: None,
            checksum: None,
            edited_at: None,
        }
    }

    fn refused_ids(nodes: &[Node]) -> Vec<u64> {
        let (_, refused) = vet_listing(nodes);
        let mut ids: Vec<u64> = refused.iter().map(|r| r.node_id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn hostile_names_are_refused_and_the_rest_kept() {
        use NodeKind::*;
        let nodes = vec![
            node(1, Folder, "blog", "", 0),
            node(2, Site, "post.html", "blog", 1),
            node(3, Upload, "../../.bashrc", "", 0),
            node(4, Upload, "/etc/passwd", "", 0),
            node(5, Folder, ".hyperclay", "", 0),
            node(6, Upload, "index.db", ".hyperclay", 5),
            node(7, Folder, "sites-versions", "", 0),
            node(8, Upload, "", "blog", 1),
            node(9, Upload, "a/b.png", "blog", 1),
            node(10, Upload, &"x".repeat(300), "", 0),
        ];
        let (accepted, refused) = vet_listing(&nodes);
        let ids: Vec<u64> = accepted.iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(refused.len(), 8);
        let long = refused.iter().find(|r| r.node_id == 10).unwrap();
        assert!(long.reason.contains("longer than 255"), "{long:?}");
    }

    #[test]
    fn cycles_duplicates_and_lying_paths_are_refused() {
        use NodeKind::*;
        let nodes = vec![
            node(1, Folder, "a", "", 0),
            node(1, Folder, "again", "", 0),
            node(2, Folder, "b", "c", 3),
            node(3, Folder, "c", "b", 2),
            node(4, Upload, "x.png", "somewhere/else", 1),
            node(5, Upload, "y.png", "a", 1),
            node(6, Upload, "z.png", "a", 5),
            node(7, Folder, "self", "", 7),
            node(8, Upload, "orphan.png", "gone", 99),
        ];
        assert_eq!(refused_ids(&nodes), vec![1, 2, 3, 4, 6, 7, 8]);
    }
}
