//! Where a site is, by name, for `GET /NAME` and `POST /save/NAME` (site names are unique in an
//! account). The server remembers where it last found each name and checks that the file is
//! still there before answering with it. Otherwise a mount asks its index, which knows every
//! synced site, also one whose copy is not on disk yet; and last the mirror is walked (a site
//! made offline or refused by the platform is only there). A walk costs milliseconds at 10,000 files: per request it cut the
//! server's rate by a factor of 17 (BENCHMARKS.md).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use crate::protocol::names;
use crate::sync::Engine;

/// The file names a site called `stem` can have.
fn file_names(stem: &str) -> [String; 2] {
    [format!("{stem}.html"), format!("{stem}.htmlclay")]
}

/// Whether `stem` can name a site at all (`favicon.ico` can't: no walk for it).
pub fn can_be_site(stem: &str) -> bool {
    names::check_site(&format!("{stem}.html")).is_ok()
}

/// The site's path in the mount's index, when it is live there.
pub fn in_index(engine: &Engine, stem: &str) -> Option<String> {
    file_names(stem)
        .iter()
        .filter_map(|n| engine.index.site_named(n))
        .find(|e| !engine.index.is_hidden(e.ino))
        .and_then(|e| engine.index.path(e.ino))
        .map(|rel| rel.to_string())
}

/// The server alone: remembered places, checked, and a walk when they fail.
#[derive(Default)]
pub struct RememberedSites {
    places: Mutex<HashMap<String, String>>,
}

impl RememberedSites {
    /// The mirror-relative path of the site called `stem` under `root`: where it was last found
    /// if it is still there, else what `indexed` says, else a walk.
    pub fn find(
        &self,
        root: &Path,
        stem: &str,
        indexed: impl FnOnce() -> Option<String>,
    ) -> Option<String> {
        let remembered = self.places.lock().unwrap().get(stem).cloned();
        if let Some(rel) = remembered {
            let still_there = std::fs::symlink_metadata(root.join(&rel)).is_ok_and(|m| m.is_file());
            if still_there {
                return Some(rel);
            }
        }
        let found = indexed().or_else(|| walk(root, stem));
        let mut places = self.places.lock().unwrap();
        match &found {
            Some(rel) => places.insert(stem.to_string(), rel.clone()),
            None => places.remove(stem),
        };
        found
    }
}

/// Walks the mirror for the site called `stem` (dotted names, `sites-versions/` and
/// `node_modules/` skipped).
fn walk(root: &Path, stem: &str) -> Option<String> {
    let names = file_names(stem);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == crate::cache::VERSIONS_DIR || name == "node_modules"
            {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() && names.contains(&name) {
                let path = entry.path();
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let rel = rel.to_string_lossy().into_owned();
                // Mirror paths are `/`-separated everywhere (no Windows name holds a `\`).
                #[cfg(windows)]
                let rel = rel.replace('\\', "/");
                return Some(rel);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_place_is_checked_and_a_moved_site_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("c")).unwrap();
        std::fs::write(root.join("a/b/post.html"), b"x").unwrap();
        let sites = RememberedSites::default();
        assert_eq!(
            sites.find(root, "post", || None).as_deref(),
            Some("a/b/post.html")
        );
        std::fs::rename(root.join("a/b/post.html"), root.join("c/post.html")).unwrap();
        assert_eq!(
            sites.find(root, "post", || None).as_deref(),
            Some("c/post.html")
        );
        std::fs::remove_file(root.join("c/post.html")).unwrap();
        assert_eq!(sites.find(root, "post", || None), None);
        std::fs::write(root.join("a/post.htmlclay"), b"x").unwrap();
        assert_eq!(
            sites.find(root, "post", || None).as_deref(),
            Some("a/post.htmlclay")
        );
        assert!(!can_be_site("favicon.ico") && can_be_site("post"));
    }
}
