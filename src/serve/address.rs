//! Which file a page's request is about. The write and stream endpoints ignore their own URL: the
//! page names itself in `Document-URL` (newer) or `Page-URL` (older), and both are read
//! everywhere, `Document-URL` first. The address is resolved with GET's own resolver, so `/post`,
//! `/blog/post` and `/blog/post.html` are one file and one live-sync channel; an address that
//! names no file yet is the new site it would be (`/notes` is `notes.html`).

use axum::http::HeaderMap;

use super::resolve::{document_segments, segments, ResolveError, Resolved};
use super::ServeState;
use crate::cache::RelPath;
use crate::protocol::{names, NodeKind};

/// A page's file, mirror-relative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub rel: RelPath,
    /// Whether it is in the mirror now.
    pub exists: bool,
}

/// The page's address, from `Document-URL` or `Page-URL` (or, for streams, a query parameter).
pub fn from_headers(headers: &HeaderMap) -> Option<String> {
    ["document-url", "page-url"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(str::to_string)
}

/// The path of an address: a full URL (`location.href`) or a bare path.
fn path_of(address: &str) -> Result<String, ResolveError> {
    let base = url::Url::parse("http://localhost/").expect("a constant URL");
    let url = base
        .join(address)
        .map_err(|_| ResolveError::BadRequest("the page address is not a URL"))?;
    Ok(url.path().to_string())
}

impl ServeState {
    /// `page`, off the async threads (the resolver may walk the mirror).
    pub async fn find_page(&self, address: String) -> Result<Page, ResolveError> {
        let resolving = self.clone();
        tokio::task::spawn_blocking(move || resolving.page(&address))
            .await
            .unwrap_or(Err(ResolveError::BadRequest(
                "the page could not be resolved",
            )))
    }

    /// The page an address names: an existing site, or the site a save there would create.
    /// Blocking (the resolver may walk the mirror).
    pub fn page(&self, address: &str) -> Result<Page, ResolveError> {
        let path = path_of(address)?;
        match self.resolve(&path) {
            Ok(Resolved::File { rel, .. }) => {
                if NodeKind::of_file_name(&rel) != NodeKind::Site {
                    return Err(ResolveError::BadRequest("the page address names no site"));
                }
                let rel = RelPath::parse(&rel)
                    .map_err(|_| ResolveError::BadRequest("the page's name is refused"))?;
                Ok(Page { rel, exists: true })
            }
            Ok(Resolved::Dir { .. }) if path.trim_matches('/').is_empty() => {
                new_page(&["index.html".to_string()])
            }
            Ok(Resolved::Dir { .. }) => {
                Err(ResolveError::BadRequest("the page address is a folder"))
            }
            Err(ResolveError::NotFound) => new_page(&document_segments(segments(&path)?)),
            Err(e) => Err(e),
        }
    }
}

/// The site a save at `segs` creates: the last segment gets `.html` if it has no page extension,
/// and must be a name the platform takes for a site.
fn new_page(segs: &[String]) -> Result<Page, ResolveError> {
    let Some((last, folders)) = segs.split_last() else {
        return Err(ResolveError::NotFound);
    };
    let name = if last.ends_with(".html") || last.ends_with(".htmlclay") {
        last.clone()
    } else {
        format!("{last}.html")
    };
    names::check_site(&name).map_err(|_| {
        ResolveError::BadRequest("a new page needs a site name: a-z, 0-9, _ and -, ending in .html")
    })?;
    let mut rel = RelPath::root();
    for seg in folders.iter().chain(std::iter::once(&name)) {
        rel = rel
            .join(seg)
            .map_err(|_| ResolveError::BadRequest("the page's path is refused"))?;
    }
    Ok(Page { rel, exists: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_pages_are_sites() {
        let p = new_page(&["blog".into(), "notes".into()]).unwrap();
        assert_eq!((p.rel.as_str(), p.exists), ("blog/notes.html", false));
        assert!(new_page(&["Bad Name".into()]).is_err());
        assert!(new_page(&["x.png".into()]).is_err());
        assert_eq!(
            path_of("http://localhost:4321/a/b.html?x=1#y").unwrap(),
            "/a/b.html"
        );
        assert_eq!(path_of("/a%20b").unwrap(), "/a%20b");
    }
}
