//! The wire contract of the platform's sync API (docs/sync-api.md), shared by the client
//! (`remote`) and the dev platform (`platform`) so that both sides agree by construction:
//! JSON shapes, name rules, checksums, limits. Pure data and functions: no I/O here.

pub mod checksum;
pub mod names;
pub mod types;

pub use checksum::{checksum, Checksum, Checksummer, EMPTY_CHECKSUM};
pub use names::{NameError, NodeKind};
pub use types::*;

/// The largest content the platform stores: 20 MiB.
pub const MAX_CONTENT_BYTES: u64 = 20 * 1024 * 1024;

/// The deepest folder nesting the platform accepts.
pub const MAX_FOLDER_DEPTH: usize = 5;

/// The exact text the platform answers when the plan's site quota is used up.
pub const OUT_OF_SITES_MSG: &str = "You've run out of sites. We can't sync any more sites.";

/// Text from the platform made safe to print on a terminal or in the log: control characters
/// (terminal escapes among them) become `?`, and at most `max_chars` characters are kept.
pub fn printable(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > max_chars {
        out.push('…');
    }
    out
}
