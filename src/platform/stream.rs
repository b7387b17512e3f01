//! `GET stream`: Server-Sent Events. Each change is a `data:` frame with an `id:` line (its seq);
//! a reconnect with `Last-Event-ID` first replays the log after that id, then goes live, with no
//! change sent twice. A subscriber that falls too far behind is disconnected, so that it
//! reconnects and replays from the log instead of silently missing changes.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::auth::Paid;
use super::error::PlatformError;
use super::AppState;

pub async fn stream(
    State(platform): State<AppState>,
    Paid(account): Paid,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, PlatformError> {
    if !platform
        .stream_enabled
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return Err(PlatformError::Internal(
            "the event stream is switched off".into(),
        ));
    }
    let mut live = platform.store.subscribe();
    let last_id = match platform.plain {
        true => None,
        false => headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok()),
    };
    let replay = match last_id {
        Some(since) => {
            let (p, a) = (platform.clone(), account.clone());
            tokio::task::spawn_blocking(move || p.store.changes_since(&a, since, 1_000_000))
                .await
                .map_err(|e| PlatformError::Internal(e.to_string()))??
                .0
        }
        None => Vec::new(),
    };
    let plain = platform.plain;
    let delay_ms = platform.stream_delay_ms.clone();
    let mut stopping = platform.stopping.clone();
    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(256);
    tokio::spawn(async move {
        let mut last_sent = last_id.unwrap_or(0);
        for change in replay {
            let json = serde_json::to_string(&change).unwrap_or_default();
            last_sent = change.seq;
            if tx
                .send(Ok(frame(&json, Some(change.seq), plain)))
                .await
                .is_err()
            {
                return;
            }
        }
        loop {
            let received = tokio::select! {
                r = live.recv() => r,
                _ = stopping.wait_for(|s| *s) => return,
            };
            match received {
                Ok(f) if f.account_id != account.id => continue,
                Ok(f) => {
                    if let Some(seq) = f.seq {
                        if seq <= last_sent {
                            continue;
                        }
                        last_sent = seq;
                    }
                    let delay = delay_ms.load(std::sync::atomic::Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                    }
                    if tx.send(Ok(frame(&f.json, f.seq, plain))).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_))
                | Err(broadcast::error::RecvError::Closed) => {
                    return;
                }
            }
        }
    });
    let sse = Sse::new(ReceiverStream::new(rx));
    let keep_alive = match plain {
        true => KeepAlive::new().interval(std::time::Duration::from_secs(3600)),
        false => KeepAlive::new()
            .interval(platform.ping_interval)
            .text("ping"),
    };
    Ok(sse.keep_alive(keep_alive))
}

fn frame(json: &str, seq: Option<u64>, plain: bool) -> SseEvent {
    let event = SseEvent::default().data(json);
    match (seq, plain) {
        (Some(seq), false) => event.id(seq.to_string()),
        _ => event,
    }
}
