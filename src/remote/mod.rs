//! The only code that speaks HTTP to the platform: a typed client for every endpoint of
//! docs/sync-api.md with the fallbacks for a platform that serves only Part 1, and the event
//! stream, which reconnects by itself and resumes from its last id.

mod client;
mod error;
mod listing;
pub mod sse;
mod stream;

pub use client::{limits, Client, ContentMeta, Credential, Features};
pub use error::RemoteError;
pub use stream::{subscribe, StreamItem, SILENCE_LIMIT};
