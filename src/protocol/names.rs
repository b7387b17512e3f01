//! The platform's name rules (sync-api.md, "Names"). The client checks a name before it sends it
//! and the dev platform enforces the same function, so the two can never disagree.

use serde::{Deserialize, Serialize};

/// What a node is. On disk: a site is `name.html`/`name.htmlclay`, a folder a directory, an upload
/// any other file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Site,
    Upload,
    Folder,
}

impl NodeKind {
    /// The kind of a file by its name: the extension alone decides between site and upload.
    pub fn of_file_name(name: &str) -> NodeKind {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".html") || lower.ends_with(".htmlclay") {
            NodeKind::Site
        } else {
            NodeKind::Upload
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Site => "site",
            NodeKind::Upload => "upload",
            NodeKind::Folder => "folder",
        }
    }

    pub fn parse(s: &str) -> Option<NodeKind> {
        match s {
            "site" => Some(NodeKind::Site),
            "upload" => Some(NodeKind::Upload),
            "folder" => Some(NodeKind::Folder),
            _ => None,
        }
    }

    pub fn is_file(self) -> bool {
        !matches!(self, NodeKind::Folder)
    }
}

/// A refused name, with the rule it broke in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}")]
pub struct NameError {
    pub rule: &'static str,
}

fn refuse(rule: &'static str) -> Result<(), NameError> {
    Err(NameError { rule })
}

const DEVICE_NAMES: &[&str] = &[
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

fn is_device_name(stem: &str) -> bool {
    DEVICE_NAMES.contains(&stem.to_ascii_lowercase().as_str())
}

fn is_slug_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

/// Checks `name` against the rules for `kind`.
pub fn check(kind: NodeKind, name: &str) -> Result<(), NameError> {
    match kind {
        NodeKind::Folder => check_folder(name),
        NodeKind::Site => check_site(name),
        NodeKind::Upload => check_upload(name),
    }
}

/// Folder: `^[a-z0-9_-]+$`, at most 255 characters.
pub fn check_folder(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 255 {
        return refuse("a folder name has 1 to 255 characters");
    }
    if !name.chars().all(is_slug_char) {
        return refuse("a folder name may only use a-z, 0-9, _ and - (lowercase, no spaces)");
    }
    Ok(())
}

/// Site: `^[a-z0-9_-]+\.(html|htmlclay)$`, no leading or trailing `-`, no `--`, no device name.
pub fn check_site(name: &str) -> Result<(), NameError> {
    let Some(stem) = name
        .strip_suffix(".html")
        .or_else(|| name.strip_suffix(".htmlclay"))
    else {
        return refuse("a site name ends in .html or .htmlclay (lowercase)");
    };
    if stem.is_empty() || name.len() > 255 {
        return refuse("a site name has 1 to 255 characters before its extension");
    }
    if !stem.chars().all(is_slug_char) {
        return refuse("a site name may only use a-z, 0-9, _ and - (lowercase, no spaces)");
    }
    if stem.starts_with('-') || stem.ends_with('-') {
        return refuse("a site name may not start or end with -");
    }
    if stem.contains("--") {
        return refuse("a site name may not contain --");
    }
    if is_device_name(stem) {
        return refuse(
            "a site name may not be a Windows device name (con, prn, aux, nul, com1-9, lpt1-9)",
        );
    }
    Ok(())
}

/// Upload: 1 to 255 UTF-8 bytes, no leading or trailing `.`, no control characters, none of
/// `/ \ < > : " | ? *`, no device name before the first `.`, and not a site's extension.
pub fn check_upload(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 255 {
        return refuse("a file name has 1 to 255 bytes");
    }
    if name.starts_with('.') || name.ends_with('.') {
        return refuse("a file name may not start or end with .");
    }
    if name.chars().any(char::is_control) {
        return refuse("a file name may not contain control characters");
    }
    if name.chars().any(|c| "/\\<>:\"|?*".contains(c)) {
        return refuse("a file name may not contain any of / \\ < > : \" | ? *");
    }
    let before_dot = name.split('.').next().unwrap_or(name);
    if is_device_name(before_dot) {
        return refuse(
            "a file name may not be a Windows device name (con, prn, aux, nul, com1-9, lpt1-9)",
        );
    }
    if NodeKind::of_file_name(name) == NodeKind::Site {
        return refuse("a file ending in .html or .htmlclay is a site and follows the site rules");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_follows_the_extension() {
        assert_eq!(NodeKind::of_file_name("a.html"), NodeKind::Site);
        assert_eq!(NodeKind::of_file_name("a.htmlclay"), NodeKind::Site);
        assert_eq!(NodeKind::of_file_name("A.HTML"), NodeKind::Site);
        assert_eq!(NodeKind::of_file_name("a.png"), NodeKind::Upload);
        assert_eq!(NodeKind::of_file_name("html"), NodeKind::Upload);
    }
}
