//! The platform's checksum: the first 16 lowercase hex digits of SHA-256 over the stored bytes.

use sha2::{Digest, Sha256};

/// Checksum of empty content.
pub const EMPTY_CHECKSUM: &str = "e3b0c44298fc1c14";

/// Checksum of `bytes` as the platform computes it.
pub fn checksum(bytes: &[u8]) -> String {
    let mut c = Checksummer::default();
    c.update(bytes);
    c.finish()
}

/// Incremental checksum, for content streamed in chunks (never held whole in memory).
#[derive(Default, Clone)]
pub struct Checksummer(Sha256);

impl Checksummer {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> String {
        let digest = self.0.finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_content_matches_the_documented_value() {
        assert_eq!(checksum(b""), EMPTY_CHECKSUM);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let mut c = Checksummer::default();
        c.update(b"hello ");
        c.update(b"world");
        assert_eq!(c.finish(), checksum(b"hello world"));
        assert_eq!(checksum(b"hello world"), "b94d27b9934d3e08");
    }
}
