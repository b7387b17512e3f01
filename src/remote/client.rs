//! A typed async client for the platform's sync API. It learns what the platform offers from
//! `GET status` and falls back to Part 1 where an addition is missing: base64 JSON instead of raw
//! bytes, the listing instead of `changes`.

use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::error::RemoteError;

/// How long a request may take before the platform counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the head of an answer may take once the request is sent (plus the upload's time at
/// the slowest line): a request that went out on a connection that died without a word is
/// abandoned as offline long before the whole-request limit.
const ANSWER_HEAD_LIMIT: Duration = Duration::from_secs(15);

/// What the platform may send, at most: a hostile or broken platform (or anything between us
/// and it) must not grow memory or disk without end. Over a limit, the transfer is dropped and
/// the reason logged.
pub mod limits {
    use crate::protocol::MAX_CONTENT_BYTES;
    use std::time::Duration;

    /// An answer that is only metadata (status, a create's, put's or rename's answer): a few
    /// hundred bytes in practice; 1 MiB is thousands of times that.
    pub const SMALL_ANSWER: u64 = 1024 * 1024;
    /// An error body: only its first 200 characters are ever shown.
    pub const ERROR_BODY: u64 = 64 * 1024;
    /// A content answer in JSON: 20 MiB of content as base64 (4/3 of it) or as a JSON string
    /// (escaping quotes and newlines at most doubles real HTML), plus the other fields.
    pub const CONTENT_ANSWER: u64 = 2 * MAX_CONTENT_BYTES + 1024 * 1024;
    /// A raw download: the content itself, which the platform never stores over 20 MiB.
    pub const RAW_CONTENT: u64 = MAX_CONTENT_BYTES;
    /// A listing (or a page of changes, or a list of versions): a node is about 200 bytes of
    /// JSON and under 500 with the longest names, so this holds 100,000 nodes (an account ten
    /// times the benchmarks' largest). A page of changes over it is replaced by a listing.
    pub const LISTING: u64 = 48 * 1024 * 1024;
    /// Bytes may stop flowing for this long before a transfer is abandoned (beside the total
    /// time limits): a platform that trickles a byte every 20 s can't hold a fetch forever.
    pub const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);
}
/// Content transfers get longer, as if over a 400 kbit/s line: a whole 20 MiB file then has
/// about 7 minutes more.
const SLOWEST_LINE_BYTES_PER_SEC: u64 = 50_000;
use crate::protocol::PlatformTime;
use crate::protocol::{
    self, decode_content, encode_content, names, ChangesResponse, Checksum, ContentResponse,
    CreateNodeRequest, CreateNodeResponse, CreatedNode, DeleteResponse, ErrorBody, LiveSnapshot,
    MoveRequest, MoveResponse, NodeId, NodeKind, NodesResponse, PutContentRequest,
    PutContentResponse, RenameRequest, RenameResponse, StatusResponse, TokenResponse, Version,
    VersionContentResponse, VersionsResponse,
};

type Result<T> = std::result::Result<T, RemoteError>;

/// How the client proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A platform API key (`hcsk_...`), sent as `X-API-Key`.
    ApiKey(String),
    /// A signed-in token, sent as `Authorization: Bearer`.
    Token(String),
}

impl std::fmt::Debug for Credential {
    // Never print a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::ApiKey(_) => f.write_str("ApiKey(..)"),
            Credential::Token(_) => f.write_str("Token(..)"),
        }
    }
}

/// The Part 2 additions a platform offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    pub changes: bool,
    pub raw: bool,
    pub versions: bool,
    pub token: bool,
}

impl Features {
    fn from_status(status: &StatusResponse) -> Features {
        let has = |name: &str| {
            status
                .features
                .as_ref()
                .is_some_and(|f| f.iter().any(|x| x == name))
        };
        Features {
            changes: has("changes"),
            raw: has("raw"),
            versions: has("versions"),
            token: has("token"),
        }
    }
}

/// What the platform says of content it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentMeta {
    pub kind: NodeKind,
    pub checksum: Checksum,
    pub modified_at: PlatformTime,
    pub size: u64,
}

pub struct Client {
    /// Replaced (a fresh connection pool) when the network changes: pooled connections made on
    /// the old network may be dead without a word.
    http: RwLock<reqwest::Client>,
    url: String,
    credential: RwLock<Credential>,
    features: RwLock<Option<Features>>,
    /// Where the address came from (for status: "HYPERCLAY_URL in the environment").
    url_source: RwLock<String>,
    /// Bumped when the platform comes back after being away: requests sent before are
    /// abandoned and sent again (one may hang on a connection of the old network).
    generation: tokio::sync::watch::Sender<u64>,
    /// `limits::PROGRESS_TIMEOUT`, shortened by tests (`set_progress_timeout`).
    progress_timeout: RwLock<Duration>,
}

fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        // The platform's API never redirects. Following one would send `X-API-Key` (reqwest
        // drops only `Authorization` on a cross-host redirect, not a custom header) and, with a
        // 307/308, the body of a write to whatever address a platform or proxy names: none is
        // followed, and `send` turns a 3xx into `RemoteError::Redirected`.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("hyperclay/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RemoteError::Protocol(e.to_string()))
}

impl Client {
    /// A client for the platform at `url` (`HYPERCLAY_URL`, e.g. `https://hyperclay.com`).
    pub fn new(url: &str, credential: Credential) -> Result<Client> {
        Ok(Client {
            http: RwLock::new(http_client()?),
            url: url.trim_end_matches('/').to_string(),
            credential: RwLock::new(credential),
            features: RwLock::new(None),
            progress_timeout: RwLock::new(limits::PROGRESS_TIMEOUT),
            url_source: RwLock::new(String::new()),
            generation: tokio::sync::watch::channel(0).0,
        })
    }

    /// Abandons every request under way: each answers `RemoteError::Abandoned` at once, and its
    /// caller sends it again. Called when the platform answers again after being away.
    pub fn abandon_requests(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn set_url_source(&self, source: String) {
        *self.url_source.write().unwrap_or_else(|p| p.into_inner()) = source;
    }

    pub fn url_source(&self) -> String {
        self.url_source
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How long a transfer may go without a byte before it is abandoned.
    pub fn set_progress_timeout(&self, limit: Duration) {
        *self
            .progress_timeout
            .write()
            .unwrap_or_else(|p| p.into_inner()) = limit;
    }

    fn progress_timeout(&self) -> Duration {
        *self
            .progress_timeout
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Reads a whole answer body of at most `limit` bytes, each chunk within the progress limit.
    async fn read_limited(
        &self,
        response: Response,
        limit: u64,
        what: &'static str,
    ) -> Result<Vec<u8>> {
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(RemoteError::Oversized { what, limit });
        }
        let mut body = response.bytes_stream();
        // The chunks are kept as they came and joined once at the end: a growing buffer would
        // copy itself on each doubling and briefly hold 1.5 times the limit.
        let mut chunks = Vec::new();
        let mut total = 0u64;
        loop {
            let Some(chunk) = self.next_chunk(&mut body, what).await? else {
                return Ok(chunks.concat());
            };
            total += chunk.len() as u64;
            if total > limit {
                return Err(RemoteError::Oversized { what, limit });
            }
            chunks.push(chunk);
        }
    }

    /// The next chunk of a body, or a stalled-transfer error after the progress limit.
    async fn next_chunk(
        &self,
        body: &mut (impl futures::Stream<Item = reqwest::Result<Bytes>> + Unpin),
        what: &'static str,
    ) -> Result<Option<Bytes>> {
        match tokio::time::timeout(self.progress_timeout(), body.next()).await {
            Err(_) => Err(RemoteError::Unreachable(format!(
                "the platform stopped sending {what} for {} s",
                self.progress_timeout().as_secs()
            ))),
            Ok(None) => Ok(None),
            Ok(Some(chunk)) => Ok(Some(chunk?)),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops every pooled connection: requests from now on open new ones. Requests under way
    /// finish on the old ones (or meet their time limits).
    pub fn reset_connections(&self) {
        match http_client() {
            Ok(fresh) => *self.http.write().unwrap_or_else(|p| p.into_inner()) = fresh,
            Err(e) => tracing::warn!(error = %e, "could not renew the platform connections"),
        }
    }

    pub fn credential(&self) -> Credential {
        self.credential
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_credential(&self, credential: Credential) {
        *self.credential.write().unwrap_or_else(|p| p.into_inner()) = credential;
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}/_/sync/{}", self.url, path)
    }

    /// A request that must finish within `REQUEST_TIMEOUT`: a platform that accepts and then
    /// never answers (a hung server, a half-open connection) counts as unreachable instead of
    /// stalling a push forever.
    pub(super) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_untimed(method, path).timeout(REQUEST_TIMEOUT)
    }

    /// A request carrying or fetching up to `bytes`: the time limit grows with the size, so a
    /// 20 MiB upload on a slow line is not cut.
    fn transfer(&self, method: Method, path: &str, bytes: u64) -> RequestBuilder {
        self.request_untimed(method, path)
            .timeout(REQUEST_TIMEOUT + Duration::from_secs(bytes / SLOWEST_LINE_BYTES_PER_SEC))
    }

    /// A request without a time limit (the event stream, which has its own silence limit).
    pub(super) fn request_untimed(&self, method: Method, path: &str) -> RequestBuilder {
        let http = self.http.read().unwrap_or_else(|p| p.into_inner()).clone();
        let builder = http.request(method, self.endpoint(path));
        match self.credential() {
            Credential::ApiKey(key) => builder.header("X-API-Key", key),
            Credential::Token(token) => builder.bearer_auth(token),
        }
    }

    /// Sends and turns any non-2xx answer into a typed error.
    pub(super) async fn send(&self, builder: RequestBuilder) -> Result<Response> {
        self.send_sized(builder, 0).await
    }

    /// `send` for a request carrying `upload_bytes`: its answer's head may take the upload's time
    /// at the slowest line longer.
    async fn send_sized(&self, builder: RequestBuilder, upload_bytes: u64) -> Result<Response> {
        let head_limit =
            ANSWER_HEAD_LIMIT + Duration::from_secs(upload_bytes / SLOWEST_LINE_BYTES_PER_SEC);
        // Abandoned once (the platform came back): sent again at once, here, for every caller.
        let mut builder = builder;
        let mut again = builder.try_clone();
        let response = loop {
            let mut generation = self.generation.subscribe();
            generation.borrow_and_update();
            tokio::select! {
                answer = tokio::time::timeout(head_limit, builder.send()) => match answer {
                    Ok(answer) => break answer?,
                    Err(_) => {
                        return Err(RemoteError::Unreachable(format!(
                            "no answer within {} s",
                            head_limit.as_secs()
                        )))
                    }
                },
                _ = generation.changed() => match again.take() {
                    Some(retry) => builder = retry,
                    None => return Err(RemoteError::Abandoned),
                },
            }
        };
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            let to = redirect_target(response.url(), response.headers());
            tracing::warn!(status, to = %to, "the platform answered with a redirect: not followed");
            return Err(RemoteError::Redirected { status, to });
        }
        let text = self
            .read_limited(response, limits::ERROR_BODY, "an error answer")
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let body: ErrorBody = serde_json::from_str(&text).unwrap_or_else(|_| ErrorBody {
            msg: Some(text.chars().take(200).collect()),
            ..ErrorBody::default()
        });
        Err(RemoteError::from_answer(status, &body))
    }

    /// An answer of at most `SMALL_ANSWER` bytes, as JSON.
    async fn json<T: DeserializeOwned>(&self, builder: RequestBuilder) -> Result<T> {
        self.json_limited(builder, limits::SMALL_ANSWER, "an answer")
            .await
    }

    async fn json_limited<T: DeserializeOwned>(
        &self,
        builder: RequestBuilder,
        limit: u64,
        what: &'static str,
    ) -> Result<T> {
        self.json_sized(builder, 0, limit, what).await
    }

    async fn json_sized<T: DeserializeOwned>(
        &self,
        builder: RequestBuilder,
        upload_bytes: u64,
        limit: u64,
        what: &'static str,
    ) -> Result<T> {
        let response = self.send_sized(builder, upload_bytes).await?;
        let bytes = self.read_limited(response, limit, what).await?;
        serde_json::from_slice(&bytes).map_err(|e| RemoteError::Protocol(e.to_string()))
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call_sized(method, path, body, 0).await
    }

    /// `call` for a body carrying `bytes` of content (its time limit grows with it).
    async fn call_sized<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        bytes: u64,
    ) -> Result<T> {
        self.json_sized(
            self.transfer(method, path, bytes).json(body),
            bytes,
            limits::SMALL_ANSWER,
            "an answer",
        )
        .await
    }

    /// `GET status`; also learns the platform's features.
    pub async fn status(&self) -> Result<StatusResponse> {
        let status: StatusResponse = self.json(self.request(Method::GET, "status")).await?;
        *self.features.write().unwrap_or_else(|p| p.into_inner()) =
            Some(Features::from_status(&status));
        Ok(status)
    }

    /// What the platform offers (asks `GET status` once).
    pub async fn features(&self) -> Result<Features> {
        if let Some(f) = *self.features.read().unwrap_or_else(|p| p.into_inner()) {
            return Ok(f);
        }
        self.status().await?;
        Ok(self
            .features
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_default())
    }

    /// `GET nodes`: every live node (and the cursor it reflects, where offered).
    pub async fn nodes(&self) -> Result<NodesResponse> {
        self.nodes_at_most(usize::MAX).await
    }

    /// `GET nodes`, keeping at most `max_nodes` nodes: the shallowest, in listing order; the
    /// others are named only by id (`NodesResponse::left_out`). Parsed as it arrives
    /// (`listing.rs`), under the listing's size limit and the progress limit.
    pub async fn nodes_at_most(&self, max_nodes: usize) -> Result<NodesResponse> {
        let (what, limit) = ("the listing", limits::LISTING);
        let response = self.send(self.request(Method::GET, "nodes")).await?;
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(RemoteError::Oversized { what, limit });
        }
        let (tx, rx) = tokio::sync::mpsc::channel(super::listing::CHUNKS_AHEAD);
        let parser = tokio::task::spawn_blocking(move || {
            super::listing::parse(super::listing::Chunks::new(rx), max_nodes)
        });
        let mut body = response.bytes_stream();
        let mut total = 0u64;
        let read = async {
            while let Some(chunk) = self.next_chunk(&mut body, what).await? {
                total += chunk.len() as u64;
                if total > limit {
                    return Err(RemoteError::Oversized { what, limit });
                }
                if tx.send(chunk).await.is_err() {
                    // The parser stopped (the body is not a listing): its error says why.
                    break;
                }
            }
            Ok(())
        }
        .await;
        // The end of the body (or of reading it) is the end of the parser's input.
        drop(tx);
        let parsed = parser
            .await
            .map_err(|e| RemoteError::Protocol(format!("the listing's parser stopped: {e}")))?;
        // A body cut short by a limit is that limit's error, not the parser's.
        read?;
        parsed.map_err(|e| RemoteError::Protocol(e.to_string()))
    }

    /// `POST nodes`: creates a node (with its content, for files). The name is checked first.
    pub async fn create(
        &self,
        kind: NodeKind,
        name: &str,
        parent_id: NodeId,
        content: Option<&[u8]>,
    ) -> Result<CreatedNode> {
        self.create_edited(kind, name, parent_id, content, None)
            .await
    }

    /// `create`, saying when the content was edited (the platform's clock; Part 2 `editedAt`).
    pub async fn create_edited(
        &self,
        kind: NodeKind,
        name: &str,
        parent_id: NodeId,
        content: Option<&[u8]>,
        edited_at: Option<&PlatformTime>,
    ) -> Result<CreatedNode> {
        check_name(kind, name)?;
        if content.is_some_and(|c| c.len() as u64 > protocol::MAX_CONTENT_BYTES) {
            return Err(RemoteError::TooLarge);
        }
        let request = CreateNodeRequest {
            kind,
            name: name.to_string(),
            parent_id: Some(parent_id),
            content: content.map(|c| encode_content(kind, c)),
            modified_at: None,
            edited_at: edited_at.cloned(),
        };
        let size = content.map_or(0, |c| c.len() as u64);
        let created: CreateNodeResponse = self
            .call_sized(Method::POST, "nodes", &request, size)
            .await?;
        Ok(created.node)
    }

    /// `GET nodes/:id/content`, whole, in memory (raw where offered).
    pub async fn content(&self, id: NodeId) -> Result<(ContentMeta, Vec<u8>)> {
        let mut bytes = Vec::new();
        let meta = self.download(id, &mut bytes).await?;
        Ok((meta, bytes))
    }

    /// Streams a node's content into `out`: raw chunks where the platform offers `raw`, so that a
    /// large upload is never whole in memory; the JSON answer otherwise.
    pub async fn download<W: AsyncWrite + Unpin>(
        &self,
        id: NodeId,
        out: &mut W,
    ) -> Result<ContentMeta> {
        if self.features().await?.raw {
            let response = self
                .send(self.transfer(
                    Method::GET,
                    &format!("nodes/{id}/content?raw=1"),
                    protocol::MAX_CONTENT_BYTES,
                ))
                .await?;
            let meta = raw_meta(response.headers())?;
            let oversized = RemoteError::Oversized {
                what: "content",
                limit: limits::RAW_CONTENT,
            };
            if response
                .content_length()
                .is_some_and(|n| n > limits::RAW_CONTENT)
            {
                return Err(oversized);
            }
            let mut body = response.bytes_stream();
            let mut written = 0u64;
            // A body that stops flowing is a dead connection, long before the whole limit.
            while let Some(chunk) = self.next_chunk(&mut body, "content").await? {
                written += chunk.len() as u64;
                if written > limits::RAW_CONTENT {
                    // The caller discards what was written (a temp file).
                    return Err(oversized);
                }
                out.write_all(&chunk)
                    .await
                    .map_err(|e| RemoteError::Protocol(format!("writing: {e}")))?;
            }
            out.flush()
                .await
                .map_err(|e| RemoteError::Protocol(format!("writing: {e}")))?;
            return Ok(ContentMeta {
                size: written,
                ..meta
            });
        }
        let answer: ContentResponse = self
            .json_limited(
                self.transfer(
                    Method::GET,
                    &format!("nodes/{id}/content"),
                    protocol::MAX_CONTENT_BYTES,
                ),
                limits::CONTENT_ANSWER,
                "content",
            )
            .await?;
        let bytes = decode_content(answer.node_type, &answer.content)
            .map_err(|e| RemoteError::Protocol(format!("content is not base64: {e}")))?;
        out.write_all(&bytes)
            .await
            .map_err(|e| RemoteError::Protocol(format!("writing: {e}")))?;
        out.flush()
            .await
            .map_err(|e| RemoteError::Protocol(format!("writing: {e}")))?;
        Ok(ContentMeta {
            kind: answer.node_type,
            checksum: answer.checksum,
            modified_at: answer.edited_at.unwrap_or(answer.modified_at),
            size: bytes.len() as u64,
        })
    }

    /// `PUT nodes/:id/content`. With `base`, the platform writes only if it still holds `base`
    /// (where it offers optimistic writes); otherwise the last write wins.
    pub async fn put_content(
        &self,
        id: NodeId,
        kind: NodeKind,
        content: Bytes,
        base: Option<&Checksum>,
    ) -> Result<PutContentResponse> {
        self.put_content_edited(id, kind, content, base, None, None)
            .await
    }

    /// `put_content`, saying when the content was edited (the platform's clock; Part 2
    /// `editedAt`, which decides "the later edit wins" on the other devices), and with the
    /// page's live-sync snapshot when an open tab relayed one (sent as JSON: a snapshot has no
    /// place in the raw body's headers).
    pub async fn put_content_edited(
        &self,
        id: NodeId,
        kind: NodeKind,
        content: Bytes,
        base: Option<&Checksum>,
        edited_at: Option<&PlatformTime>,
        live: Option<LiveSnapshot>,
    ) -> Result<PutContentResponse> {
        if content.len() as u64 > protocol::MAX_CONTENT_BYTES {
            return Err(RemoteError::TooLarge);
        }
        let size = content.len() as u64;
        if live.is_none() && self.features().await?.raw {
            let mut request = self
                .transfer(
                    Method::PUT,
                    &format!("nodes/{id}/content?raw=1"),
                    content.len() as u64,
                )
                .header("Content-Type", "application/octet-stream")
                .body(content);
            if let Some(base) = base {
                request = request.header("X-Base-Checksum", base.as_str());
            }
            if let Some(edited_at) = edited_at {
                request = request.header("X-Edited-At", edited_at.as_str());
            }
            return self
                .json_sized(request, size, limits::SMALL_ANSWER, "an answer")
                .await;
        }
        let (snapshot_html, sender_id) = match live {
            Some(l) => (Some(l.html), Some(l.sender)),
            None => (None, None),
        };
        let request = PutContentRequest {
            content: encode_content(kind, &content),
            modified_at: None,
            base_checksum: base.cloned(),
            edited_at: edited_at.cloned(),
            snapshot_html,
            sender_id,
            user_driven: None,
        };
        self.call_sized(
            Method::PUT,
            &format!("nodes/{id}/content"),
            &request,
            content.len() as u64,
        )
        .await
    }

    /// `PATCH nodes/:id/rename`. The new name is checked first.
    pub async fn rename(
        &self,
        id: NodeId,
        kind: NodeKind,
        new_name: &str,
    ) -> Result<RenameResponse> {
        check_name(kind, new_name)?;
        let request = RenameRequest {
            new_name: new_name.to_string(),
        };
        self.call(Method::PATCH, &format!("nodes/{id}/rename"), &request)
            .await
    }

    /// `PATCH nodes/:id/move`, optionally renaming in the same step.
    pub async fn move_node(
        &self,
        id: NodeId,
        kind: NodeKind,
        target_parent_id: NodeId,
        new_name: Option<&str>,
    ) -> Result<MoveResponse> {
        if let Some(name) = new_name {
            check_name(kind, name)?;
        }
        let request = MoveRequest {
            target_parent_id,
            new_name: new_name.map(str::to_string),
        };
        self.call(Method::PATCH, &format!("nodes/{id}/move"), &request)
            .await
    }

    /// `DELETE nodes/:id`. Only tests and tools use it: a mount never deletes across.
    pub async fn delete(&self, id: NodeId, cascade: bool) -> Result<DeleteResponse> {
        let path = match cascade {
            true => format!("nodes/{id}?cascade=true"),
            false => format!("nodes/{id}"),
        };
        self.json(self.request(Method::DELETE, &path)).await
    }

    /// `GET changes?since=N&limit=M` (Part 2).
    pub async fn changes(&self, since: u64, limit: u64) -> Result<ChangesResponse> {
        if !self.features().await?.changes {
            return Err(RemoteError::Unsupported("a change cursor"));
        }
        self.json_limited(
            self.request(Method::GET, &format!("changes?since={since}&limit={limit}")),
            limits::LISTING,
            "a page of changes",
        )
        .await
    }

    /// `GET nodes/:id/versions` (Part 2): newest first.
    pub async fn versions(&self, id: NodeId) -> Result<Vec<Version>> {
        if !self.features().await?.versions {
            return Err(RemoteError::Unsupported("versions"));
        }
        let answer: VersionsResponse = self
            .json_limited(
                self.request(Method::GET, &format!("nodes/{id}/versions")),
                limits::LISTING,
                "the versions",
            )
            .await?;
        Ok(answer.versions)
    }

    /// `GET nodes/:id/versions/:versionId` (Part 2).
    pub async fn version(&self, id: NodeId, version_id: u64) -> Result<(Version, Vec<u8>)> {
        if !self.features().await?.versions {
            return Err(RemoteError::Unsupported("versions"));
        }
        let answer: VersionContentResponse = self
            .json_limited(
                self.request(Method::GET, &format!("nodes/{id}/versions/{version_id}")),
                limits::CONTENT_ANSWER,
                "a version",
            )
            .await?;
        let bytes = decode_content(answer.node_type, &answer.content)
            .map_err(|e| RemoteError::Protocol(format!("content is not base64: {e}")))?;
        let version = Version {
            version_id: answer.version_id,
            created_at: answer.created_at,
            size: answer.size,
            checksum: answer.checksum,
        };
        Ok((version, bytes))
    }

    /// `POST control`: best effort browser traffic.
    pub async fn control(&self, envelope: &serde_json::Value) -> Result<()> {
        self.send(self.request(Method::POST, "control").json(envelope))
            .await?;
        Ok(())
    }

    /// `POST token/refresh`: a fresh 10-day token, which this client uses from now on.
    pub async fn refresh_token(&self) -> Result<TokenResponse> {
        if !self.features().await?.token {
            return Err(RemoteError::Unsupported("token refresh"));
        }
        let answer: TokenResponse = self
            .json(self.request(Method::POST, "token/refresh"))
            .await?;
        self.set_credential(Credential::Token(answer.token.clone()));
        Ok(answer)
    }
}

fn check_name(kind: NodeKind, name: &str) -> Result<()> {
    names::check(kind, name).map_err(|e| RemoteError::InvalidName(format!("{name:?}: {}", e.rule)))
}

/// Where a redirect points, for the message: the scheme, host and port only (the path and
/// query may carry anything), made printable; relative locations resolve against the request.
fn redirect_target(request_url: &reqwest::Url, headers: &HeaderMap) -> String {
    let Some(location) = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
    else {
        return "no address".into();
    };
    match request_url.join(location) {
        Ok(to) => {
            let origin = to.origin().ascii_serialization();
            protocol::printable(&origin, 200)
        }
        Err(_) => protocol::printable(location, 200),
    }
}

fn raw_meta(headers: &HeaderMap) -> Result<ContentMeta> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| RemoteError::Protocol(format!("raw content without {name}")))
    };
    let kind = NodeKind::parse(&text("x-node-type")?)
        .ok_or_else(|| RemoteError::Protocol("unknown X-Node-Type".into()))?;
    Ok(ContentMeta {
        kind,
        checksum: Checksum::new(text("x-checksum")?),
        // The edit's time where the platform keeps one (Part 2), else when it stored it.
        modified_at: PlatformTime::new(text("x-edited-at").or_else(|_| text("x-modified-at"))?),
        size: 0,
    })
}
