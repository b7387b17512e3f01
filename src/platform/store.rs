//! The dev platform's storage: one SQLite database (WAL) holding accounts, nodes with their
//! content, replaced versions and the account-wide change log. The only code of `platform` that
//! touches the database. Every write and the change it records commit in one transaction, and the
//! change is broadcast to stream subscribers before the lock is released, so subscribers see
//! changes in `seq` order.
//!
//! Durability: `synchronous=NORMAL` in WAL mode survives a `kill -9` of the process at any moment
//! (a committed transaction is in the WAL in the OS's page cache); it may lose the last commits on
//! power loss, which a development server accepts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::broadcast;

use super::error::PlatformError;
use crate::protocol::{
    self, checksum, format_time, join_path, names, Change, Checksum, CreatedNode, Event,
    LiveSnapshot, LiveSyncFrame, Node, NodeDeleted, NodeKind, NodeMoved, NodeRenamed, NodeSaved,
    Version, MAX_CONTENT_BYTES, MAX_FOLDER_DEPTH,
};
use crate::protocol::{NodeId, PlatformTime};

type Result<T> = std::result::Result<T, PlatformError>;

/// An account, as resolved from its key or token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub username: String,
    pub api_key: String,
    pub paid: bool,
    pub max_sites: Option<u64>,
}

/// One frame for stream subscribers: a numbered change, or unnumbered browser traffic (`control`).
#[derive(Debug, Clone)]
pub struct Frame {
    pub account_id: i64,
    pub seq: Option<u64>,
    pub json: Arc<str>,
}

/// What comes with new content besides the bytes.
#[derive(Debug, Default)]
pub struct ContentWrite {
    /// The checksum the writer based its change on (refused if the node moved on).
    pub base: Option<Checksum>,
    /// The writer's clock, recorded, never trusted.
    pub client_modified_at: Option<String>,
    /// When the content was edited, on the platform's clock (Part 2).
    pub edited_at: Option<String>,
    /// The writer's open tab's snapshot, relayed as a live-sync frame.
    pub live: Option<LiveSnapshot>,
}

/// A node's stored content.
#[derive(Debug, Clone)]
pub struct StoredContent {
    pub kind: NodeKind,
    pub bytes: Vec<u8>,
    pub modified_at: String,
    pub checksum: Checksum,
    pub edited_at: Option<String>,
}

/// A version's stored content.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    pub version: Version,
    pub kind: NodeKind,
    pub bytes: Vec<u8>,
}

pub struct Store {
    conn: Mutex<Connection>,
    frames: broadcast::Sender<Frame>,
}

#[derive(Debug, Clone)]
struct NodeRow {
    id: i64,
    kind: NodeKind,
    name: String,
    parent_id: i64,
    size: Option<u64>,
    checksum: Option<Checksum>,
    modified_at: Option<String>,
    edited_at: Option<String>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS accounts(
  id INTEGER PRIMARY KEY, username TEXT UNIQUE NOT NULL, api_key TEXT UNIQUE NOT NULL,
  paid INTEGER NOT NULL, max_sites INTEGER, cursor INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS nodes(
  id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
  parent_id INTEGER NOT NULL DEFAULT 0, content BLOB, size INTEGER, checksum TEXT,
  modified_at TEXT, client_modified_at TEXT, deleted_at TEXT);
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes(account_id, parent_id);
CREATE INDEX IF NOT EXISTS nodes_name ON nodes(account_id, name);
CREATE TABLE IF NOT EXISTS versions(
  id INTEGER PRIMARY KEY, node_id INTEGER NOT NULL, created_at TEXT NOT NULL,
  size INTEGER NOT NULL, checksum TEXT NOT NULL, content BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS versions_node ON versions(node_id, id);
CREATE TABLE IF NOT EXISTS changes(
  account_id INTEGER NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
  PRIMARY KEY(account_id, seq));
";

fn now() -> String {
    format_time(chrono::Utc::now())
}

fn kind_of(text: String) -> rusqlite::Result<NodeKind> {
    NodeKind::parse(&text).ok_or(rusqlite::Error::InvalidQuery)
}

fn row_to_node(r: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRow> {
    Ok(NodeRow {
        id: r.get(0)?,
        kind: kind_of(r.get(1)?)?,
        name: r.get(2)?,
        parent_id: r.get(3)?,
        size: r.get(4)?,
        checksum: r.get(5)?,
        modified_at: r.get(6)?,
        edited_at: r.get(7)?,
    })
}

/// kind, content, modified_at, checksum, edited_at
type ContentRow = (
    String,
    Option<Vec<u8>>,
    Option<String>,
    Option<Checksum>,
    Option<String>,
);

const NODE_COLUMNS: &str = "id, kind, name, parent_id, size, checksum, modified_at, edited_at";

/// The edit time a client claims, kept when it is a time and not later than `now` (a client
/// can't claim the future to win every comparison).
fn edit_time(claimed: Option<String>, now: &str) -> Option<String> {
    let claimed = protocol::parse_time(claimed.as_deref()?)?;
    let now = protocol::parse_time(now)?;
    Some(format_time(claimed.min(now)))
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        // Data made before `editedAt` existed gets the column (NULL: the platform's time stands).
        let has_edited_at = conn
            .prepare("SELECT 1 FROM pragma_table_info('nodes') WHERE name = 'edited_at'")?
            .exists([])?;
        if !has_edited_at {
            conn.execute_batch("ALTER TABLE nodes ADD COLUMN edited_at TEXT;")?;
        }
        let (frames, _) = broadcast::channel(16_384);
        Ok(Store {
            conn: Mutex::new(conn),
            frames,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back), so a
        // poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Frame> {
        self.frames.subscribe()
    }

    /// The secret that signs tokens, created on first use and kept across restarts.
    pub fn token_secret(&self) -> Result<Vec<u8>> {
        let conn = self.lock();
        let existing: Option<Vec<u8>> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'token_secret'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(secret) = existing {
            return Ok(secret);
        }
        let secret: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('token_secret', ?1)",
            params![secret],
        )?;
        Ok(secret)
    }

    /// Creates the account if it is new, and applies the given settings to it.
    pub fn ensure_account(
        &self,
        username: &str,
        api_key: Option<&str>,
        paid: bool,
        max_sites: Option<u64>,
    ) -> Result<Account> {
        let conn = self.lock();
        let existing: Option<String> = conn
            .query_row(
                "SELECT api_key FROM accounts WHERE username = ?1",
                params![username],
                |r| r.get(0),
            )
            .optional()?;
        let key = match (api_key, existing) {
            (Some(k), _) => k.to_string(),
            (None, Some(k)) => k,
            (None, None) => format!("hcsk_{:032x}", rand::random::<u128>()),
        };
        conn.execute(
            "INSERT INTO accounts(username, api_key, paid, max_sites) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(username) DO UPDATE SET api_key = ?2, paid = ?3, max_sites = ?4",
            params![username, key, paid, max_sites],
        )?;
        drop(conn);
        self.account_where("username = ?1", username)?
            .ok_or_else(|| PlatformError::Internal("account vanished".into()))
    }

    pub fn account_by_key(&self, key: &str) -> Result<Option<Account>> {
        self.account_where("api_key = ?1", key)
    }

    pub fn account_by_id(&self, id: i64) -> Result<Option<Account>> {
        self.account_where("id = ?1", &id.to_string())
    }

    fn account_where(&self, condition: &str, value: &str) -> Result<Option<Account>> {
        let conn = self.lock();
        let sql = format!(
            "SELECT id, username, api_key, paid, max_sites FROM accounts WHERE {condition}"
        );
        Ok(conn
            .query_row(&sql, params![value], |r| {
                Ok(Account {
                    id: r.get(0)?,
                    username: r.get(1)?,
                    api_key: r.get(2)?,
                    paid: r.get(3)?,
                    max_sites: r.get(4)?,
                })
            })
            .optional()?)
    }

    pub fn cursor(&self, account: &Account) -> Result<u64> {
        let conn = self.lock();
        Ok(conn.query_row(
            "SELECT cursor FROM accounts WHERE id = ?1",
            params![account.id],
            |r| r.get(0),
        )?)
    }

    /// Every live node with its parent's path, and the cursor the listing reflects.
    pub fn list(&self, account: &Account) -> Result<(Vec<Node>, u64)> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let cursor: u64 = tx.query_row(
            "SELECT cursor FROM accounts WHERE id = ?1",
            params![account.id],
            |r| r.get(0),
        )?;
        let rows: Vec<NodeRow> = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {NODE_COLUMNS} FROM nodes WHERE account_id = ?1 AND deleted_at IS NULL"
            ))?;
            let rows = stmt.query_map(params![account.id], row_to_node)?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        tx.commit()?;
        let by_id: HashMap<i64, &NodeRow> = rows.iter().map(|r| (r.id, r)).collect();
        let mut paths: HashMap<i64, String> = HashMap::new();
        let nodes = rows
            .iter()
            .map(|r| {
                let path = folder_path_cached(r.parent_id, &by_id, &mut paths);
                to_node(r, path)
            })
            .collect();
        Ok((nodes, cursor))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &self,
        account: &Account,
        kind: NodeKind,
        name: &str,
        parent_id: NodeId,
        content: Option<Vec<u8>>,
        client_modified_at: Option<String>,
        edited_at: Option<String>,
    ) -> Result<CreatedNode> {
        check_place(kind, name, row_id(parent_id))?;
        let parent_id = row_id(parent_id);
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let parent_path = if parent_id == 0 {
            String::new()
        } else {
            let parent = live_node(&tx, account, parent_id)?;
            if parent.kind != NodeKind::Folder {
                return Err(PlatformError::BadRequest(
                    "the parent is not a folder".into(),
                ));
            }
            folder_path(&tx, account, parent_id)?
        };
        if kind == NodeKind::Folder && depth_of(&tx, account, parent_id)? + 1 > MAX_FOLDER_DEPTH {
            return Err(PlatformError::InvalidName(format!(
                "invalid name: folders nest at most {MAX_FOLDER_DEPTH} levels deep"
            )));
        }
        ensure_name_free(&tx, account, kind, name, parent_id, 0)?;
        if kind == NodeKind::Site {
            if let Some(max) = account.max_sites {
                let sites: u64 = tx.query_row(
                    "SELECT count(*) FROM nodes WHERE account_id = ?1 AND kind = 'site' AND deleted_at IS NULL",
                    params![account.id],
                    |r| r.get(0),
                )?;
                if sites >= max {
                    return Err(PlatformError::OutOfSites);
                }
            }
        }
        let modified_at = now();
        let (bytes, sum, size) = match kind {
            NodeKind::Folder => (None, None, None),
            _ => {
                let bytes = content.unwrap_or_default();
                check_size(bytes.len())?;
                let sum = checksum(&bytes);
                let size = bytes.len() as u64;
                (Some(bytes), Some(sum), Some(size))
            }
        };
        let edited_at = edit_time(edited_at, &modified_at).filter(|_| kind.is_file());
        tx.execute(
            "INSERT INTO nodes(account_id, kind, name, parent_id, content, size, checksum, modified_at, client_modified_at, edited_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![account.id, kind.as_str(), name, parent_id, bytes, size, sum, modified_at, client_modified_at, edited_at],
        )?;
        let id = tx.last_insert_rowid();
        let event = Event::NodeSaved(NodeSaved {
            node_id: node_id(id),
            node_type: kind,
            name: name.to_string(),
            path: join_path(&parent_path, name),
            checksum: sum,
            modified_at: Some(PlatformTime::new(modified_at)),
            content: site_text(kind, bytes.as_deref()),
            size,
            parent_id: Some(node_id(parent_id)),
            edited_at: edited_at.map(PlatformTime::new),
        });
        self.commit_change(tx, account, event)?;
        Ok(CreatedNode {
            id: node_id(id),
            kind,
            name: name.to_string(),
            parent_id: Some(node_id(parent_id)),
            path: parent_path,
        })
    }

    pub fn node_kind(&self, account: &Account, id: NodeId) -> Result<NodeKind> {
        let conn = self.lock();
        Ok(live_node(&conn, account, row_id(id))?.kind)
    }

    pub fn content(&self, account: &Account, id: NodeId) -> Result<StoredContent> {
        let conn = self.lock();
        let row: Option<ContentRow> = conn
            .query_row(
                "SELECT kind, content, modified_at, checksum, edited_at FROM nodes
                 WHERE id = ?1 AND account_id = ?2 AND deleted_at IS NULL",
                params![row_id(id), account.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let (kind, bytes, modified_at, sum, edited_at) = row.ok_or(PlatformError::NotFound)?;
        let kind = NodeKind::parse(&kind).ok_or(PlatformError::NotFound)?;
        if kind == NodeKind::Folder {
            return Err(PlatformError::BadRequest("a folder has no content".into()));
        }
        Ok(StoredContent {
            kind,
            bytes: bytes.unwrap_or_default(),
            modified_at: modified_at.unwrap_or_default(),
            checksum: sum.unwrap_or(protocol::EMPTY_CHECKSUM),
            edited_at,
        })
    }

    /// Replaces a file's content, keeping the replaced content as a version. With `base`, writes
    /// only if the stored checksum is still `base`.
    pub fn put_content(
        &self,
        account: &Account,
        id: NodeId,
        bytes: Vec<u8>,
        write: ContentWrite,
    ) -> Result<(Checksum, u64)> {
        let ContentWrite {
            base,
            client_modified_at,
            edited_at,
            live,
        } = write;
        let base = base.as_ref();
        check_size(bytes.len())?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let node = live_node(&tx, account, row_id(id))?;
        if node.kind == NodeKind::Folder {
            return Err(PlatformError::BadRequest("a folder has no content".into()));
        }
        let old_sum = node.checksum.clone().unwrap_or_default();
        if let Some(base) = base {
            if *base != old_sum {
                return Err(PlatformError::ChangedRemotely {
                    checksum: old_sum,
                    modified_at: node.modified_at.clone().unwrap_or_default(),
                    edited_at: node.edited_at.clone(),
                });
            }
        }
        let modified_at = now();
        tx.execute(
            "INSERT INTO versions(node_id, created_at, size, checksum, content)
             SELECT id, ?2, coalesce(size, 0), coalesce(checksum, ?3), coalesce(content, x'') FROM nodes WHERE id = ?1",
            params![node.id, modified_at, protocol::EMPTY_CHECKSUM],
        )?;
        let sum = checksum(&bytes);
        let size = bytes.len() as u64;
        tx.execute(
            "UPDATE nodes SET content = ?2, size = ?3, checksum = ?4, modified_at = ?5, client_modified_at = ?6, edited_at = ?7 WHERE id = ?1",
            params![node.id, bytes, size, sum, modified_at, client_modified_at, edit_time(edited_at.clone(), &modified_at)],
        )?;
        let edited_at = edit_time(edited_at, &modified_at);
        let path = join_path(&folder_path(&tx, account, node.parent_id)?, &node.name);
        let file = path.clone();
        let event = Event::NodeSaved(NodeSaved {
            node_id: id,
            node_type: node.kind,
            name: node.name.clone(),
            path,
            checksum: Some(sum.clone()),
            modified_at: Some(PlatformTime::new(modified_at)),
            content: site_text(node.kind, Some(&bytes)),
            size: Some(size),
            parent_id: Some(node_id(node.parent_id)),
            edited_at: edited_at.map(PlatformTime::new),
        });
        self.commit_change(tx, account, event)?;
        // The writer's open tab showed this: the account's other streams get it as a live-sync
        // frame, after the save itself (as hyperclay.com relays Hyperclay Local's snapshots).
        if let Some(live) = live.filter(|_| node.kind == NodeKind::Site) {
            let frame = Event::LiveSync(LiveSyncFrame {
                file,
                html: live.html,
                sender: live.sender,
            });
            if let Ok(json) = serde_json::to_string(&frame) {
                self.publish_control(account, json);
            }
        }
        Ok((sum, size))
    }

    pub fn rename(&self, account: &Account, id: NodeId, new_name: &str) -> Result<String> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let node = live_node(&tx, account, row_id(id))?;
        check_same_kind(node.kind, new_name)?;
        check_place(node.kind, new_name, node.parent_id)?;
        ensure_name_free(&tx, account, node.kind, new_name, node.parent_id, node.id)?;
        tx.execute(
            "UPDATE nodes SET name = ?2 WHERE id = ?1",
            params![node.id, new_name],
        )?;
        let parent_path = folder_path(&tx, account, node.parent_id)?;
        let event = Event::NodeRenamed(NodeRenamed {
            node_id: id,
            node_type: node.kind,
            old_name: node.name.clone(),
            new_name: new_name.to_string(),
            old_path: join_path(&parent_path, &node.name),
            new_path: join_path(&parent_path, new_name),
        });
        self.commit_change(tx, account, event)?;
        Ok(node.name)
    }

    /// Moves a node under `target` (0 = root), optionally renaming it in the same step.
    pub fn move_node(
        &self,
        account: &Account,
        id: NodeId,
        target: NodeId,
        new_name: Option<&str>,
    ) -> Result<(String, String)> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let node = live_node(&tx, account, row_id(id))?;
        let target = row_id(target);
        if target != 0 {
            let folder = live_node(&tx, account, target)?;
            if folder.kind != NodeKind::Folder {
                return Err(PlatformError::BadRequest(
                    "the target is not a folder".into(),
                ));
            }
            if node.kind == NodeKind::Folder && ancestors(&tx, account, target)?.contains(&node.id)
            {
                return Err(PlatformError::BadRequest(
                    "a folder cannot move into itself".into(),
                ));
            }
        }
        let name = new_name.unwrap_or(&node.name).to_string();
        check_same_kind(node.kind, &name)?;
        check_place(node.kind, &name, target)?;
        if node.kind == NodeKind::Folder
            && depth_of(&tx, account, target)? + 1 + subtree_height(&tx, node.id)?
                > MAX_FOLDER_DEPTH
        {
            return Err(PlatformError::InvalidName(format!(
                "invalid name: folders nest at most {MAX_FOLDER_DEPTH} levels deep"
            )));
        }
        ensure_name_free(&tx, account, node.kind, &name, target, node.id)?;
        let from = join_path(&folder_path(&tx, account, node.parent_id)?, &node.name);
        let to = join_path(&folder_path(&tx, account, target)?, &name);
        tx.execute(
            "UPDATE nodes SET parent_id = ?2, name = ?3 WHERE id = ?1",
            params![node.id, target, name],
        )?;
        let event = Event::NodeMoved(NodeMoved {
            node_id: id,
            node_type: node.kind,
            name: name.clone(),
            old_name: node.name.clone(),
            new_name: name,
            old_path: from.clone(),
            new_path: to.clone(),
            old_parent_id: Some(node_id(node.parent_id)),
            new_parent_id: Some(node_id(target)),
        });
        self.commit_change(tx, account, event)?;
        Ok((from, to))
    }

    /// Soft-deletes a node (a folder with its subtree, which needs `cascade` when not empty).
    pub fn delete(&self, account: &Account, id: NodeId, cascade: bool) -> Result<NodeKind> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let node = live_node(&tx, account, row_id(id))?;
        if node.kind == NodeKind::Folder && !cascade {
            let children: u64 = tx.query_row(
                "SELECT count(*) FROM nodes WHERE account_id = ?1 AND parent_id = ?2 AND deleted_at IS NULL",
                params![account.id, node.id],
                |r| r.get(0),
            )?;
            if children > 0 {
                return Err(PlatformError::BadRequest(
                    "the folder is not empty: delete with cascade=true".into(),
                ));
            }
        }
        let path = join_path(&folder_path(&tx, account, node.parent_id)?, &node.name);
        tx.execute(
            "WITH RECURSIVE sub(id) AS (
               SELECT ?1 UNION ALL
               SELECT n.id FROM nodes n JOIN sub ON n.parent_id = sub.id WHERE n.deleted_at IS NULL)
             UPDATE nodes SET deleted_at = ?2 WHERE id IN sub AND deleted_at IS NULL",
            params![node.id, now()],
        )?;
        let event = Event::NodeDeleted(NodeDeleted {
            node_id: id,
            node_type: node.kind,
            name: node.name.clone(),
            path,
        });
        self.commit_change(tx, account, event)?;
        Ok(node.kind)
    }

    /// Changes after `since`, at most `limit`, and whether more follow.
    pub fn changes_since(
        &self,
        account: &Account,
        since: u64,
        limit: u64,
    ) -> Result<(Vec<Change>, u64, bool)> {
        let conn = self.lock();
        let cursor: u64 = conn.query_row(
            "SELECT cursor FROM accounts WHERE id = ?1",
            params![account.id],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare_cached(
            "SELECT seq, event FROM changes WHERE account_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows: Vec<(u64, String)> = stmt
            .query_map(params![account.id, since, limit + 1], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let has_more = rows.len() as u64 > limit;
        let mut changes = Vec::with_capacity(rows.len());
        for (seq, json) in rows.into_iter().take(limit as usize) {
            let mut event: Event = serde_json::from_str(&json)
                .map_err(|e| PlatformError::Internal(format!("stored change {seq}: {e}")))?;
            restore_site_content(&conn, &mut event)?;
            changes.push(Change { seq, event });
        }
        let reflected = if has_more {
            changes.last().map(|c| c.seq).unwrap_or(since)
        } else {
            cursor
        };
        Ok((changes, reflected, has_more))
    }

    pub fn versions(&self, account: &Account, id: NodeId) -> Result<Vec<Version>> {
        let conn = self.lock();
        live_node(&conn, account, row_id(id))?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, created_at, size, checksum FROM versions WHERE node_id = ?1 ORDER BY id DESC",
        )?;
        let versions = stmt
            .query_map(params![row_id(id)], |r| {
                Ok(Version {
                    version_id: r.get(0)?,
                    created_at: r.get(1)?,
                    size: r.get(2)?,
                    checksum: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(versions)
    }

    pub fn version(&self, account: &Account, id: NodeId, version_id: u64) -> Result<StoredVersion> {
        let conn = self.lock();
        let node = live_node(&conn, account, row_id(id))?;
        let row = conn
            .query_row(
                "SELECT id, created_at, size, checksum, content FROM versions WHERE node_id = ?1 AND id = ?2",
                params![row_id(id), version_id as i64],
                |r| {
                    Ok((
                        Version {
                            version_id: r.get(0)?,
                            created_at: r.get(1)?,
                            size: r.get(2)?,
                            checksum: r.get(3)?,
                        },
                        r.get::<_, Vec<u8>>(4)?,
                    ))
                },
            )
            .optional()?;
        let (version, bytes) = row.ok_or(PlatformError::NotFound)?;
        Ok(StoredVersion {
            version,
            kind: node.kind,
            bytes,
        })
    }

    /// Browser-to-browser traffic: forwarded to subscribers, never logged as a change.
    pub fn publish_control(&self, account: &Account, json: String) {
        let _ = self.frames.send(Frame {
            account_id: account.id,
            seq: None,
            json: json.into(),
        });
    }

    /// Appends the change to the log, commits, and broadcasts it while the lock is still held.
    fn commit_change(&self, tx: Transaction<'_>, account: &Account, event: Event) -> Result<u64> {
        let seq: u64 = tx.query_row(
            "UPDATE accounts SET cursor = cursor + 1 WHERE id = ?1 RETURNING cursor",
            params![account.id],
            |r| r.get(0),
        )?;
        let stored = without_site_content(&event);
        let stored_json =
            serde_json::to_string(&stored).map_err(|e| PlatformError::Internal(e.to_string()))?;
        tx.execute(
            "INSERT INTO changes(account_id, seq, event) VALUES (?1, ?2, ?3)",
            params![account.id, seq, stored_json],
        )?;
        tx.commit()?;
        let change = Change { seq, event };
        let json =
            serde_json::to_string(&change).map_err(|e| PlatformError::Internal(e.to_string()))?;
        // No subscriber is not an error.
        let _ = self.frames.send(Frame {
            account_id: account.id,
            seq: Some(seq),
            json: json.into(),
        });
        Ok(seq)
    }
}

fn check_size(len: usize) -> Result<()> {
    if len as u64 > MAX_CONTENT_BYTES {
        return Err(PlatformError::TooLarge);
    }
    Ok(())
}

fn check_same_kind(kind: NodeKind, new_name: &str) -> Result<()> {
    if kind.is_file() && NodeKind::of_file_name(new_name) != kind {
        return Err(PlatformError::InvalidName(format!(
            "invalid name: a {} cannot be renamed to {new_name:?}, which would make it a different kind",
            kind.as_str()
        )));
    }
    Ok(())
}

fn site_text(kind: NodeKind, bytes: Option<&[u8]>) -> Option<String> {
    match (kind, bytes) {
        (NodeKind::Site, Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// Site HTML is not copied into the log: a replayed change gets it back from the node if it is
/// still the current content (otherwise a later change carries the newer one).
fn without_site_content(event: &Event) -> Event {
    match event {
        Event::NodeSaved(saved) if saved.content.is_some() => Event::NodeSaved(NodeSaved {
            content: None,
            ..saved.clone()
        }),
        other => other.clone(),
    }
}

fn restore_site_content(conn: &Connection, event: &mut Event) -> Result<()> {
    let Event::NodeSaved(saved) = event else {
        return Ok(());
    };
    if saved.node_type != NodeKind::Site {
        return Ok(());
    }
    let current: Option<(Vec<u8>, Checksum)> = conn
        .query_row(
            "SELECT content, checksum FROM nodes WHERE id = ?1 AND deleted_at IS NULL",
            params![row_id(saved.node_id)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((bytes, sum)) = current {
        if Some(&sum) == saved.checksum.as_ref() {
            saved.content = Some(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Ok(())
}

/// A platform node id as the store's rows keep it.
fn row_id(id: NodeId) -> i64 {
    id.get() as i64
}

/// A row's id as the platform node id the protocol speaks of.
fn node_id(row: i64) -> NodeId {
    NodeId::new(row as u64)
}

fn to_node(r: &NodeRow, path: String) -> Node {
    Node {
        id: node_id(r.id),
        kind: r.kind,
        name: r.name.clone(),
        path,
        parent_id: Some(node_id(r.parent_id)),
        size: r.size,
        modified_at: r.modified_at.clone().map(PlatformTime::new),
        checksum: r.checksum.clone(),
        edited_at: r.edited_at.clone().map(PlatformTime::new),
    }
}

fn folder_path_cached(
    folder: i64,
    by_id: &HashMap<i64, &NodeRow>,
    cache: &mut HashMap<i64, String>,
) -> String {
    if folder == 0 {
        return String::new();
    }
    if let Some(p) = cache.get(&folder) {
        return p.clone();
    }
    let path = match by_id.get(&folder) {
        Some(f) => join_path(&folder_path_cached(f.parent_id, by_id, cache), &f.name),
        None => String::new(),
    };
    cache.insert(folder, path.clone());
    path
}

fn live_node(conn: &Connection, account: &Account, id: i64) -> Result<NodeRow> {
    conn.query_row(
        &format!(
            "SELECT {NODE_COLUMNS} FROM nodes WHERE id = ?1 AND account_id = ?2 AND deleted_at IS NULL"
        ),
        params![id, account.id],
        row_to_node,
    )
    .optional()?
    .ok_or(PlatformError::NotFound)
}

/// The folder ids from `folder` up to the root (`folder` first, the root excluded).
fn ancestors(conn: &Connection, account: &Account, folder: i64) -> Result<Vec<i64>> {
    let mut chain = Vec::new();
    let mut current = folder;
    while current != 0 {
        if chain.contains(&current) || chain.len() > 64 {
            return Err(PlatformError::Internal("folder cycle".into()));
        }
        chain.push(current);
        current = live_node(conn, account, current)?.parent_id;
    }
    Ok(chain)
}

fn folder_path(conn: &Connection, account: &Account, folder: i64) -> Result<String> {
    let mut names = Vec::new();
    for id in ancestors(conn, account, folder)? {
        names.push(live_node(conn, account, id)?.name);
    }
    names.reverse();
    Ok(names.join("/"))
}

/// How many folders deep `folder` is (the root is 0, a folder at the root is 1).
fn depth_of(conn: &Connection, account: &Account, folder: i64) -> Result<usize> {
    Ok(ancestors(conn, account, folder)?.len())
}

/// How many levels of folders sit below `folder` (0 when it holds no folder).
fn subtree_height(conn: &Connection, folder: i64) -> Result<usize> {
    let height: Option<usize> = conn.query_row(
        "WITH RECURSIVE sub(id, depth) AS (
           SELECT ?1, 0 UNION ALL
           SELECT n.id, sub.depth + 1 FROM nodes n JOIN sub ON n.parent_id = sub.id
           WHERE n.deleted_at IS NULL AND n.kind = 'folder')
         SELECT max(depth) FROM sub",
        params![folder],
        |r| r.get(0),
    )?;
    Ok(height.unwrap_or(0))
}

/// A site's name is unique in the account; any name is unique in its folder.
fn ensure_name_free(
    conn: &Connection,
    account: &Account,
    kind: NodeKind,
    name: &str,
    parent: i64,
    except: i64,
) -> Result<()> {
    let in_folder: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM nodes WHERE account_id = ?1 AND parent_id = ?2 AND name = ?3
                       AND id != ?4 AND deleted_at IS NULL)",
        params![account.id, parent, name, except],
        |r| r.get(0),
    )?;
    let site_elsewhere: bool = kind == NodeKind::Site
        && conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM nodes WHERE account_id = ?1 AND kind = 'site' AND name = ?2
                           AND id != ?3 AND deleted_at IS NULL)",
            params![account.id, name, except],
            |r| r.get(0),
        )?;
    if in_folder || site_elsewhere {
        return Err(PlatformError::NameTaken(format!("the name {name:?}")));
    }
    Ok(())
}

/// The name rules, and at the top of the account no `sites-versions`: that is where a mirror
/// keeps its local backups (a client would refuse the node; better to refuse it here, clearly).
fn check_place(kind: NodeKind, name: &str, parent_id: i64) -> Result<()> {
    names::check(kind, name)?;
    if parent_id == 0 && name == crate::cache::VERSIONS_DIR {
        return Err(PlatformError::InvalidName(format!(
            "{name:?} at the top is reserved: it is where hyperclay keeps local backups; choose another name"
        )));
    }
    Ok(())
}
