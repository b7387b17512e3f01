//! Apps load hyperclayjs from a CDN, so offline they work only from the browser's cache. The local
//! server carries the library itself: the npm package of one version, byte for byte as npm serves
//! it (its SHA-512 is checked against npm's integrity string in a test), MIT-licensed (its
//! LICENSE travels inside the tarball and is served beside it), unpacked into memory on first use.
//!
//! Decided: a served page's links to that library on a known CDN are pointed at the local copy
//! (`https://cdn.jsdelivr.net/npm/hyperclayjs@1/…` becomes `/_/cdn/jsdelivr/npm/hyperclayjs@1/…`),
//! only when the version they ask for is one the local copy satisfies (`@1`, `@1.38`, `@1.38.0`,
//! `@latest` or none); a page pinned to another version keeps its CDN link. The rewrite is made in
//! what is served, never in the file: a save from the page comes back with the local links, and
//! `restore_links` turns every `/_/cdn/<cdn>/` back into the CDN's address before it is written
//! (`/_/` belongs to the host, so a page has no other use for that prefix). An import map would
//! not do: it maps `import` specifiers, not a `<script src>`, which is how apps load the loader.

use std::collections::HashMap;
use std::io::Read;
use std::sync::LazyLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The package as npm serves it.
const TARBALL: &[u8] = include_bytes!("../../assets/hyperclayjs-1.38.0.tgz");
pub const VERSION: &str = "1.38.0";

/// The CDNs whose links are served locally: (the prefix in a page, its local name).
const CDNS: &[(&str, &str)] = &[
    ("https://cdn.jsdelivr.net/npm/", "jsdelivr/npm"),
    ("https://unpkg.com/", "unpkg"),
];
const LOCAL_PREFIX: &str = "/_/cdn/";
const PACKAGE: &str = "hyperclayjs";

/// The package's files by path inside it (`src/hyperclay.js`, `LICENSE`).
static FILES: LazyLock<HashMap<String, Vec<u8>>> = LazyLock::new(|| {
    let mut files = HashMap::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(TARBALL));
    let Ok(entries) = archive.entries() else {
        return files;
    };
    for mut entry in entries.flatten() {
        let Ok(path) = entry.path() else { continue };
        // npm tarballs hold everything under `package/`.
        let Some(path) = path
            .to_str()
            .and_then(|p| p.strip_prefix("package/"))
            .map(str::to_string)
        else {
            continue;
        };
        let mut bytes = Vec::new();
        if entry.read_to_end(&mut bytes).is_ok() {
            files.insert(path, bytes);
        }
    }
    files
});

/// Whether a version asked for in a link is one the local copy satisfies.
fn satisfied_by_local(version: &str) -> bool {
    if version == "latest" {
        return true;
    }
    let want: Vec<&str> = version.split('.').collect();
    let have: Vec<&str> = VERSION.split('.').collect();
    !version.is_empty()
        && want.len() <= have.len()
        && want
            .iter()
            .zip(&have)
            .all(|(w, h)| w == h || *w == "x" || *w == "*")
}

/// The page as served: links to the library on a known CDN point at the local copy.
pub fn localize_links(html: &str) -> std::borrow::Cow<'_, str> {
    let mut out = std::borrow::Cow::Borrowed(html);
    for (cdn, local) in CDNS {
        let needle = format!("{cdn}{PACKAGE}");
        if !out.contains(&needle) {
            continue;
        }
        let mut rewritten = String::with_capacity(out.len());
        let mut rest: &str = &out;
        while let Some(at) = rest.find(&needle) {
            rewritten.push_str(&rest[..at]);
            let after = &rest[at + needle.len()..];
            let version = after
                .strip_prefix('@')
                .map(|v| v.split(['/', '"', '\'', '?', ' ']).next().unwrap_or(""));
            let local_ok = match version {
                Some(v) => satisfied_by_local(v),
                None => after.starts_with('/'),
            };
            if local_ok {
                rewritten.push_str(&format!("{LOCAL_PREFIX}{local}/{PACKAGE}"));
            } else {
                rewritten.push_str(&needle);
            }
            rest = after;
        }
        rewritten.push_str(rest);
        out = std::borrow::Cow::Owned(rewritten);
    }
    out
}

/// A page as it comes back in a save: local library links restored to the CDN's address.
pub fn restore_links(html: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut out = std::borrow::Cow::Borrowed(html);
    for (cdn, local) in CDNS {
        let local_prefix = format!("{LOCAL_PREFIX}{local}/");
        if !contains(&out, local_prefix.as_bytes()) {
            continue;
        }
        let mut rewritten = Vec::with_capacity(out.len());
        let mut rest: &[u8] = &out;
        while let Some(at) = find(rest, local_prefix.as_bytes()) {
            rewritten.extend_from_slice(&rest[..at]);
            rewritten.extend_from_slice(cdn.as_bytes());
            rest = &rest[at + local_prefix.len()..];
        }
        rewritten.extend_from_slice(rest);
        out = std::borrow::Cow::Owned(rewritten);
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// Serves `/_/cdn/<cdn>/hyperclayjs@VERSION/<file>` from the local copy.
pub async fn serve(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    let not_here = || {
        super::answer(
            StatusCode::NOT_FOUND,
            false,
            "the local server carries only its own hyperclayjs version",
        )
    };
    let Some((_, rest)) = CDNS
        .iter()
        .find_map(|(_, local)| path.strip_prefix(local).map(|r| (local, r)))
    else {
        return not_here();
    };
    let Some(rest) = rest.strip_prefix('/').and_then(|r| r.strip_prefix(PACKAGE)) else {
        return not_here();
    };
    let file = match rest.strip_prefix('@') {
        Some(versioned) => match versioned.split_once('/') {
            Some((v, file)) if satisfied_by_local(v) => file,
            _ => return not_here(),
        },
        None => match rest.strip_prefix('/') {
            Some(file) => file,
            None => return not_here(),
        },
    };
    let Some(bytes) = FILES.get(file) else {
        return not_here();
    };
    let mime = mime_guess::from_path(file).first_or_octet_stream();
    let mut response = bytes.clone().into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use sha2::Digest;

    /// `npm view hyperclayjs@1.38.0 dist.integrity`.
    const NPM_INTEGRITY: &str =
        "sha512-+MGzjBogNMfPxRv/8ldQiIfwSqN5zAh3IP/38DQ/G5no/5fQqMdZStAKJJOFBpT3H0ScKY/OMYs09QrULBXD4A==";

    #[test]
    fn the_tarball_is_npms_own() {
        let sum = base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(TARBALL));
        assert_eq!(format!("sha512-{sum}"), NPM_INTEGRITY);
        assert!(FILES.contains_key("src/hyperclay.js"));
        assert!(FILES.contains_key("LICENSE"));
    }

    #[test]
    fn links_are_localized_and_restored_exactly() {
        let page = r#"<script src="https://cdn.jsdelivr.net/npm/hyperclayjs@1/src/hyperclay.js?preset=standard" type="module"></script>
<script src="https://cdn.jsdelivr.net/npm/hyperclayjs@1.20.0/src/hyperclay.js"></script>
<script src="https://unpkg.com/hyperclayjs@latest/src/hyperclay.js"></script>"#;
        let served = localize_links(page);
        assert!(
            served.contains(
                r#""/_/cdn/jsdelivr/npm/hyperclayjs@1/src/hyperclay.js?preset=standard""#
            ),
            "{served}"
        );
        assert!(
            served.contains("https://cdn.jsdelivr.net/npm/hyperclayjs@1.20.0/"),
            "another version stays: {served}"
        );
        assert!(
            served.contains("/_/cdn/unpkg/hyperclayjs@latest/"),
            "{served}"
        );
        assert_eq!(restore_links(served.as_bytes()).as_ref(), page.as_bytes());
        assert!(matches!(
            localize_links("<p>no library</p>"),
            std::borrow::Cow::Borrowed(_)
        ));
        for (v, ok) in [
            ("1", true),
            ("1.38", true),
            ("1.38.0", true),
            ("1.x", true),
            ("1.37.0", false),
            ("2", false),
            ("", false),
        ] {
            assert_eq!(satisfied_by_local(v), ok, "{v}");
        }
    }
}
