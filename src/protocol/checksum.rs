//! The platform's checksum: the first 16 lowercase hex digits of SHA-256 over the stored bytes.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A content checksum, as computed here ([`checksum`]) or as the platform sent it. What the
/// platform sends is kept as it came, never checked nor normalised: two checksums are the same
/// exactly when their text is. Its own type so that a checksum can't be passed where a time or
/// a node id is wanted; on the wire and in the index it is the plain text.
///
/// `Default` is the empty text: what a missing checksum read as while it was a `String`.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Checksum(Cow<'static, str>);

/// Checksum of empty content.
pub const EMPTY_CHECKSUM: Checksum = Checksum(Cow::Borrowed("e3b0c44298fc1c14"));

impl Checksum {
    /// A checksum as given (from the platform, a test, the index): kept as it is.
    pub fn new(text: impl Into<String>) -> Checksum {
        Checksum(Cow::Owned(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0.into_owned()
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// As the plain string it was before it had a type (the log reads the same).
impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<String> for Checksum {
    fn from(text: String) -> Checksum {
        Checksum::new(text)
    }
}

impl From<&str> for Checksum {
    fn from(text: &str) -> Checksum {
        Checksum::new(text)
    }
}

impl PartialEq<str> for Checksum {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Checksum {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Checksum {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Checksum> for str {
    fn eq(&self, other: &Checksum) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Checksum> for &str {
    fn eq(&self, other: &Checksum) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Checksum> for String {
    fn eq(&self, other: &Checksum) -> bool {
        self == other.as_str()
    }
}

/// Stored as TEXT, as the index always kept it.
impl rusqlite::types::ToSql for Checksum {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(
            rusqlite::types::ValueRef::Text(self.as_str().as_bytes()),
        ))
    }
}

impl rusqlite::types::FromSql for Checksum {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        String::column_result(value).map(Checksum::new)
    }
}

/// Checksum of `bytes` as the platform computes it.
pub fn checksum(bytes: &[u8]) -> Checksum {
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

    pub fn finish(self) -> Checksum {
        let digest = self.0.finalize();
        Checksum::new(
            digest[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        )
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

    #[test]
    fn the_index_and_the_wire_keep_the_plain_text() {
        let odd = Checksum::new("not hex \u{1b}[31m");
        assert_eq!(
            serde_json::to_string(&odd).unwrap(),
            r#""not hex \u001b[31m""#
        );
        let back: Checksum = serde_json::from_str(r#""not hex \u001b[31m""#).unwrap();
        assert_eq!(back, odd);
        let db = rusqlite::Connection::open_in_memory().unwrap();
        let (text, typ): (String, String) = db
            .query_row("SELECT ?1, typeof(?1)", [&odd], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((text.as_str(), typ.as_str()), (odd.as_str(), "text"));
        let read: Checksum = db.query_row("SELECT ?1", [&odd], |r| r.get(0)).unwrap();
        assert_eq!(read, odd);
    }
}
