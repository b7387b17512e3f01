//! The listing (`GET nodes`), parsed as it arrives. The body is read under the same size and
//! progress limits as every answer (`client::limits::LISTING`, `PROGRESS_TIMEOUT`) and handed,
//! chunk by chunk, to a parser on a blocking thread, which keeps at most `max_nodes` nodes: the
//! shallowest by the depth each node's `path` claims (`sync/vet.rs` checks the claim), then the
//! first in listing order, as the node bound decides (`sync::MAX_LISTING_NODES`). Of the others
//! only the ids are kept (a node left out is not one the platform deleted). So a 46 MiB listing
//! of 700,003 nodes never exists whole in memory, neither as bytes nor as nodes (issue 26: it
//! peaked at 330 MB parsed whole).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::io::Read;

use bytes::{Buf, Bytes};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::protocol::{Node, NodeId, NodesResponse};

/// Chunks sent to the parser ahead of it.
pub(super) const CHUNKS_AHEAD: usize = 8;

/// The body's chunks, as the parser reads them: the end of the channel is the end of the body
/// (a body cut short by the reader's limits ends early; its caller reports why).
pub(super) struct Chunks {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Chunks {
    pub(super) fn new(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Chunks {
        Chunks {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Parses a listing from `body`, keeping at most `max_nodes` nodes (in listing order) and the
/// ids of the rest (`NodesResponse::left_out`).
pub(super) fn parse(body: impl Read, max_nodes: usize) -> serde_json::Result<NodesResponse> {
    let reader = std::io::BufReader::with_capacity(64 * 1024, body);
    let mut de = serde_json::Deserializer::from_reader(reader);
    let listing = ListingSeed { max_nodes }.deserialize(&mut de)?;
    de.end()?;
    Ok(listing)
}

/// A node held while the listing is read, ordered by (claimed depth, place in the listing): the
/// heap's top is the one to let go first.
struct Held {
    depth: usize,
    order: usize,
    node: Node,
}

impl Held {
    fn key(&self) -> (usize, usize) {
        (self.depth, self.order)
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Held) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Held) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Held) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// How many folders deep a node says it is (its `path` is its folder's; the top is 1).
fn claimed_depth(node: &Node) -> usize {
    1 + node.path.split('/').filter(|s| !s.is_empty()).count()
}

/// The nodes kept so far, and the ids of those let go.
struct Kept {
    max_nodes: usize,
    heap: BinaryHeap<Held>,
    left_out: Vec<NodeId>,
    seen: usize,
}

impl Kept {
    fn offer(&mut self, node: Node) {
        let held = Held {
            depth: claimed_depth(&node),
            order: self.seen,
            node,
        };
        self.seen += 1;
        if self.heap.len() < self.max_nodes {
            self.heap.push(held);
            return;
        }
        // Full: a node takes a place only from a deeper one (a later one of the same depth
        // comes after every held one in the listing).
        match self.heap.peek_mut() {
            Some(mut deepest) if held.key() < deepest.key() => {
                let out = std::mem::replace(&mut *deepest, held);
                self.left_out.push(out.node.id);
            }
            _ => self.left_out.push(held.node.id),
        }
    }

    fn into_nodes(self) -> (Vec<Node>, Vec<NodeId>) {
        let mut held = self.heap.into_vec();
        held.sort_unstable_by_key(|h| h.order);
        (held.into_iter().map(|h| h.node).collect(), self.left_out)
    }
}

struct ListingSeed {
    max_nodes: usize,
}

impl<'de> DeserializeSeed<'de> for ListingSeed {
    type Value = NodesResponse;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<NodesResponse, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ListingSeed {
    type Value = NodesResponse;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a listing: {\"nodes\": [...], \"cursor\": N}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodesResponse, A::Error> {
        let mut nodes = None;
        let mut cursor = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "nodes" if nodes.is_none() => {
                    nodes = Some(map.next_value_seed(NodesSeed {
                        max_nodes: self.max_nodes,
                    })?)
                }
                "nodes" => return Err(serde::de::Error::duplicate_field("nodes")),
                "cursor" => cursor = map.next_value::<Option<u64>>()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let (nodes, left_out) = nodes.ok_or_else(|| serde::de::Error::missing_field("nodes"))?;
        Ok(NodesResponse {
            nodes,
            cursor,
            left_out,
        })
    }
}

struct NodesSeed {
    max_nodes: usize,
}

impl<'de> DeserializeSeed<'de> for NodesSeed {
    type Value = (Vec<Node>, Vec<NodeId>);

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for NodesSeed {
    type Value = (Vec<Node>, Vec<NodeId>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of nodes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut kept = Kept {
            max_nodes: self.max_nodes,
            // Not sized by the bound: a small listing must not reserve room for 200,000.
            heap: BinaryHeap::new(),
            left_out: Vec::new(),
            seen: 0,
        };
        while let Some(node) = seq.next_element::<Node>()? {
            kept.offer(node);
        }
        Ok(kept.into_nodes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(nodes: &[(u64, &str)]) -> String {
        let nodes: Vec<String> = nodes
            .iter()
            .map(|(id, path)| {
                format!(
                    r#"{{"id":{id},"type":"folder","name":"n{id}","path":"{path}","parentId":0}}"#
                )
            })
            .collect();
        format!(
            r#"{{"cursor":7,"nodes":[{}],"more":{{"x":[1]}}}}"#,
            nodes.join(",")
        )
    }

    #[test]
    fn the_shallowest_are_kept_in_listing_order_and_the_rest_named() {
        let body = listing(&[
            (1, "a/b"),
            (2, ""),
            (3, "a"),
            (4, "a/b/c"),
            (5, ""),
            (6, "a"),
        ]);
        let parsed = parse(body.as_bytes(), 4).unwrap();
        let ids: Vec<u64> = parsed.nodes.iter().map(|n| n.id.get()).collect();
        assert_eq!(ids, [2, 3, 5, 6], "depth 1 and 2, as listed");
        let mut out: Vec<u64> = parsed.left_out.iter().map(|n| n.get()).collect();
        out.sort_unstable();
        assert_eq!(out, [1, 4]);
        assert_eq!(parsed.cursor, Some(7));
        let all = parse(body.as_bytes(), usize::MAX).unwrap();
        assert_eq!(all.nodes.len(), 6);
        assert!(all.left_out.is_empty());
        // The same choice as sorting all of them and cutting (vet.rs's rule), at every bound.
        for max in 0..=6 {
            let parsed = parse(body.as_bytes(), max).unwrap();
            let mut sorted = all.nodes.clone();
            sorted.sort_by_key(claimed_depth);
            let mut want: Vec<u64> = sorted.iter().take(max).map(|n| n.id.get()).collect();
            want.sort_unstable();
            let mut got: Vec<u64> = parsed.nodes.iter().map(|n| n.id.get()).collect();
            got.sort_unstable();
            assert_eq!(got, want, "bound {max}");
            assert_eq!(parsed.left_out.len(), 6 - max.min(6));
        }
    }

    #[test]
    fn a_damaged_or_cut_listing_is_an_error() {
        let body = listing(&[(1, ""), (2, "")]);
        assert!(parse(&body.as_bytes()[..body.len() - 3], 10).is_err());
        assert!(parse(format!("{body}x").as_bytes(), 10).is_err());
        assert!(parse(r#"{"cursor":1}"#.as_bytes(), 10).is_err());
        assert!(parse(r#"{"nodes":[],"nodes":[]}"#.as_bytes(), 10).is_err());
        assert!(parse(r#"{"nodes":[{"id":1}]}"#.as_bytes(), 10).is_err());
    }

    #[test]
    fn chunks_read_across_their_edges() {
        let body = listing(&[(1, ""), (2, "x"), (3, "")]);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        for piece in body.as_bytes().chunks(5) {
            tx.try_send(Bytes::copy_from_slice(piece)).unwrap();
        }
        drop(tx);
        let parsed = parse(Chunks::new(rx), 2).unwrap();
        let ids: Vec<u64> = parsed.nodes.iter().map(|n| n.id.get()).collect();
        assert_eq!(ids, [1, 3]);
        assert_eq!(parsed.left_out, [NodeId::new(2)]);
    }
}
