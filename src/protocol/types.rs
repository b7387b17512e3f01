//! JSON shapes of the sync API, field for field as sync-api.md defines them.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{Checksum, NodeKind};

/// A platform node's id. Its own type so that an inode, a size or a cursor can't be passed for
/// one; on the wire a number (`serde(transparent)`), in the index an INTEGER as before.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(u64);

impl NodeId {
    /// The root folder as a parent: the platform spells it 0 (or null).
    pub const ROOT: NodeId = NodeId(0);

    pub const fn new(id: u64) -> NodeId {
        NodeId(id)
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

/// As the plain number it was before it had a type (the log reads the same).
impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl From<u64> for NodeId {
    fn from(id: u64) -> NodeId {
        NodeId(id)
    }
}

/// An INTEGER, as the index always kept it.
impl rusqlite::types::ToSql for NodeId {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl rusqlite::types::FromSql for NodeId {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        u64::column_result(value).map(NodeId)
    }
}

/// A time as the platform gives it (`modifiedAt`, `editedAt`): its text, kept as it came and
/// sent back as it came; parsed only where a time is compared ([`PlatformTime::parse`]). Its
/// own type so that it can't be passed for a checksum or a name; in the index the same TEXT.
///
/// `Default` is the empty text: what a missing time read as while it was a `String`.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlatformTime(String);

impl PlatformTime {
    /// A time's text as given (from the platform, the index, a header): kept as it is.
    pub fn new(text: impl Into<String>) -> PlatformTime {
        PlatformTime(text.into())
    }

    /// `t` in the platform's format ([`format_time`]).
    pub fn at(t: chrono::DateTime<chrono::Utc>) -> PlatformTime {
        PlatformTime(format_time(t))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The time it names ([`parse_time`]); `None` for text that is not one.
    pub fn parse(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        parse_time(&self.0)
    }
}

impl std::fmt::Display for PlatformTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// As the plain string it was before it had a type (the log reads the same).
impl std::fmt::Debug for PlatformTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl From<String> for PlatformTime {
    fn from(text: String) -> PlatformTime {
        PlatformTime(text)
    }
}

impl From<&str> for PlatformTime {
    fn from(text: &str) -> PlatformTime {
        PlatformTime(text.to_string())
    }
}

impl PartialEq<str> for PlatformTime {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for PlatformTime {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// TEXT, as the index always kept it.
impl rusqlite::types::ToSql for PlatformTime {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl rusqlite::types::FromSql for PlatformTime {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        String::column_result(value).map(PlatformTime)
    }
}

/// A node in a listing. `path` is the parent folder's path (`""` at the root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub id: NodeId,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub parent_id: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<PlatformTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
    /// Part 2: when the content was edited, on the platform's clock, as the writing client said
    /// (never later than the platform's own time of storing it). Decides "the later edit wins".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<PlatformTime>,
}

impl Node {
    /// The full path of the node itself: `path/name`.
    pub fn full_path(&self) -> String {
        join_path(&self.path, &self.name)
    }

    /// The parent id with the root spelled as 0 (the platform answers 0 or null).
    pub fn parent(&self) -> NodeId {
        self.parent_id.unwrap_or(NodeId::ROOT)
    }
}

/// `parent/name`, or `name` at the root.
pub fn join_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    pub server_time: String,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodesResponse {
    pub nodes: Vec<Node>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    /// Not on the wire: the ids of the nodes listed but not kept, past the node bound
    /// (`remote/listing.rs`). Still the platform's nodes: none of them was deleted.
    #[serde(skip)]
    pub left_out: Vec<NodeId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateNodeRequest {
    #[serde(rename = "type")]
    pub kind: NodeKind,
    pub name: String,
    #[serde(default)]
    pub parent_id: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<PlatformTime>,
    /// Part 2: when the content was edited, on the platform's clock, as the writing client said
    /// (never later than the platform's own time of storing it). Decides "the later edit wins".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<PlatformTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedNode {
    pub id: NodeId,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    pub name: String,
    #[serde(default)]
    pub parent_id: Option<NodeId>,
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateNodeResponse {
    pub node: CreatedNode,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentResponse {
    pub content: String,
    pub node_type: NodeKind,
    pub modified_at: PlatformTime,
    pub checksum: Checksum,
    pub size: u64,
    /// Part 2: when the content was edited, on the platform's clock, as the writing client said
    /// (never later than the platform's own time of storing it). Decides "the later edit wins".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<PlatformTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutContentRequest {
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<PlatformTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_checksum: Option<Checksum>,
    /// Part 2: when the content was edited, on the platform's clock, as the writing client said
    /// (never later than the platform's own time of storing it). Decides "the later edit wins".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<PlatformTime>,
    /// The page as an open tab showed it (live sync), relayed to the account's other streams as
    /// a `live-sync` frame; sent with `sender_id` (Hyperclay Local's engine sends both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_html: Option<String>,
    /// The writing device, so it can drop its own relayed frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<String>,
    /// Whether a user's gesture came with the change (a page's `Save-Trigger: user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_driven: Option<bool>,
}

/// A page's live-sync snapshot from one device, for the open tabs of the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSnapshot {
    pub html: String,
    pub sender: String,
}

/// A `live-sync` stream frame: `file` (the page's full path), its snapshot, and who sent it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LiveSyncFrame {
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub html: String,
    #[serde(default)]
    pub sender: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutContentResponse {
    pub node_id: NodeId,
    pub checksum: Checksum,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenameRequest {
    pub new_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenameResponse {
    pub node_id: NodeId,
    pub old_name: String,
    pub new_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveRequest {
    pub target_parent_id: NodeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveResponse {
    pub node_id: NodeId,
    pub from_path: String,
    pub to_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteResponse {
    pub node_id: NodeId,
    #[serde(rename = "type")]
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub version_id: u64,
    pub created_at: String,
    pub size: u64,
    pub checksum: Checksum,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionsResponse {
    pub versions: Vec<Version>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionContentResponse {
    pub version_id: u64,
    pub content: String,
    pub node_type: NodeKind,
    pub created_at: String,
    pub checksum: Checksum,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangesResponse {
    pub changes: Vec<Change>,
    pub cursor: u64,
    pub has_more: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    pub token: String,
    pub expires_at: String,
}

/// An error body. hyperclay.com uses `msg`, sometimes `message` or `error`; Part 2 adds `code`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    /// With `changed_remotely`: what the platform holds now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<PlatformTime>,
    /// Part 2: when the content was edited, on the platform's clock, as the writing client said
    /// (never later than the platform's own time of storing it). Decides "the later edit wins".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<PlatformTime>,
}

impl ErrorBody {
    /// The human text, whichever field the platform used.
    /// The error's words, made printable (they reach the terminal and the log).
    pub fn text(&self) -> String {
        let text = self
            .msg
            .as_deref()
            .or(self.message.as_deref())
            .or(self.error.as_deref())
            .unwrap_or_default();
        super::printable(text, 300)
    }
}

/// One change: a stream frame's payload, or an entry of `GET changes` (which adds `seq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    NodeSaved(NodeSaved),
    NodeRenamed(NodeRenamed),
    NodeMoved(NodeMoved),
    NodeDeleted(NodeDeleted),
    /// Another device's open tab changed a page (handed to this mount's local server).
    LiveSync(LiveSyncFrame),
    /// `control` and anything newer: a mount ignores them.
    #[serde(other)]
    Other,
}

impl Event {
    pub fn node_id(&self) -> Option<NodeId> {
        match self {
            Event::NodeSaved(e) => Some(e.node_id),
            Event::NodeRenamed(e) => Some(e.node_id),
            Event::NodeMoved(e) => Some(e.node_id),
            Event::NodeDeleted(e) => Some(e.node_id),
            Event::LiveSync(_) | Event::Other => None,
        }
    }
}

/// Sent for creates and updates. `path` is the full path including the name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSaved {
    pub node_id: NodeId,
    pub node_type: NodeKind,
    pub name: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<PlatformTime>,
    /// Sites: the HTML inline (absent in a replayed change whose content was since replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Uploads: the size (fetch the bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<NodeId>,
    /// Part 2: when the content was edited, on the platform's clock, as the writing client said
    /// (never later than the platform's own time of storing it). Decides "the later edit wins".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<PlatformTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRenamed {
    pub node_id: NodeId,
    pub node_type: NodeKind,
    pub old_name: String,
    pub new_name: String,
    pub old_path: String,
    pub new_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMoved {
    pub node_id: NodeId,
    pub node_type: NodeKind,
    pub name: String,
    pub old_name: String,
    pub new_name: String,
    pub old_path: String,
    pub new_path: String,
    #[serde(default)]
    pub old_parent_id: Option<NodeId>,
    #[serde(default)]
    pub new_parent_id: Option<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeDeleted {
    pub node_id: NodeId,
    pub node_type: NodeKind,
    pub name: String,
    pub path: String,
}

/// An entry of `GET changes`: the event plus its place in the account's change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// Content in JSON: a site's HTML as a plain string, an upload's bytes as padded base64.
pub fn encode_content(kind: NodeKind, bytes: &[u8]) -> String {
    match kind {
        NodeKind::Site => String::from_utf8_lossy(bytes).into_owned(),
        _ => base64::engine::general_purpose::STANDARD.encode(bytes),
    }
}

/// The inverse of [`encode_content`].
pub fn decode_content(kind: NodeKind, text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    match kind {
        NodeKind::Site => Ok(text.as_bytes().to_vec()),
        _ => base64::engine::general_purpose::STANDARD.decode(text),
    }
}

/// The platform's time format: ISO-8601 UTC with milliseconds.
pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Parses the platform's time format (any RFC 3339 time).
pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_flattens_seq_beside_the_event_fields() {
        let json = r#"{"seq":7,"type":"node-deleted","nodeId":3,"nodeType":"site","name":"a.html","path":"a.html"}"#;
        let change: Change = serde_json::from_str(json).unwrap();
        assert_eq!(change.seq, 7);
        assert_eq!(change.event.node_id(), Some(NodeId::new(3)));
        let back = serde_json::to_value(&change).unwrap();
        assert_eq!(back["seq"], 7);
        assert_eq!(back["type"], "node-deleted");
    }

    #[test]
    fn unknown_event_types_are_other() {
        let e: Event = serde_json::from_str(r#"{"type":"control","x":1}"#).unwrap();
        assert_eq!(e, Event::Other);
        let e: Event = serde_json::from_str(r#"{"type":"live-sync","x":1}"#).unwrap();
        assert_eq!(
            e,
            Event::LiveSync(LiveSyncFrame::default()),
            "missing fields are empty"
        );
        let e: Event = serde_json::from_str(
            r#"{"type":"live-sync","file":"a.html","html":"<p>","sender":"d"}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            Event::LiveSync(LiveSyncFrame {
                file: "a.html".into(),
                html: "<p>".into(),
                sender: "d".into()
            })
        );
    }
}
