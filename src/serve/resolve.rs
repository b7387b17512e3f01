//! From a request path to a file in the mirror, refusing anything that could escape it: strict
//! percent-decoding (a malformed sequence is 400), no `..`, `.` or encoded `/` (400), no dotfiles,
//! index folder or `sites-versions/` (404), and no symlink that leads out of the mirror (403).
//! `GET /whatever` finds, in order: the exact path, the path with `.html` or `.htmlclay`, then
//! the one site of that name anywhere in the mirror (site names are unique in an account; see
//! `sites` for how it is found). What follows the first segment ending in `.html` or
//! `.htmlclay` is the page's own (client-side routes): `/app.html/settings` is `app.html`. And
//! `/assets-NAME/...` is also looked for beside the site NAME (its uploads).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("bad path: {0}")]
    BadRequest(&'static str),
    #[error("not found")]
    NotFound,
    #[error("forbidden: the path leads out of the mirror")]
    Forbidden,
}

/// What a path resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    File { path: PathBuf, rel: String },
    Dir { path: PathBuf, rel: String },
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes one path segment; `%` must be followed by two hex digits.
fn decode_segment(seg: &str) -> Result<String, ResolveError> {
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) else {
                return Err(ResolveError::BadRequest("a malformed percent sequence"));
            };
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ResolveError::BadRequest("the path is not UTF-8"))
}

/// The decoded, checked segments of a request path.
pub fn segments(raw_path: &str) -> Result<Vec<String>, ResolveError> {
    let mut out = Vec::new();
    for (i, seg) in raw_path.split('/').filter(|s| !s.is_empty()).enumerate() {
        let seg = decode_segment(seg)?;
        if seg == ".."
            || seg == "."
            || seg.contains('/')
            || seg.contains('\\')
            || seg.contains('\0')
        {
            return Err(ResolveError::BadRequest("path traversal is not allowed"));
        }
        if seg.starts_with('.') || (i == 0 && seg == crate::cache::VERSIONS_DIR) {
            return Err(ResolveError::NotFound);
        }
        out.push(seg);
    }
    Ok(out)
}

/// The segments up to the first one naming a page (ending in `.html` or `.htmlclay`): the rest
/// of the path is the page's, as Hyperclay Local serves it.
pub fn document_segments(mut segs: Vec<String>) -> Vec<String> {
    if let Some(i) = segs
        .iter()
        .position(|s| s.ends_with(".html") || s.ends_with(".htmlclay"))
    {
        segs.truncate(i + 1);
    }
    segs
}

/// Checks that `path` (which exists) stays inside `root` once symlinks are followed.
fn inside(root: &Path, path: &Path) -> Result<PathBuf, ResolveError> {
    let real = path.canonicalize().map_err(|_| ResolveError::NotFound)?;
    if !real.starts_with(root) {
        return Err(ResolveError::Forbidden);
    }
    let rel = real.strip_prefix(root).unwrap_or(&real);
    // A symlink into the index or the backups is as forbidden as the plain path.
    if rel
        .components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
    {
        return Err(ResolveError::NotFound);
    }
    Ok(real)
}

fn rel_of(root: &Path, real: &Path) -> String {
    let rel = real.strip_prefix(root).unwrap_or(real).to_string_lossy();
    // Mirror paths are `/`-separated everywhere (no Windows name holds a `\`).
    #[cfg(windows)]
    return rel.replace('\\', "/");
    #[cfg(not(windows))]
    rel.into_owned()
}

/// Resolves a request path against the mirror at `root` (canonical). `find_site` answers where
/// the site of a name is (mirror-relative) when the path itself leads nowhere.
pub fn resolve(
    root: &Path,
    raw_path: &str,
    find_site: impl Fn(&str) -> Option<String>,
) -> Result<Resolved, ResolveError> {
    let segs = document_segments(segments(raw_path)?);
    let joined: PathBuf = segs.iter().collect();
    let exact = root.join(&joined);
    if std::fs::symlink_metadata(&exact).is_ok() {
        let real = inside(root, &exact)?;
        let rel = rel_of(root, &real);
        return Ok(if real.is_dir() {
            Resolved::Dir { path: real, rel }
        } else {
            Resolved::File { path: real, rel }
        });
    }
    let Some(last) = segs.last() else {
        return Err(ResolveError::NotFound);
    };
    // A page found by name links its uploads relative to where it is served (`/post` links
    // `assets-post/x.png`): they are in the assets folder beside the page, wherever it is.
    if let Some(stem) = segs.first().and_then(|s| s.strip_prefix("assets-")) {
        if segs.len() > 1 {
            if let Some(site) = find_site(stem) {
                let folder = Path::new(&site).parent().unwrap_or(Path::new(""));
                let candidate = root.join(folder).join(&joined);
                if candidate.is_file() {
                    let real = inside(root, &candidate)?;
                    return Ok(Resolved::File {
                        rel: rel_of(root, &real),
                        path: real,
                    });
                }
            }
        }
    }
    for ext in ["html", "htmlclay"] {
        let candidate = exact.with_file_name(format!("{last}.{ext}"));
        if std::fs::symlink_metadata(&candidate).is_ok() {
            let real = inside(root, &candidate)?;
            return Ok(Resolved::File {
                rel: rel_of(root, &real),
                path: real,
            });
        }
    }
    let stem = last
        .strip_suffix(".htmlclay")
        .or_else(|| last.strip_suffix(".html"))
        .unwrap_or(last);
    let rel = find_site(stem).ok_or(ResolveError::NotFound)?;
    let real = inside(root, &root.join(&rel))?;
    if !real.is_file() {
        return Err(ResolveError::NotFound);
    }
    Ok(Resolved::File {
        rel: rel_of(root, &real),
        path: real,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_malformed_sequences_are_refused() {
        for bad in [
            "/../etc/passwd",
            "/a/%2e%2e/b",
            "/%2E%2E",
            "/a%2fb",
            "/a%5cb",
            "/x%00",
            "/a/./b",
        ] {
            assert_eq!(
                segments(bad),
                Err(ResolveError::BadRequest("path traversal is not allowed")),
                "{bad}"
            );
        }
        assert_eq!(
            segments("/a%zz"),
            Err(ResolveError::BadRequest("a malformed percent sequence"))
        );
        assert_eq!(
            segments("/a%4"),
            Err(ResolveError::BadRequest("a malformed percent sequence"))
        );
        assert_eq!(
            segments("/.hyperclay/index.db"),
            Err(ResolveError::NotFound)
        );
        assert_eq!(segments("/sites-versions/a"), Err(ResolveError::NotFound));
        assert_eq!(
            segments("/blog/my%20post.html").unwrap(),
            vec!["blog", "my post.html"]
        );
        assert_eq!(
            document_segments(segments("/blog/app.html/settings/1").unwrap()),
            vec!["blog", "app.html"]
        );
    }
}
