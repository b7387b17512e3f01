//! A few sample nodes for a fresh dev account (`--samples`), so a first mount shows something real.

use super::error::PlatformError;
use super::store::{Account, Store};
use crate::protocol::NodeKind;

pub fn seed(store: &Store, account: &Account) -> Result<(), PlatformError> {
    if !store.list(account)?.0.is_empty() {
        return Ok(());
    }
    let site = |title: &str| {
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
             <body><h1>{title}</h1><p contenteditable>Edit me, then save.</p></body></html>\n"
        )
        .into_bytes()
    };
    store.create(
        account,
        NodeKind::Site,
        "index.html",
        0,
        Some(site("Home")),
        None,
        None,
    )?;
    let blog = store.create(account, NodeKind::Folder, "blog", 0, None, None, None)?;
    store.create(
        account,
        NodeKind::Site,
        "first-post.html",
        blog.id,
        Some(site("First post")),
        None,
        None,
    )?;
    let img = store.create(account, NodeKind::Folder, "img", 0, None, None, None)?;
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
        0,
        Some(b"Uploads are any other file.\n".to_vec()),
        None,
        None,
    )?;
    Ok(())
}
