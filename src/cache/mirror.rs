//! The mirror: plain files in the platform's layout under one directory, with the index in
//! `.hyperclay/` and backups in `sites-versions/`. Every write lands whole or not at all: a temp
//! file in the same directory, fsync, rename, fsync of the directory.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::protocol::Checksummer;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} is a symlink; refusing to follow it")]
    Symlink(PathBuf),
}

impl MirrorError {
    pub fn io(action: &'static str, path: &Path, source: io::Error) -> MirrorError {
        MirrorError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The OS error behind it, for the kernel's errno.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            MirrorError::Io { source, .. } => source.raw_os_error(),
            MirrorError::Symlink(_) => Some(libc::ELOOP),
        }
    }
}

type Result<T> = std::result::Result<T, MirrorError>;

/// Names that stay in the mirror and never reach the platform (architecture.md, "Push" 6): any
/// segment starting with `.`, editor and browser temp names, `sites-versions/`, `node_modules/`.
pub fn is_local_only(rel_path: &str) -> bool {
    let mut segments = rel_path.split('/').filter(|s| !s.is_empty()).peekable();
    if segments.peek() == Some(&"sites-versions") {
        return true;
    }
    rel_path.split('/').filter(|s| !s.is_empty()).any(|name| {
        name.starts_with('.')
            || name == "node_modules"
            || name.ends_with('~')
            || [".swp", ".swo", ".swx", ".tmp", ".part", ".crdownload"]
                .iter()
                .any(|ext| name.ends_with(ext))
            || (name.starts_with('#') && name.ends_with('#'))
            || name.starts_with("~$")
            || name == "4913"
    })
}

pub struct Mirror {
    root: PathBuf,
}

pub const VERSIONS_DIR: &str = "sites-versions";
const INDEX_DIR: &str = ".hyperclay";
const TEMP_PREFIX: &str = ".hyperclay-tmp-";

impl Mirror {
    /// Opens (creating if needed) a mirror rooted at `root`.
    pub fn open(root: &Path) -> Result<Mirror> {
        for dir in [
            root.to_path_buf(),
            root.join(INDEX_DIR),
            root.join(VERSIONS_DIR),
        ] {
            fs::create_dir_all(&dir).map_err(|e| MirrorError::io("creating", &dir, e))?;
        }
        let root = root
            .canonicalize()
            .map_err(|e| MirrorError::io("resolving", root, e))?;
        Ok(Mirror { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_DIR).join("index.db")
    }

    pub fn versions_root(&self) -> PathBuf {
        self.root.join(VERSIONS_DIR)
    }

    /// The mirror path of a node's relative path (`blog/post.html`).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A fresh temp file name beside `target`, hidden and local-only.
    pub fn temp_beside(target: &Path) -> PathBuf {
        let dir = target.parent().unwrap_or(Path::new("."));
        dir.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()))
    }

    /// Writes `bytes` to `rel` atomically.
    pub fn write_atomic(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        let target = self.path(rel);
        self.ensure_parent(&target)?;
        let temp = Self::temp_beside(&target);
        let written = (|| {
            let mut f = File::create(&temp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(MirrorError::io("writing", &temp, e));
        }
        self.commit(&temp, &target)
    }

    /// Moves a finished temp file into place and makes the rename durable.
    pub fn commit(&self, temp: &Path, target: &Path) -> Result<()> {
        if let Err(e) = fs::rename(temp, target) {
            let _ = fs::remove_file(temp);
            return Err(MirrorError::io("renaming into place", target, e));
        }
        sync_parent(target)
    }

    pub fn ensure_parent(&self, target: &Path) -> Result<()> {
        match target.parent() {
            Some(dir) => fs::create_dir_all(dir).map_err(|e| MirrorError::io("creating", dir, e)),
            None => Ok(()),
        }
    }

    pub fn create_dir(&self, rel: &str) -> Result<()> {
        let dir = self.path(rel);
        fs::create_dir_all(&dir).map_err(|e| MirrorError::io("creating", &dir, e))
    }

    /// Renames within the mirror (a platform rename or move coming down).
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (self.path(from), self.path(to));
        self.ensure_parent(&to)?;
        fs::rename(&from, &to).map_err(|e| MirrorError::io("renaming", &from, e))?;
        sync_parent(&to)
    }

    /// The checksum of a mirror file, read in chunks.
    pub fn checksum_of(path: &Path) -> Result<(String, u64)> {
        let mut file = File::open(path).map_err(|e| MirrorError::io("reading", path, e))?;
        let mut sum = Checksummer::default();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| MirrorError::io("reading", path, e))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            sum.update(&buf[..n]);
        }
        Ok((sum.finish(), total))
    }

    /// Removes temp files a crash left behind (they are never the only copy of anything).
    pub fn sweep_temps(&self) {
        fn walk(dir: &Path) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() && name != INDEX_DIR {
                    walk(&entry.path());
                } else if kind.is_file() && name.starts_with(TEMP_PREFIX) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        walk(&self.root);
        // Writes to files deleted while open.
        if let Ok(entries) = fs::read_dir(self.root.join(INDEX_DIR)) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("orphan-") {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// fsync of the directory holding `path`, so that a rename survives a crash.
pub fn sync_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        let d = File::open(dir).map_err(|e| MirrorError::io("opening", dir, e))?;
        d.sync_all()
            .map_err(|e| MirrorError::io("syncing", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_only_names() {
        for name in [
            ".git/config",
            "a/.b.html",
            "post.html~",
            ".post.html.swp",
            "x.swo",
            "x.swx",
            "a.tmp",
            "f.part",
            "f.crdownload",
            "#post.html#",
            "~$doc.docx",
            "4913",
            "sites-versions/a/b.html",
            "node_modules/x.js",
            "a/node_modules/b",
        ] {
            assert!(is_local_only(name), "{name}");
        }
        for name in [
            "post.html",
            "blog/post.html",
            "img/logo.png",
            "a/sites-versions/b.png",
            "x49130",
        ] {
            assert!(!is_local_only(name), "{name}");
        }
    }

    #[test]
    fn atomic_write_replaces_whole_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mirror::open(dir.path()).unwrap();
        m.write_atomic("a/b.html", b"one").unwrap();
        m.write_atomic("a/b.html", b"two").unwrap();
        assert_eq!(fs::read(m.path("a/b.html")).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(m.path("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("b.html")]);
    }
}
