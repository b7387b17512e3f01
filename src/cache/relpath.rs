//! The one path type the mirror accepts: a relative path whose every segment passed
//! [`check_segment`]. It can only be built by that validation (or by joining validated parts), so
//! no name from the platform, the kernel or the index can name a file outside the mirror: there is
//! no `..`, no absolute path, no separator hidden in a name, no NUL.
//!
//! [`check_platform_name`] adds what a name coming from the platform may not be: one of ours
//! (`.hyperclay`, `sites-versions` at the top) or any name starting with `.` (local-only here, so
//! the platform can never plant a `.bashrc`, a `.git/hooks/...` or an index beside ours).

use std::fmt;
use std::ops::Deref;

/// The longest segment a Linux file system takes (NAME_MAX).
pub const MAX_SEGMENT_BYTES: usize = 255;
/// The deepest path accepted; deeper than any platform tree (5 folder levels) or local tree the
/// index keeps, so a cycle or a damaged index can never make a path without end.
pub const MAX_DEPTH: usize = 256;

const TOO_LONG: &str = "a name longer than 255 bytes";
const RESERVED: &str = "the name of hyperclay's own folder (the index lives there)";

/// Why a name or path was refused, in words for the log and `hyperclay status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {name:?}")]
pub struct PathRefused {
    pub reason: &'static str,
    /// The refused name, shortened and stripped of control characters (it may come from a
    /// hostile platform and end up on a terminal).
    pub name: String,
}

impl PathRefused {
    /// A name kept for the program's own files: nobody may create it (EPERM).
    pub fn is_reserved(&self) -> bool {
        self.reason == RESERVED
    }

    /// The kernel's ENAMETOOLONG case.
    pub fn is_too_long(&self) -> bool {
        self.reason == TOO_LONG
    }

    fn new(reason: &'static str, name: &str) -> PathRefused {
        PathRefused {
            reason,
            name: crate::protocol::printable(name, 80),
        }
    }
}

/// One path segment as it may be a file name here: non-empty, not `.` or `..`, no `/`, `\` or
/// NUL, at most 255 bytes.
pub fn check_segment(name: &str) -> Result<(), PathRefused> {
    let refuse = |reason| Err(PathRefused::new(reason, name));
    if name.is_empty() {
        return refuse("an empty name");
    }
    if name == "." || name == ".." {
        return refuse("a name that means a folder itself or its parent");
    }
    if name.contains('/') || name.contains('\\') {
        return refuse("a name with a path separator inside");
    }
    if name.contains('\0') {
        return refuse("a name with a NUL byte");
    }
    if name.len() > MAX_SEGMENT_BYTES {
        return refuse(TOO_LONG);
    }
    Ok(())
}

/// A name for a child of a folder: a valid segment, and at the top of the mirror not the
/// program's own folder (`.hyperclay`, where the index and temp files live). This is what makes
/// `mkdir MNT/.hyperclay; echo x > MNT/.hyperclay/index.db` fail instead of replacing the index.
pub fn check_child(at_root: bool, name: &str) -> Result<(), PathRefused> {
    check_segment(name)?;
    if at_root && name == super::mirror::INDEX_DIR {
        return Err(PathRefused::new(RESERVED, name));
    }
    Ok(())
}

/// A name the platform sent, at the top of the mirror (`at_root`) or below: a valid segment,
/// and not a name that is ours or local-only here.
pub fn check_platform_name(name: &str, at_root: bool) -> Result<(), PathRefused> {
    check_child(at_root, name)?;
    if name.starts_with('.') {
        return Err(PathRefused::new(
            "a name starting with . (those stay on this machine)",
            name,
        ));
    }
    if at_root && name == super::VERSIONS_DIR {
        return Err(PathRefused::new(
            "the name of the local backups folder",
            name,
        ));
    }
    Ok(())
}

/// A validated relative path inside the mirror (`blog/post.html`); empty for the mirror's root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RelPath(String);

impl RelPath {
    pub fn root() -> RelPath {
        RelPath(String::new())
    }

    /// Validates every segment of `path` (separated by `/`). A leading `/` (an absolute path),
    /// an empty segment (`a//b`), `.` and `..` are refused.
    pub fn parse(path: &str) -> Result<RelPath, PathRefused> {
        if path.is_empty() {
            return Ok(RelPath::root());
        }
        if path.starts_with('/') {
            return Err(PathRefused::new("an absolute path", path));
        }
        let mut depth = 0;
        for segment in path.split('/') {
            check_child(depth == 0, segment)?;
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(PathRefused::new("a path deeper than 256 folders", path));
            }
        }
        Ok(RelPath(path.to_string()))
    }

    /// This path with one more validated segment.
    pub fn join(&self, name: &str) -> Result<RelPath, PathRefused> {
        check_child(self.is_root(), name)?;
        Ok(self.join_checked(name))
    }

    /// Joins a segment the caller has validated (the index validates every name it stores).
    pub(super) fn join_checked(&self, name: &str) -> RelPath {
        debug_assert!(check_child(self.is_root(), name).is_ok(), "{name:?}");
        if self.0.is_empty() {
            RelPath(name.to_string())
        } else {
            RelPath(format!("{}/{name}", self.0))
        }
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The folder holding this path (the root for a top-level name; none for the root).
    pub fn parent(&self) -> Option<RelPath> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.rsplit_once('/') {
            Some((dir, _)) => RelPath(dir.to_string()),
            None => RelPath::root(),
        })
    }
}

impl Deref for RelPath {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RelPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for RelPath {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RelPath {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_refused() {
        for bad in [
            "..",
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "a/./b",
            "a/",
            "a\\..\\b",
            "a\0b",
        ] {
            assert!(RelPath::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RelPath::parse(&"a/".repeat(300)).is_err());
        assert!(RelPath::parse(&"x".repeat(256)).is_err());
        assert!(RelPath::parse(".hyperclay/index.db")
            .unwrap_err()
            .is_reserved());
        assert!(RelPath::root().join(".hyperclay").is_err());
        assert!(RelPath::parse("a/.hyperclay").is_ok());
        assert_eq!(RelPath::parse("blog/post.html").unwrap(), "blog/post.html");
        assert_eq!(RelPath::parse("").unwrap(), RelPath::root());
    }

    #[test]
    fn joins_and_parents() {
        let p = RelPath::root()
            .join("blog")
            .unwrap()
            .join("p.html")
            .unwrap();
        assert_eq!(p, "blog/p.html");
        assert_eq!(p.parent().unwrap(), "blog");
        assert_eq!(p.parent().unwrap().parent().unwrap(), RelPath::root());
        assert!(p.join("../x").is_err());
        assert!(p.join("").is_err());
    }

    #[test]
    fn platform_names_that_are_ours_are_refused() {
        assert!(check_platform_name(".hyperclay", true).is_err());
        assert!(check_platform_name(".bashrc", false).is_err());
        assert!(check_platform_name("sites-versions", true).is_err());
        assert!(check_platform_name("sites-versions", false).is_ok());
        assert!(check_platform_name("logo.png", true).is_ok());
        let long = check_platform_name(&"a".repeat(300), false).unwrap_err();
        assert_eq!(long.reason, "a name longer than 255 bytes");
    }
}
