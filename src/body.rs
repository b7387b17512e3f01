//! Reading request bodies with a hard size limit, for both servers (the dev platform and the local
//! server). A body over the limit is never buffered: at most the limit is kept, the excess is read
//! and dropped (up to [`DRAIN_CAP`], so that an ordinary client sees the 413 answer instead of a
//! reset connection), and then the request is refused.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use futures::StreamExt;

/// How much of an oversized body is read and dropped before answering.
pub const DRAIN_CAP: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than the limit")]
    TooLarge,
    #[error("could not read the body: {0}")]
    Unreadable(String),
}

/// Reads at most `limit` bytes of `body`.
pub async fn read_capped(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > limit as u64) {
        drain(&mut stream, 0).await;
        return Err(BodyError::TooLarge);
    }
    let mut kept = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Unreadable(e.to_string()))?;
        if kept.len() + chunk.len() > limit {
            let seen = (kept.len() + chunk.len()) as u64;
            drop(kept);
            drain(&mut stream, seen).await;
            return Err(BodyError::TooLarge);
        }
        kept.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(kept))
}

async fn drain(stream: &mut axum::body::BodyDataStream, mut seen: u64) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while seen < DRAIN_CAP {
            match stream.next().await {
                Some(Ok(chunk)) => seen += chunk.len() as u64,
                _ => break,
            }
        }
    })
    .await;
}
