//! A few sample nodes for a fresh dev account (`--samples`), so a first mount shows something real.
//!
//! The sites are Hyperclay apps, as hyperclay.com hosts them: each loads hyperclayjs from its CDN
//! address (which the local server of `hyperclay mount` and `hyperclay serve` answers from its
//! own copy, so they work offline), is editable for its owner (`editmode:contenteditable`, a
//! save button, Ctrl-S, autosave) and saves itself (`POST /_/save`) into the very file, which a
//! mount then pushes to the platform. Nothing in them needs this host: on hyperclay.com the same
//! bytes load the library from the CDN and save through the platform.

use super::error::PlatformError;
use super::store::{Account, Store};
use crate::protocol::{NodeId, NodeKind};

/// The library as hyperclay.com's apps load it: the standard preset (saving, edit mode, toasts),
/// plus the `editmode` attribute on `<html>` (the save bar shows only to the owner), autosave and
/// live sync between a page's open tabs.
const LIBRARY: &str = "https://cdn.jsdelivr.net/npm/hyperclayjs@1/src/hyperclay.js?preset=standard&amp;features=edit-mode,autosave,live-sync";

/// A page that edits and saves itself: `body` is its content, in which the elements marked
/// `editmode:contenteditable` become editable for the page's owner.
fn app(title: &str, body: &str) -> Vec<u8> {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<script src="{LIBRARY}" type="module"></script>
<style>
  body {{ font: 17px/1.55 system-ui, sans-serif; max-width: 42rem; margin: 0 auto; padding: 0 1rem 3rem; color: #1d1d1f; }}
  .bar {{ position: sticky; top: 0; display: flex; gap: 1rem; align-items: center; padding: .6rem 0; background: #fff; border-bottom: 1px solid #eee; }}
  .bar button {{ font: inherit; padding: .25rem 1.1rem; border: 1px solid #999; border-radius: 6px; background: #f6f6f6; cursor: pointer; }}
  .bar .status {{ color: #666; font-size: .9em; }}
  [contenteditable] {{ outline: 1px dashed #bbb; outline-offset: 4px; border-radius: 2px; }}
  [contenteditable]:focus {{ outline: 2px solid #3b6fe0; }}
  code {{ background: #f3f3f3; padding: 0 .25em; border-radius: 3px; }}
</style>
</head>
<body>
<div class="bar" show-when:editmode="true">
  <button type="button" trigger-save>Save</button>
  <span class="status" show-when:savestatus="saving">Saving…</span>
  <span class="status" show-when:savestatus="saved">Saved</span>
  <span class="status" show-when:savestatus="error|offline">Not saved yet</span>
</div>
{body}
</body>
</html>
"#
    )
    .into_bytes()
}

fn home() -> Vec<u8> {
    app(
        "Home",
        r#"<h1 editmode:contenteditable>Home</h1>
<div editmode:contenteditable>
<p>This page is a Hyperclay app: one HTML file that edits and saves itself. Click any text with a
dashed outline and change it. It saves a moment after you stop typing (or press Ctrl-S, or
Save), and the whole page, your change included, becomes the new content of
<code>index.html</code>: in your mount, on the platform, on your other devices.</p>
<p>Open it in a second tab: what you save in one shows in the other. Change
<code>index.html</code> in the mount with any editor: a tab that has it open from the mount's
local server shows that too.</p>
</div>
<h2>Also here</h2>
<ul>
<li><code>blog/first-post.html</code>: another app, in a folder.</li>
<li><code>notes.txt</code> and <code>img/pixel.png</code>: uploads, any file that is not a page.</li>
</ul>"#,
    )
}

fn first_post() -> Vec<u8> {
    app(
        "First post",
        r#"<article>
<h1 editmode:contenteditable>First post</h1>
<div editmode:contenteditable>
<p>A blog post is a site like any other: write here, and it saves itself.</p>
<p>Add a paragraph with Enter; make a new post by copying this file in the mount under another
name.</p>
</div>
</article>"#,
    )
}

pub fn seed(store: &Store, account: &Account) -> Result<(), PlatformError> {
    if !store.list(account)?.0.is_empty() {
        return Ok(());
    }
    store.create(
        account,
        NodeKind::Site,
        "index.html",
        NodeId::ROOT,
        Some(home()),
        None,
        None,
    )?;
    let blog = store.create(
        account,
        NodeKind::Folder,
        "blog",
        NodeId::ROOT,
        None,
        None,
        None,
    )?;
    store.create(
        account,
        NodeKind::Site,
        "first-post.html",
        blog.id,
        Some(first_post()),
        None,
        None,
    )?;
    let img = store.create(
        account,
        NodeKind::Folder,
        "img",
        NodeId::ROOT,
        None,
        None,
        None,
    )?;
    // A 1x1 transparent PNG.
    let png: Vec<u8> = vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0,
        0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89, 0, 0, 0, 0x0d, 0x49, 0x44,
        0x41, 0x54, 0x78, 0x9c, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0d, 0x0a, 0x2d, 0xb4, 0, 0, 0, 0,
        0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    store.create(
        account,
        NodeKind::Upload,
        "pixel.png",
        img.id,
        Some(png),
        None,
        None,
    )?;
    store.create(
        account,
        NodeKind::Upload,
        "notes.txt",
        NodeId::ROOT,
        Some(b"Uploads are any other file.\n".to_vec()),
        None,
        None,
    )?;
    Ok(())
}
