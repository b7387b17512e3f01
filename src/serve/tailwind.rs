//! `GET /tailwindcss/NAME.css` (local-host.md §2.9): apps link the Tailwind stylesheet the host
//! builds from the classes the page uses. A `tailwindcss/NAME.css` file in the mirror is served as
//! it is; otherwise the stylesheet is compiled from the `class` attributes of the page `NAME`
//! (found as GET finds it, so `/tailwindcss/post.css` styles `blog/post.html` too).
//!
//! The compiler is the `encre-css` crate: a Tailwind-compatible utility-first generator in Rust
//! (Tailwind v4's colour palette and variants, with its preflight), so no Node.js and no network.
//! Hyperclay Local runs Tailwind itself; the few utilities encre-css lacks (plugins, arbitrary
//! `@apply`) come out unstyled here. Decided: the compiled sheet is kept in memory, keyed by the
//! page's content, and never written to the mirror: written there it would go up to the account
//! as an upload, and the platform builds its own.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::resolve::Resolved;
use super::ServeState;
use crate::cache::RelPath;
use crate::protocol::{NodeKind, MAX_CONTENT_BYTES};

/// Compiled sheets kept (each a few tens of KiB): one per page recently asked for.
pub const SHEETS_KEPT: u64 = 256;

/// Compiled stylesheets by (page, checksum of its content).
pub type Sheets = moka::future::Cache<(RelPath, crate::protocol::Checksum), Arc<str>>;

pub fn sheets() -> Sheets {
    moka::future::Cache::builder()
        .max_capacity(SHEETS_KEPT)
        .build()
}

fn css(body: impl Into<axum::body::Body>) -> Response {
    let mut response = Response::new(body.into());
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Serves the stylesheet at `path` (`/tailwindcss/NAME.css`).
pub async fn serve(state: &ServeState, path: &str) -> Option<Response> {
    let name = path.strip_prefix("/tailwindcss/")?.strip_suffix(".css")?;
    let page_path = format!("/{name}.html");
    let resolving = state.clone();
    let resolved = tokio::task::spawn_blocking(move || resolving.resolve(&page_path))
        .await
        .ok()?;
    let Ok(Resolved::File { rel, .. }) = resolved else {
        return Some((StatusCode::NOT_FOUND, css("/* no page of that name */")).into_response());
    };
    if NodeKind::of_file_name(&rel) != NodeKind::Site {
        return Some((StatusCode::NOT_FOUND, css("/* no page of that name */")).into_response());
    }
    let rel = RelPath::parse(&rel).ok()?;
    let (mirror, reading) = (state.0.mirror.clone(), rel.clone());
    let read =
        tokio::task::spawn_blocking(move || mirror.read_at_most(&reading, MAX_CONTENT_BYTES)).await;
    let Ok(Ok(Some(html))) = read else {
        // A page whose copy is not here: an empty sheet, as Hyperclay Local answers a failure.
        return Some(css(""));
    };
    let key = (rel, crate::protocol::checksum(&html));
    let sheet = state
        .0
        .sheets
        .get_with(key, async move {
            let compiled = tokio::task::spawn_blocking(move || compile(&html))
                .await
                .unwrap_or_default();
            Arc::<str>::from(compiled)
        })
        .await;
    Some(css(sheet.to_string()))
}

/// The stylesheet for the classes `html` uses.
pub fn compile(html: &[u8]) -> String {
    let text = String::from_utf8_lossy(html);
    encre_css::generate([text.as_ref()], &encre_css::Config::default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_classes_a_page_uses_are_styled() {
        let sheet = super::compile(br#"<div class="p-4 md:flex hover:underline">x</div>"#);
        assert!(sheet.contains(".p-4"), "{sheet}");
        assert!(sheet.contains("padding: 1rem"), "{sheet}");
        assert!(sheet.contains(r".md\:flex"), "{sheet}");
        assert!(!sheet.contains(".p-8"), "only what the page uses");
    }
}
