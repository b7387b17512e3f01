//! The only code that touches local storage: the index (SQLite: nodes, sync base, cursor,
//! tombstones, and the in-memory tree every kernel lookup is answered from), the mirror files, and
//! the `sites-versions/` backups. Writes to disk are atomic (temp file, fsync, rename).

mod guarded;
mod index;
mod local_only;
mod mirror;
mod relpath;
pub mod save;
mod tree;
pub mod versions;

pub use guarded::Guarded;
pub use index::{
    default_mode, kept_mode, Change, Entry, FileState, Index, IndexError, NewEntry, ROOT_INO,
};
pub use local_only::is_local_only;
pub use mirror::{
    sync_parent as mirror_sync_parent, Listed, ListedKind, Mirror, MirrorError, Staged, Stat,
    INDEX_DIR, VERSIONS_DIR,
};
pub use relpath::{
    check_child, check_platform_name, check_segment, PathRefused, RelPath, MAX_DEPTH,
    MAX_SEGMENT_BYTES,
};
