//! What the platform sends is checked before it can name anything here. A listing is vetted as a
//! whole (every name a valid file name that is not ours, no id twice, every parent a listed
//! folder, no cycle, each `path` what its `parentId` chain says, no folder deeper than the
//! mirror takes, no more nodes than one account may bring); a single change has its name vetted
//! where it is applied (pull.rs). What fails is skipped, with its reason, and everything else
//! keeps syncing.

use std::collections::HashMap;

use crate::cache::{check_platform_name, MAX_DEPTH};
use crate::protocol::{printable, Node, NodeId, NodeKind};

/// The most nodes taken from one account's listing (issue 26). Real accounts hold hundreds or
/// thousands of nodes; the 100,000-node benchmark (bench/platform.rs) stays well inside. A
/// listing of 700,003 empty folders fits under the 48 MiB listing cap and, taken whole, cost
/// 711 MB of memory, 2.85 GB of empty folders in the mirror and about 3 minutes; past this many
/// nodes the rest is refused in one status line instead (measured: 330 MB, 837 MB, 72 s). The
/// client applies the bound as the listing arrives (`remote/listing.rs`: only this many nodes
/// are ever held, by the depth their `path` claims), and the pull lets nodes go as it places
/// them: 142-144 MB at the peak for the same listing (BENCHMARKS.md). Decided: nodes are taken
/// shallowest first (then in listing order), so every taken node's folder is taken too and the
/// sites at the top of an account arrive whatever hides deeper.
pub const MAX_LISTING_NODES: usize = 200_000;

/// A node the platform sent that is not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub node_id: NodeId,
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

/// A listing split into what may be placed here and what is refused.
#[derive(Debug, Default)]
pub struct Vetted<'a> {
    /// The nodes that may be placed, parents before their children.
    pub accepted: Vec<&'a Node>,
    /// Where each of `accepted` is in the listing (its index in the slice vetted).
    pub positions: Vec<usize>,
    /// Refused nodes, each said once (one status line, one log line). The nodes inside a folder
    /// refused for its depth are not listed one by one: its refusal counts them.
    pub refused: Vec<Refusal>,
    /// Nodes left out because the listing holds more than the bound (`MAX_LISTING_NODES`):
    /// said in one line, never one per node.
    pub over_limit: usize,
}

/// Splits a listing into the nodes that may be placed here and those refused.
pub fn vet_listing(nodes: &[Node]) -> Vetted<'_> {
    vet_listing_bounded(nodes, MAX_LISTING_NODES)
}

/// Why a node can't be placed: said on its own line, or only counted in the refusal of the
/// too-deep folder it is inside.
#[derive(Clone)]
enum Verdict {
    /// Its full path and how many segments that has.
    Placed(String, usize),
    Refused(String),
    /// Inside the folder (node id) refused for its depth.
    TooDeepInside(NodeId),
}

/// [`vet_listing`] with the bound on the number of nodes as a parameter (tests use a small one).
pub fn vet_listing_bounded(nodes: &[Node], max_nodes: usize) -> Vetted<'_> {
    let mut out = Vetted::default();
    let mut by_id: HashMap<NodeId, &Node> = HashMap::with_capacity(nodes.len().min(max_nodes * 2));
    for node in nodes {
        if node.id == NodeId::ROOT {
            out.refused
                .push(Refusal::new(node, "node id 0 is the root's"));
            continue;
        }
        match by_id.entry(node.id) {
            std::collections::hash_map::Entry::Occupied(_) => out.refused.push(Refusal::new(
                node,
                format!("node {} is listed twice", node.id),
            )),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(node);
            }
        }
    }
    // Whether each node is placeable, worked out once per node, walking up its folder chain
    // without recursion (a chain may be as long as the listing), parents first.
    let mut verdicts: HashMap<NodeId, Verdict> = HashMap::with_capacity(by_id.len());
    let mut placed: Vec<(usize, usize, &Node)> = Vec::with_capacity(by_id.len().min(max_nodes));
    let mut inside_too_deep: HashMap<NodeId, usize> = HashMap::new();
    for (order, node) in nodes.iter().enumerate() {
        if by_id.get(&node.id).is_none_or(|n| !std::ptr::eq(*n, node)) {
            continue; // a duplicate, refused above
        }
        match verdict(node.id, &by_id, &mut verdicts) {
            Verdict::Placed(_, depth) => placed.push((depth, order, node)),
            Verdict::Refused(reason) => out.refused.push(Refusal::new(node, reason)),
            Verdict::TooDeepInside(top) => *inside_too_deep.entry(top).or_default() += 1,
        }
    }
    for r in out.refused.iter_mut() {
        if let Some(n) = inside_too_deep.get(&r.node_id) {
            r.reason = format!("{}; with the {n} nodes inside it", r.reason);
        }
    }
    // Shallowest first: a taken node's folder is always taken.
    placed.sort_by_key(|&(depth, order, _)| (depth, order));
    if placed.len() > max_nodes {
        out.over_limit = placed.len() - max_nodes;
        placed.truncate(max_nodes);
    }
    out.positions = placed.iter().map(|&(_, order, _)| order).collect();
    out.accepted = placed.into_iter().map(|(_, _, n)| n).collect();
    out
}

/// The verdict on node `id`, and on every folder above it not decided yet.
fn verdict(
    id: NodeId,
    by_id: &HashMap<NodeId, &Node>,
    verdicts: &mut HashMap<NodeId, Verdict>,
) -> Verdict {
    // Up the chain to a decided node or the top, or until the chain repeats.
    let mut chain: Vec<NodeId> = Vec::new();
    let mut on_chain = std::collections::HashSet::new();
    let mut cur = id;
    let mut above: Option<Verdict> = None;
    loop {
        if let Some(v) = verdicts.get(&cur) {
            above = Some(passed_down(cur, v));
            break;
        }
        if !on_chain.insert(cur) {
            // A cycle: every node on it and below it on this chain is refused as such.
            for c in chain {
                verdicts.insert(c, Verdict::Refused("its folders form a cycle".into()));
            }
            return verdicts[&id].clone();
        }
        chain.push(cur);
        let node = by_id[&cur];
        let parent = node.parent();
        if parent == NodeId::ROOT || parent == cur {
            break;
        }
        match by_id.get(&parent) {
            Some(f) if f.kind == NodeKind::Folder => cur = parent,
            _ => break,
        }
    }
    // Down the chain, the topmost first.
    while let Some(cur) = chain.pop() {
        let node = by_id[&cur];
        let parent = node.parent();
        let v = (|| {
            if let Err(e) = check_platform_name(&node.name, parent == NodeId::ROOT) {
                return Verdict::Refused(e.to_string());
            }
            let (parent_path, depth) = match parent {
                NodeId::ROOT => (String::new(), 0),
                p if p == cur => return Verdict::Refused("it is its own folder".into()),
                p => match (by_id.get(&p), &above) {
                    (None, _) => {
                        return Verdict::Refused(format!(
                            "its folder (node {p}) is not in the listing"
                        ))
                    }
                    (Some(f), _) if f.kind != NodeKind::Folder => {
                        return Verdict::Refused(format!("its folder (node {p}) is not a folder"))
                    }
                    (Some(_), Some(Verdict::Placed(path, depth))) => (path.clone(), *depth),
                    (Some(_), Some(Verdict::TooDeepInside(top))) => {
                        return Verdict::TooDeepInside(*top)
                    }
                    (Some(_), Some(Verdict::Refused(e))) if e.ends_with("cycle") => {
                        return Verdict::Refused(e.clone())
                    }
                    (Some(_), _) => {
                        return Verdict::Refused(format!(
                            "it is inside a refused folder (node {p})"
                        ))
                    }
                },
            };
            if node.path.trim_matches('/') != parent_path {
                return Verdict::Refused(format!(
                    "its path {:?} disagrees with its folders ({:?})",
                    printable(&node.path, 80),
                    parent_path
                ));
            }
            if depth + 1 > MAX_DEPTH {
                // Decided: the folder is refused with everything inside it in one line; the
                // mirror takes no path deeper (`RelPath`), and the platform nests 5 levels.
                return Verdict::Refused(format!(
                    "{TOO_DEEP} {MAX_DEPTH} folders, where the mirror stops"
                ));
            }
            Verdict::Placed(
                crate::protocol::join_path(&parent_path, &node.name),
                depth + 1,
            )
        })();
        above = Some(passed_down(cur, &v));
        verdicts.insert(cur, v);
    }
    verdicts[&id].clone()
}

/// What folder `id`'s verdict means for what is inside it: a refusal for depth makes what is
/// inside only counted, in that one refusal.
fn passed_down(id: NodeId, v: &Verdict) -> Verdict {
    match v {
        Verdict::Refused(r) if r.starts_with(TOO_DEEP) => Verdict::TooDeepInside(id),
        other => other.clone(),
    }
}

const TOO_DEEP: &str = "it is deeper than";

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, kind: NodeKind, name: &str, path: &str, parent: u64) -> Node {
        Node {
            id: NodeId::new(id),
            kind,
            name: name.into(),
            path: path.into(),
            parent_id: Some(NodeId::new(parent)),
            size: None,
            modified_at: None,
            checksum: None,
            edited_at: None,
        }
    }

    fn refused_ids(nodes: &[Node]) -> Vec<u64> {
        let refused = vet_listing(nodes).refused;
        let mut ids: Vec<u64> = refused.iter().map(|r| r.node_id.get()).collect();
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
        let Vetted {
            accepted, refused, ..
        } = vet_listing(&nodes);
        let ids: Vec<u64> = accepted.iter().map(|n| n.id.get()).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(refused.len(), 8);
        let long = refused
            .iter()
            .find(|r| r.node_id == NodeId::new(10))
            .unwrap();
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

    /// A chain of `levels` folders, each inside the one before (ids 1..=levels), listed parents
    /// first or children first.
    fn chain(levels: u64, children_first: bool) -> Vec<Node> {
        let mut path = String::new();
        let mut nodes = Vec::new();
        for id in 1..=levels {
            let name = format!("d{id}");
            nodes.push(node(id, NodeKind::Folder, &name, &path, id - 1));
            path = crate::protocol::join_path(&path, &name);
        }
        if children_first {
            nodes.reverse();
        }
        nodes
    }

    #[test]
    fn a_chain_deeper_than_the_mirror_is_refused_once_and_the_rest_kept() {
        for children_first in [false, true] {
            let mut nodes = chain(300, children_first);
            nodes.push(node(1000, NodeKind::Site, "honest.html", "", 0));
            let v = vet_listing(&nodes);
            // 256 folders are placed, with the site; the 257th is refused in one line that
            // counts the 43 inside it.
            assert_eq!(v.accepted.len(), 257, "children first: {children_first}");
            assert!(v.accepted.iter().any(|n| n.id == NodeId::new(1000)));
            assert_eq!(v.refused.len(), 1, "{:?}", v.refused);
            assert_eq!(v.refused[0].node_id, NodeId::new(257));
            assert!(
                v.refused[0].reason.contains("deeper than 256")
                    && v.refused[0].reason.contains("43 nodes inside"),
                "{:?}",
                v.refused[0]
            );
            // Parents before children.
            let depth = |n: &Node| n.path.split('/').filter(|s| !s.is_empty()).count();
            assert!(v.accepted.windows(2).all(|w| depth(w[0]) <= depth(w[1])));
        }
        let nodes = chain(255, false);
        let v = vet_listing(&nodes);
        assert_eq!((v.accepted.len(), v.refused.len()), (255, 0));
    }

    #[test]
    fn a_long_cycle_is_still_a_cycle() {
        let mut nodes = chain(400, false);
        nodes[0].parent_id = Some(NodeId::new(400));
        nodes[0].path = chain(400, false)[399].full_path();
        let v = vet_listing(&nodes);
        assert!(v.accepted.is_empty());
        assert_eq!(v.refused.len(), 400);
        assert!(v.refused.iter().all(|r| r.reason.contains("cycle")));
    }

    #[test]
    fn a_listing_over_the_bound_keeps_the_shallowest_and_counts_the_rest() {
        use NodeKind::*;
        // Children listed before their folders, the site last: the bound keeps the top first.
        let mut nodes: Vec<Node> = (10..30)
            .map(|id| node(id, Folder, &format!("f{id}"), "top", 1))
            .collect();
        nodes.push(node(1, Folder, "top", "", 0));
        nodes.push(node(2, Site, "index.html", "", 0));
        let v = vet_listing_bounded(&nodes, 12);
        let mut ids: Vec<u64> = v.accepted.iter().map(|n| n.id.get()).collect();
        ids.sort();
        assert_eq!(ids, [1, 2].into_iter().chain(10..20).collect::<Vec<_>>());
        assert_eq!(v.over_limit, 10);
        assert!(v.refused.is_empty());
        let v = vet_listing_bounded(&nodes, 22);
        assert_eq!((v.accepted.len(), v.over_limit), (22, 0));
    }
}
