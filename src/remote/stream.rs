//! The event stream as a channel of typed items. It reconnects by itself (backing off 1, 2, 4 ... 30 s),
//! sends `Last-Event-ID` so a Part 2 platform replays what was missed, and says on each connect
//! whether that replay happened: when it did not (first connect, or a Part 1 platform), the
//! consumer must compare a fresh listing instead.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use tokio::sync::mpsc;

use super::error::RemoteError;
use super::sse::SseParser;
use super::Client;
use crate::protocol::Event;

/// What the stream reports.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// Connected. `replayed`: every change since the last id will arrive first, none missed.
    Connected { replayed: bool },
    /// A change. `seq` is its place in the change log (Part 2 only).
    Event { seq: Option<u64>, event: Event },
    /// Frames were dropped for their size: what they said must come from a listing.
    Dropped,
    /// The connection ended; the stream reconnects by itself. `closed_by_platform`: the
    /// platform ended it (a restart, a deploy), rather than the connection failing or going
    /// silent.
    Disconnected {
        error: RemoteError,
        closed_by_platform: bool,
    },
}

/// A Part 2 platform pings every 15 s: silence this long means the connection is dead (a
/// half-open connection, a NAT that forgot it), and the stream reconnects, replaying from its
/// last id.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(45);
/// Reconnects wait 1, 2, 4 ... 30 s (each ±20 %, so that many clients dropped at once by a
/// restarting platform do not all come back in the same instant).
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that lasted this long was healthy: the next reconnect starts from the first wait
/// again. (A platform that accepts and drops at once keeps backing off.)
const HEALTHY_CONNECTION: Duration = Duration::from_secs(30);
/// Why a stream ended when the platform closed it.
const CLOSED_BY_PLATFORM: &str = "the platform closed the event stream";
/// How long the platform may take to answer a stream request (its headers).
const STREAM_ANSWER_LIMIT: Duration = Duration::from_secs(20);

/// Starts following the platform's event stream from `last_id`; a Part 2 stream silent for
/// `silence_limit` is taken for dead. Stops when the receiver is dropped.
pub fn subscribe(
    client: Arc<Client>,
    last_id: Option<u64>,
    silence_limit: Duration,
) -> mpsc::Receiver<StreamItem> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let mut last_id = last_id;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = tokio::time::Instant::now();
            let error = tokio::select! {
                e = follow(&client, &mut last_id, &tx, silence_limit) => e,
                _ = tx.closed() => return,
            };
            if started.elapsed() >= HEALTHY_CONNECTION {
                backoff = FIRST_BACKOFF;
            }
            let closed_by_platform =
                matches!(&error, RemoteError::Unreachable(why) if why == CLOSED_BY_PLATFORM);
            let disconnected = StreamItem::Disconnected {
                error,
                closed_by_platform,
            };
            if tx.send(disconnected).await.is_err() {
                return;
            }
            let jitter = rand::random::<f64>() * 0.4 + 0.8;
            tokio::select! {
                _ = tokio::time::sleep(backoff.mul_f64(jitter)) => {}
                _ = tx.closed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
    rx
}

/// One connection: runs until it ends, and answers why.
async fn follow(
    client: &Client,
    last_id: &mut Option<u64>,
    tx: &mpsc::Sender<StreamItem>,
    silence_limit: Duration,
) -> RemoteError {
    let features = match client.features().await {
        Ok(f) => f,
        Err(e) => return e,
    };
    let mut request = client
        .request_untimed(Method::GET, "stream")
        .header("Accept", "text/event-stream");
    let resuming = features.changes && last_id.is_some();
    if let (true, Some(id)) = (resuming, *last_id) {
        request = request.header("Last-Event-ID", id.to_string());
    }
    // The request has no time limit (the stream lasts), but its answer must come: a pooled
    // connection that died silently would otherwise hold the stream forever.
    let response = match tokio::time::timeout(STREAM_ANSWER_LIMIT, client.send(request)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return e,
        Err(_) => {
            return RemoteError::Unreachable("the event stream was not answered in time".into())
        }
    };
    if tx
        .send(StreamItem::Connected { replayed: resuming })
        .await
        .is_err()
    {
        return RemoteError::Protocol("the receiver is gone".into());
    }
    let mut body = response.bytes_stream();
    let mut parser = SseParser::default();
    loop {
        let next = match features.changes {
            true => match tokio::time::timeout(silence_limit, body.next()).await {
                Ok(n) => n,
                Err(_) => {
                    // The path to the platform is likely dead: so are the pooled connections.
                    client.reset_connections();
                    return RemoteError::Unreachable("the event stream went silent".into());
                }
            },
            false => body.next().await,
        };
        let chunk = match next {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => return e.into(),
            None => return RemoteError::Unreachable(CLOSED_BY_PLATFORM.into()),
        };
        let frames = parser.feed(&chunk);
        if parser.take_dropped() > 0 {
            tracing::warn!(
                limit = super::sse::MAX_FRAME,
                "the platform sent an event larger than the limit: dropped; comparing a listing instead"
            );
            if tx.send(StreamItem::Dropped).await.is_err() {
                return RemoteError::Protocol("the receiver is gone".into());
            }
        }
        for frame in frames {
            let seq = frame
                .id
                .as_deref()
                .and_then(|id| id.trim().parse::<u64>().ok());
            let event: Event = match serde_json::from_str(&frame.data) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an event the client does not understand");
                    continue;
                }
            };
            if let Some(seq) = seq {
                *last_id = Some(seq);
            }
            if tx.send(StreamItem::Event { seq, event }).await.is_err() {
                return RemoteError::Protocol("the receiver is gone".into());
            }
        }
    }
}
