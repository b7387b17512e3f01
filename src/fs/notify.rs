//! Telling the kernel what the sync engine changed, from one dedicated thread fed by a channel:
//! never from inside a FUSE callback, never while holding a lock a callback needs (the kernel may
//! wait on a page lock held by a read this process is serving).

use std::sync::mpsc;

use fuser::{INodeNo, Notifier};

use crate::sync::Notice;

/// Forwards notices to the kernel until every sender is gone. A folder whose names changed gets
/// a new modification time first, as on a local disk (tools that watch a folder's mtime see the
/// change); the kernel also checks its cached listing (FOPEN_CACHE_DIR) against that time when a
/// listing starts, so a listing cached by a readdir that raced the change is dropped too.
pub fn run(
    notifier: Notifier,
    notices: mpsc::Receiver<Notice>,
    fs: std::sync::Arc<super::MountFs>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("kernel-notices".into())
        .spawn(move || {
            for notice in notices {
                // ENOENT only means the kernel holds nothing cached for it.
                let _ = match &notice {
                    Notice::Content { ino } => notifier.inval_inode(INodeNo(*ino), 0, 0),
                    Notice::Entry { parent, name } => {
                        // The name, and the folder's cached listing.
                        fs.folder_changed(*parent);
                        let _ = notifier.inval_inode(INodeNo(*parent), 0, 0);
                        notifier.inval_entry(INodeNo(*parent), name.as_ref())
                    }
                };
            }
        })
        .expect("spawning the kernel-notices thread")
}
