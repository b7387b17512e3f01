//! The mirror: plain files in the platform's layout under one directory, with the index in
//! `.hyperclay/` and backups in `sites-versions/`. Every write lands whole or not at all: a temp
//! file in the same directory, renamed into place. What the program writes on its own behalf
//! (content coming down, backups, its own state) is fsync'ed, renamed, and its directory
//! fsync'ed; a save at a program's close is renamed into place as a local disk keeps it (no
//! fsync of its own: docs/semantics.md, "Crash safety"), and made durable when the program
//! asks for it (`fsync`: [`Mirror::make_durable`]).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::RelPath;
#[cfg(target_os = "linux")]
use nofollow::open_no_symlinks;
use spares::Spares;

#[cfg(target_os = "linux")]
mod nofollow;
mod spares;
use crate::protocol::{Checksum, Checksummer};

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
            MirrorError::Symlink(_) => Some(crate::os::SYMLINK_REFUSED),
        }
    }
}

type Result<T> = std::result::Result<T, MirrorError>;

pub struct Mirror {
    root: PathBuf,
    /// Empty files of the program's own, in [`TEMP_DIR`], each one the empty copy a new file
    /// got at create, swapped out when its first content was saved (Linux only: [`Spares`]).
    spares: Spares,
}

pub const VERSIONS_DIR: &str = "sites-versions";
/// The program's own files inside the mirror (the index, temp files). The mount never shows or
/// accepts this name at its top (fs/), and the platform may not send it (relpath.rs).
pub const INDEX_DIR: &str = ".hyperclay";
/// Temp files live here, never beside user files: a user file can't be mistaken for one and
/// swept at start, and a half-written temp never shows in the mount. Same file system as the
/// mirror, so a rename into place stays atomic.
const TEMP_DIR: &str = ".hyperclay/tmp";

impl Mirror {
    /// Opens (creating if needed) a mirror rooted at `root`. The mirror is the user's alone:
    /// its top folder is made owner-only (another local user can't read the account's files).
    pub fn open(root: &Path) -> Result<Mirror> {
        for dir in [
            root.to_path_buf(),
            root.join(INDEX_DIR),
            root.join(TEMP_DIR),
            root.join(VERSIONS_DIR),
        ] {
            fs::create_dir_all(&dir).map_err(|e| MirrorError::io("creating", &dir, e))?;
        }
        for dir in [root.to_path_buf(), root.join(INDEX_DIR)] {
            crate::os::make_owner_only(&dir)
                .map_err(|e| MirrorError::io("making owner-only", &dir, e))?;
        }
        let root = root
            .canonicalize()
            .map_err(|e| MirrorError::io("resolving", root, e))?;
        Ok(Mirror {
            spares: Spares::new(),
            root,
        })
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

    /// The mirror path of a validated relative path (`blog/post.html`). Reading through it is
    /// safe as is; anything that writes there first calls [`Mirror::ensure_parent`], which
    /// refuses a symlinked folder on the way.
    pub fn path(&self, rel: &RelPath) -> PathBuf {
        if rel.is_root() {
            self.root.clone()
        } else {
            self.root.join(rel.as_str())
        }
    }

    /// Opens the mirror copy at `rel` for reading (a symlink there is refused, not followed).
    pub fn open_read(&self, rel: &RelPath) -> io::Result<File> {
        super::versions::open_nofollow(&self.path(rel))
    }

    /// Opens the mirror copy at `rel` for the sync's own reads (backups, hashing, uploads) never
    /// through a symlink: neither `rel` itself (`O_NOFOLLOW`) nor a folder on the way to it. A
    /// symlink planted in the mirror (a restored backup, another program) must not bring a file
    /// from outside the mirror into `sites-versions/` or up to the platform. (The mount's own
    /// reads use [`Mirror::open_read`]; the local server checks its paths itself.)
    pub fn open_own(&self, rel: &RelPath) -> Result<File> {
        #[cfg(target_os = "linux")]
        if let Some(opened) = open_no_symlinks(&self.path(rel), nix::fcntl::OFlag::O_RDONLY) {
            return opened.map_err(|e| MirrorError::io("reading", &self.path(rel), e));
        }
        if let Some(dir) = rel.parent() {
            self.refuse_symlinks(&dir)?;
        }
        let path = self.path(rel);
        super::versions::open_nofollow(&path).map_err(|e| match e.raw_os_error() {
            Some(crate::os::SYMLINK_REFUSED) => MirrorError::Symlink(path.clone()),
            _ => MirrorError::io("reading", &path, e),
        })
    }

    /// The first symlink on the way to `rel`, `rel` itself included, if any.
    pub fn symlink_on_the_way(&self, rel: &RelPath) -> Option<PathBuf> {
        match self.refuse_symlinks(rel) {
            Err(MirrorError::Symlink(path)) => Some(path),
            _ => None,
        }
    }

    /// Whether something (a file, a folder; a symlink is not followed) is at `rel`.
    pub fn exists(&self, rel: &RelPath) -> bool {
        self.path(rel).symlink_metadata().is_ok()
    }

    /// A temp file in the mirror's own temp folder that removes itself unless committed: an
    /// early return (a refused checksum, a copy that changed meanwhile) leaves nothing behind.
    pub fn stage(&self) -> Staged {
        Staged {
            path: Some(self.temp()),
        }
    }

    /// `bytes` staged durably (written and fsync'ed), ready to commit.
    pub fn stage_bytes(&self, bytes: &[u8]) -> Result<Staged> {
        let staged = self.stage();
        let written = (|| {
            let mut f = File::create(staged.path())?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        written.map_err(|e| MirrorError::io("writing", staged.path(), e))?;
        Ok(staged)
    }

    /// Puts a staged file in place of `rel` (made durable), with `mtime_ms` as its time when
    /// given (a fetched copy carries the platform's, so a later start sees it unchanged).
    pub fn commit_staged(
        &self,
        staged: Staged,
        rel: &RelPath,
        mtime_ms: Option<i64>,
    ) -> Result<()> {
        let target = self.ensure_parent(rel)?;
        if let Some(ms) = mtime_ms {
            if let Ok(f) = File::options().write(true).open(staged.path()) {
                let _ = f.set_modified(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
                );
            }
        }
        let temp = staged.into_path();
        self.commit(&temp, &target)
    }

    /// [`Mirror::commit_staged`] in a folder other programs write to: only over a file that still
    /// holds `expected` (`cache/guarded.rs`).
    pub fn commit_staged_guarded(
        &self,
        staged: Staged,
        rel: &RelPath,
        mtime_ms: Option<i64>,
        expected: Option<&Checksum>,
    ) -> Result<super::Guarded> {
        if let Some(ms) = mtime_ms {
            if let Ok(f) = File::options().write(true).open(staged.path()) {
                let _ = f.set_modified(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
                );
            }
        }
        let temp = staged.into_path();
        self.replace_guarded(&temp, rel, expected)
    }

    /// A mirror file's bytes (`None`: there is none, it can't be read, or it is a symlink or
    /// behind one: never followed, see [`Mirror::open_own`]).
    pub fn read(&self, rel: &RelPath) -> Option<Vec<u8>> {
        let file = self.open_own(rel).ok()?;
        let mut bytes = sized_for(&file, u64::MAX);
        (&file).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// [`Mirror::read_at_most`] for the sync's own reads (an upload): never through a symlink.
    pub fn read_own_at_most(&self, rel: &RelPath, max: u64) -> Result<Option<Vec<u8>>> {
        let path = self.path(rel);
        let file = self.open_own(rel)?;
        let mut bytes = sized_for(&file, max + 1);
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| MirrorError::io("reading", &path, e))?;
        Ok((bytes.len() as u64 <= max).then_some(bytes))
    }

    /// A mirror file's bytes if it holds at most `max` of them (`Ok(None)`: larger). Read with
    /// a cap, so a file growing meanwhile never makes the read unbounded.
    pub fn read_at_most(&self, rel: &RelPath, max: u64) -> Result<Option<Vec<u8>>> {
        let path = self.path(rel);
        let io = |e| MirrorError::io("reading", &path, e);
        let file = File::open(&path).map_err(io)?;
        let mut bytes = sized_for(&file, max + 1);
        file.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
        Ok((bytes.len() as u64 <= max).then_some(bytes))
    }

    /// Sets a mirror file's modification time (best effort: the index holds the time too).
    pub fn set_modified(&self, rel: &RelPath, ms: i64) {
        let file = crate::os::open_nofollow(File::options().write(true), &self.path(rel));
        if let Ok(f) = file {
            let _ = f.set_modified(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
            );
        }
    }

    /// Gives the mirror copy (or folder) at `rel` the permission bits `mode` (an entry's kept
    /// mode: [`disk_mode`] says what of it the disk gets), never through a symlink. Nothing on
    /// systems without modes.
    pub fn set_mode(&self, rel: &RelPath, mode: u32, dir: bool) -> Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = self.path(rel);
            #[cfg(target_os = "linux")]
            let fast = open_no_symlinks(&path, nix::fcntl::OFlag::O_RDONLY);
            #[cfg(not(target_os = "linux"))]
            let fast = None;
            let file = match fast {
                Some(opened) => opened,
                None => {
                    if let Some(parent) = rel.parent() {
                        self.refuse_symlinks(&parent)?;
                    }
                    crate::os::open_nofollow(File::options().read(true), &path)
                }
            }
            .map_err(|e| MirrorError::io("opening", &path, e))?;
            file.set_permissions(fs::Permissions::from_mode(disk_mode(mode, dir)))
                .map_err(|e| MirrorError::io("setting the mode of", &path, e))?;
        }
        #[cfg(not(unix))]
        let _ = (rel, mode, dir);
        Ok(())
    }

    /// Gives `copy` (a staged or working copy about to replace the mirror copy of `rel`) the
    /// permission bits the file keeps: those of `mode` (its entry's kept mode) when there is
    /// one, else those of the copy it replaces (a plain folder's file its user chmod'ed). A
    /// save or a platform change replaces the file, never its mode.
    pub fn carry_mode(&self, copy: &Path, rel: &RelPath, mode: Option<u32>) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let bits = match mode {
                Some(mode) => disk_mode(mode, false),
                None => match fs::symlink_metadata(self.path(rel)) {
                    Ok(m) if m.is_file() => m.permissions().mode() & 0o777,
                    _ => return,
                },
            };
            if let Err(e) = fs::set_permissions(copy, fs::Permissions::from_mode(bits)) {
                tracing::warn!(path = %rel, error = %e, "could not give the new copy its mode");
            }
        }
        #[cfg(not(unix))]
        let _ = (copy, rel, mode);
    }

    /// A new empty file at `rel` (an existing one is emptied). Not fsync'ed: it holds no saved
    /// content (a save replaces it with a finished, fsync'ed copy and makes that rename durable),
    /// so a power cut that forgets it forgets nothing anyone saved, as on a local disk. The
    /// fsync was a third of the per-file fsyncs of `tar x` or `git clone` (BENCHMARKS.md).
    ///
    /// A symlink at `rel` (one the index does not know: planted, or restored from a backup) is
    /// replaced, never followed: `File::create` would empty the file it points to, which may be
    /// outside the mirror.
    pub fn create_empty(&self, rel: &RelPath) -> Result<()> {
        let path = self.ensure_parent(rel)?;
        if self.spares.place(&path) {
            return Ok(());
        }
        let create = || {
            crate::os::open_nofollow(
                File::options().write(true).create(true).truncate(true),
                &path,
            )
        };
        let created = match create() {
            Err(e) if e.raw_os_error() == Some(crate::os::SYMLINK_REFUSED) => {
                tracing::warn!(path = %rel, "a symlink in the mirror where a file is created: replaced, not followed");
                fs::remove_file(&path).and_then(|()| create())
            }
            other => other,
        };
        created
            .map(drop)
            .map_err(|e| MirrorError::io("creating", &path, e))
    }

    /// Removes an empty mirror folder; one already gone is fine.
    pub fn remove_dir(&self, rel: &RelPath) -> Result<()> {
        if let Some(dir) = rel.parent() {
            self.refuse_symlinks(&dir)?;
        }
        let path = self.path(rel);
        match fs::remove_dir(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(MirrorError::io("removing", &path, e))
            }
            _ => Ok(()),
        }
    }

    /// A fresh temp file name in the mirror's own temp folder.
    pub fn temp(&self) -> PathBuf {
        self.root
            .join(TEMP_DIR)
            .join(format!("{:016x}", rand::random::<u64>()))
    }

    /// Writes `bytes` to `rel` atomically.
    pub fn write_atomic(&self, rel: &RelPath, bytes: &[u8]) -> Result<()> {
        let target = self.ensure_parent(rel)?;
        let temp = self.write_temp(bytes)?;
        self.commit(&temp, &target)
    }

    /// A finished, fsync'ed temp file holding `bytes`, ready to be renamed into place.
    fn write_temp(&self, bytes: &[u8]) -> Result<PathBuf> {
        let temp = self.temp();
        let written = (|| {
            let mut f = File::create(&temp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(MirrorError::io("writing", &temp, e));
        }
        Ok(temp)
    }

    /// Where the program keeps its own state about a file: `.hyperclay/<area>/<rel>.<ext>`
    /// (inside the owner-only index folder; `rel` is validated, so it can't lead out).
    fn state_path(&self, area: &str, rel: &RelPath, ext: &str) -> PathBuf {
        self.root
            .join(INDEX_DIR)
            .join(area)
            .join(format!("{}.{ext}", rel.as_str()))
    }

    /// Writes the program's state about `rel` atomically.
    pub fn write_state(&self, area: &str, rel: &RelPath, ext: &str, bytes: &[u8]) -> Result<()> {
        let target = self.state_path(area, rel, ext);
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir).map_err(|e| MirrorError::io("creating", dir, e))?;
        }
        let temp = self.write_temp(bytes)?;
        self.commit(&temp, &target)
    }

    /// The program's state about `rel`, if it holds at most `max` bytes.
    pub fn read_state(&self, area: &str, rel: &RelPath, ext: &str, max: u64) -> Option<Vec<u8>> {
        let file = File::open(self.state_path(area, rel, ext)).ok()?;
        let mut bytes = Vec::new();
        file.take(max + 1).read_to_end(&mut bytes).ok()?;
        (bytes.len() as u64 <= max).then_some(bytes)
    }

    /// Whether the program keeps state about `rel`.
    pub fn has_state(&self, area: &str, rel: &RelPath, ext: &str) -> bool {
        self.state_path(area, rel, ext).is_file()
    }

    /// Moves a finished temp file into place and makes the rename durable.
    pub fn commit(&self, temp: &Path, target: &Path) -> Result<()> {
        self.put_in_place(temp, target)?;
        sync_parent(target)
    }

    /// Moves a finished temp file into place, as a local disk keeps a closed file: whole or not
    /// at all for every process (and across a `kill -9` of this one), durable once the kernel
    /// writes it back or a program's `fsync` asks for it ([`Mirror::make_durable`]).
    pub fn put_in_place(&self, temp: &Path, target: &Path) -> Result<()> {
        if self.spares.exchange(temp, target) {
            return Ok(());
        }
        if let Err(e) = fs::rename(temp, target) {
            let _ = fs::remove_file(temp);
            return Err(MirrorError::io("renaming into place", target, e));
        }
        Ok(())
    }

    /// A program's `fsync` (or `fdatasync`, `data_only`) of `rel`: its mirror copy's content,
    /// then the folder that names it, are on the disk before this returns. Never through a
    /// symlink. A copy not on disk (not fetched yet) has nothing of this program's to flush.
    pub fn make_durable(&self, rel: &RelPath, data_only: bool) -> Result<()> {
        let path = self.path(rel);
        let file = match self.open_own(rel) {
            Ok(f) => f,
            Err(MirrorError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        let synced = match data_only {
            true => file.sync_data(),
            false => file.sync_all(),
        };
        synced.map_err(|e| MirrorError::io("syncing", &path, e))?;
        sync_parent(&path)
    }

    /// A program's `fsync` of the folder `rel` (FUSE fsyncdir): the names in it are on the disk
    /// before this returns.
    pub fn make_folder_durable(&self, rel: &RelPath) -> Result<()> {
        self.refuse_symlinks(rel)?;
        sync_dir(&self.path(rel))
    }

    /// Makes the folders above `rel` (never through a symlink: one there was not made by this
    /// program, and following it could write outside the mirror) and answers `rel`'s path.
    pub fn ensure_parent(&self, rel: &RelPath) -> Result<PathBuf> {
        if let Some(dir) = rel.parent() {
            self.ensure_dir(&dir)?;
        }
        Ok(self.path(rel))
    }

    /// Makes the folder `rel` and those above it, refusing any symlink on the way.
    fn ensure_dir(&self, rel: &RelPath) -> Result<()> {
        // Already there, a folder, with no symlink on the way: one call (Linux), not one per
        // folder of the path.
        #[cfg(target_os = "linux")]
        if !rel.is_root() {
            use nix::fcntl::OFlag;
            if let Some(Ok(_)) =
                open_no_symlinks(&self.path(rel), OFlag::O_PATH | OFlag::O_DIRECTORY)
            {
                return Ok(());
            }
        }
        super::versions::ensure_dir_no_symlinks(&self.root, &self.path(rel))
    }

    pub fn create_dir(&self, rel: &RelPath) -> Result<()> {
        self.ensure_dir(rel)
    }

    /// Renames within the mirror (a platform rename or move coming down).
    pub fn rename(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        let from = self.path(from);
        let to = self.ensure_parent(to)?;
        fs::rename(&from, &to).map_err(|e| MirrorError::io("renaming", &from, e))?;
        sync_parent(&to)
    }

    /// Removes a mirror file (never a folder, never through a symlinked folder).
    pub fn remove_file(&self, rel: &RelPath) -> Result<()> {
        let path = self.path(rel);
        if let Some(dir) = rel.parent() {
            self.refuse_symlinks(&dir)?;
        }
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(MirrorError::io("removing", &path, e))
            }
            _ => Ok(()),
        }
    }

    fn refuse_symlinks(&self, rel: &RelPath) -> Result<()> {
        #[cfg(target_os = "linux")]
        if !rel.is_root() {
            // All there and no symlink on the way: one call. Anything else (a name missing on
            // the way, a symlink) goes through the walk below, which says which name is a link.
            if let Some(Ok(_)) = open_no_symlinks(&self.path(rel), nix::fcntl::OFlag::O_PATH) {
                return Ok(());
            }
        }
        let mut path = self.root.clone();
        for segment in rel.split('/').filter(|s| !s.is_empty()) {
            path.push(segment);
            if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(MirrorError::Symlink(path));
            }
        }
        Ok(())
    }

    /// What is at `rel` (`None`: nothing), a symlink not followed: a regular file's size and
    /// modification time, or `Folder`/`Other` (the start-up scan's check for changes made while
    /// no mount ran, which never hashes through a symlink).
    pub fn stat(&self, rel: &RelPath) -> Option<ListedKind> {
        let meta = fs::symlink_metadata(self.path(rel)).ok()?;
        Some(if meta.is_file() {
            ListedKind::File(Stat::of(&meta))
        } else if meta.is_dir() {
            ListedKind::Folder
        } else {
            ListedKind::Other
        })
    }

    /// What the folder at `rel` holds: names that are UTF-8, each with what it is (symlinks
    /// not followed). Empty when it is not a readable folder.
    pub fn list(&self, rel: &RelPath) -> Vec<Listed> {
        let Ok(entries) = fs::read_dir(self.path(rel)) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|item| {
                let name = item.file_name().into_string().ok()?;
                let kind = item.file_type().ok()?;
                let what = if kind.is_dir() {
                    ListedKind::Folder
                } else if kind.is_file() {
                    ListedKind::File(Stat::of(&item.metadata().ok()?))
                } else {
                    ListedKind::Other
                };
                Some(Listed { name, what })
            })
            .collect()
    }

    /// The symlinks in the folder at `rel` (never through a symlinked folder): each name that is
    /// UTF-8, with its target and modification time. Read, never followed.
    pub fn links_in(&self, rel: &RelPath) -> Vec<(String, String, std::time::SystemTime)> {
        if self.refuse_symlinks(rel).is_err() {
            return Vec::new();
        }
        let Ok(entries) = fs::read_dir(self.path(rel)) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|item| item.file_type().is_ok_and(|t| t.is_symlink()))
            .filter_map(|item| {
                let name = item.file_name().into_string().ok()?;
                let target = fs::read_link(item.path()).ok()?;
                let mtime = fs::symlink_metadata(item.path()).ok()?.modified().ok()?;
                Some((name, target.to_string_lossy().into_owned(), mtime))
            })
            .collect()
    }

    /// Makes a symlink at `rel` pointing to `target` (a local-only thing: never synced, never
    /// followed by the program), refusing a symlinked folder on the way.
    pub fn make_link(&self, rel: &RelPath, target: &Path) -> Result<()> {
        let path = self.ensure_parent(rel)?;
        #[cfg(unix)]
        let made = std::os::unix::fs::symlink(target, &path);
        #[cfg(not(unix))]
        let made: io::Result<()> = {
            let _ = target;
            Err(io::ErrorKind::Unsupported.into())
        };
        made.map_err(|e| MirrorError::io("making a symlink", &path, e))
    }

    /// The checksum and size of the mirror file at `rel`, never through a symlink.
    pub fn checksum_at(&self, rel: &RelPath) -> Result<(Checksum, u64)> {
        let file = self.open_own(rel)?;
        Self::checksum_file(file, &self.path(rel))
    }

    /// The checksum of a file of the program's own (a staged or working copy), read in chunks;
    /// a symlink there is refused, not followed.
    pub fn checksum_of(path: &Path) -> Result<(Checksum, u64)> {
        let file = super::versions::open_nofollow(path).map_err(|e| match e.raw_os_error() {
            Some(crate::os::SYMLINK_REFUSED) => MirrorError::Symlink(path.to_path_buf()),
            _ => MirrorError::io("reading", path, e),
        })?;
        Self::checksum_file(file, path)
    }

    fn checksum_file(mut file: File, path: &Path) -> Result<(Checksum, u64)> {
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

    /// Removes temp files a crash left behind (they are never the only copy of anything). Only
    /// the program's own temp folder is swept: no user file is ever taken for a temp file.
    pub fn sweep_temps(&self) {
        for dir in [self.root.join(TEMP_DIR), self.root.join(INDEX_DIR)] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let ours = dir.ends_with(TEMP_DIR) || name.starts_with("orphan-");
                if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// The permission bits a mirror copy (or folder) gets for an entry's kept `mode`: its `rwx`
/// bits (set-id and sticky bits stay in the index: the mirror is not a nosuid mount), always
/// readable and writable by its owner (the program reads every copy it pushes and replaces;
/// the mount shows the mode exactly as kept).
#[cfg_attr(not(unix), allow(dead_code))]
pub fn disk_mode(mode: u32, dir: bool) -> u32 {
    (mode & 0o777) | if dir { 0o700 } else { 0o600 }
}

/// A file's size and modification time, as the disk has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    /// Milliseconds since the epoch.
    pub mtime_ms: i64,
    /// When the file last changed as far as the disk can tell (`os::last_change_ms`: never
    /// later than a write it lost), milliseconds since the epoch.
    pub changed_ms: i64,
}

impl Stat {
    fn of(meta: &fs::Metadata) -> Stat {
        Stat {
            size: meta.len(),
            mtime_ms: crate::os::mtime_ms(meta),
            changed_ms: crate::os::last_change_ms(meta),
        }
    }
}

/// One name in a mirror folder ([`Mirror::list`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub what: ListedKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListedKind {
    Folder,
    File(Stat),
    /// A symlink, a device, a socket: never adopted.
    Other,
}

/// A temp file of the mirror's, removed on drop unless committed ([`Mirror::commit_staged`]).
pub struct Staged {
    path: Option<PathBuf>,
}

impl Staged {
    pub fn path(&self) -> &Path {
        self.path
            .as_deref()
            .expect("a staged file has its path until committed")
    }

    /// Opens the staged file for writing (a download streams into it).
    pub async fn create(&self) -> Result<tokio::fs::File> {
        let path = self.path();
        tokio::fs::File::create(path)
            .await
            .map_err(|e| MirrorError::io("creating", path, e))
    }

    fn into_path(mut self) -> PathBuf {
        self.path
            .take()
            .expect("a staged file has its path until committed")
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// fsync of the directory holding `path`, so that a rename survives a crash. Windows can't
/// flush a folder (it opens as a file only with backup semantics, and flushing it is refused):
/// there NTFS's own journal of the rename is what keeps it, written within seconds; a power cut
/// in between may bring back the name's previous content (README, "Other systems").
pub fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// fsync of the directory `dir` (nothing on Windows, see [`sync_parent`]).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(windows)]
    {
        let _ = dir;
        Ok(())
    }
    #[cfg(not(windows))]
    {
        let d = File::open(dir).map_err(|e| MirrorError::io("opening", dir, e))?;
        d.sync_all().map_err(|e| MirrorError::io("syncing", dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mirror::open(dir.path()).unwrap();
        let rel = RelPath::parse("a/b.html").unwrap();
        m.write_atomic(&rel, b"one").unwrap();
        m.write_atomic(&rel, b"two").unwrap();
        assert_eq!(fs::read(m.path(&rel)).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(m.path(&rel.parent().unwrap()))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("b.html")]);
    }

    fn temps(m: &Mirror) -> usize {
        fs::read_dir(m.root().join(TEMP_DIR)).map_or(0, |d| d.count())
    }

    /// A staged file nobody commits (a checksum refused, a copy changed meanwhile) is gone with
    /// it; a committed one is in place with the time it was given, and no temp is left.
    #[test]
    fn staged_files_clean_up_after_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mirror::open(dir.path()).unwrap();
        let abandoned = m.stage_bytes(b"refused").unwrap();
        assert!(abandoned.path().exists());
        drop(abandoned);
        assert_eq!(temps(&m), 0);
        let rel = RelPath::parse("d/e.html").unwrap();
        let staged = m.stage_bytes(b"kept").unwrap();
        m.commit_staged(staged, &rel, Some(1_700_000_000_000))
            .unwrap();
        assert_eq!(m.read(&rel).unwrap(), b"kept");
        let mtime = fs::metadata(m.path(&rel)).unwrap().modified().unwrap();
        assert_eq!(
            mtime,
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_000)
        );
        assert_eq!(temps(&m), 0);
        assert_eq!(m.read_at_most(&rel, 4).unwrap().unwrap(), b"kept");
        assert!(m.read_at_most(&rel, 3).unwrap().is_none(), "over the cap");
    }
}

#[cfg(all(test, unix))]
mod symlink_tests {
    use super::*;

    /// A symlink anywhere on the way, the last name included, is refused (and named) by every
    /// check, whichever way it is made (one `openat2` on Linux, the walk elsewhere).
    #[test]
    fn a_symlink_on_the_way_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.txt"), b"secret").unwrap();
        let m = Mirror::open(&dir.path().join("mirror")).unwrap();
        m.write_atomic(&RelPath::parse("a/b/real.txt").unwrap(), b"mine")
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), m.root().join("a/link")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            m.root().join("a/b/file-link"),
        )
        .unwrap();
        let through = RelPath::parse("a/link/secret.txt").unwrap();
        let last = RelPath::parse("a/b/file-link").unwrap();
        assert_eq!(
            m.symlink_on_the_way(&through),
            Some(m.root().join("a/link"))
        );
        assert_eq!(m.symlink_on_the_way(&last), Some(m.path(&last)));
        assert_eq!(
            m.symlink_on_the_way(&RelPath::parse("a/b/real.txt").unwrap()),
            None
        );
        assert_eq!(
            m.symlink_on_the_way(&RelPath::parse("a/b/none/x").unwrap()),
            None
        );
        assert!(
            matches!(m.open_own(&through), Err(MirrorError::Symlink(p)) if p == m.root().join("a/link"))
        );
        assert!(matches!(m.open_own(&last), Err(MirrorError::Symlink(_))));
        assert!(m.read(&through).is_none() && m.read(&last).is_none());
        let missing = m.open_own(&RelPath::parse("a/b/none.txt").unwrap());
        assert!(
            matches!(missing, Err(MirrorError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound)
        );
        assert_eq!(
            m.read(&RelPath::parse("a/b/real.txt").unwrap()).unwrap(),
            b"mine"
        );
        assert!(m
            .set_mode(&RelPath::parse("a/link/secret.txt").unwrap(), 0o600, false)
            .is_err());
        assert!(matches!(
            m.ensure_parent(&RelPath::parse("a/link/new.txt").unwrap()),
            Err(MirrorError::Symlink(_))
        ));
        assert!(m
            .create_empty(&RelPath::parse("a/link/new.txt").unwrap())
            .is_err());
        assert!(!outside.path().join("new.txt").exists());
        assert_eq!(
            fs::read(outside.path().join("secret.txt")).unwrap(),
            b"secret"
        );
    }

    /// A new file's empty copy swapped out by its first save is reused for the next new file
    /// (Linux), which gets it empty, with a fresh file's mode and time; what else a save swaps
    /// out (content, another mode, a second link) is removed as the rename removed it.
    #[test]
    fn empty_copies_swapped_out_are_reused_empty() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let m = Mirror::open(dir.path()).unwrap();
        let one = RelPath::parse("d/one.txt").unwrap();
        m.create_empty(&one).unwrap();
        let fresh_mode = fs::metadata(m.path(&one)).unwrap().mode() & 0o7777;
        let empty_ino = fs::metadata(m.path(&one)).unwrap().ino();
        let work = m.temp();
        fs::write(&work, b"content one").unwrap();
        m.put_in_place(&work, &m.path(&one)).unwrap();
        assert_eq!(fs::read(m.path(&one)).unwrap(), b"content one");
        std::thread::sleep(std::time::Duration::from_millis(200));
        let before = std::time::SystemTime::now();
        let two = RelPath::parse("d/two.txt").unwrap();
        m.create_empty(&two).unwrap();
        let meta = fs::symlink_metadata(m.path(&two)).unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(meta.ino(), empty_ino, "the spare was reused");
        }
        assert!(meta.is_file() && meta.len() == 0);
        assert_eq!(meta.mode() & 0o7777, fresh_mode);
        assert!(meta.modified().unwrap() >= before - std::time::Duration::from_millis(50));
        // Not empty, or another mode, or linked elsewhere: removed, never reused.
        let three = RelPath::parse("d/three.txt").unwrap();
        m.write_atomic(&three, b"old content").unwrap();
        let work = m.temp();
        fs::write(&work, b"new").unwrap();
        m.put_in_place(&work, &m.path(&three)).unwrap();
        fs::set_permissions(m.path(&two), fs::Permissions::from_mode(0o600)).unwrap();
        let work = m.temp();
        fs::write(&work, b"two").unwrap();
        m.put_in_place(&work, &m.path(&two)).unwrap();
        let four = RelPath::parse("d/four.txt").unwrap();
        m.create_empty(&four).unwrap();
        fs::hard_link(m.path(&four), dir.path().join("other-link")).unwrap();
        let work = m.temp();
        fs::write(&work, b"four").unwrap();
        m.put_in_place(&work, &m.path(&four)).unwrap();
        assert_eq!(temps(&m), 0, "nothing kept");
        assert_eq!(fs::read(dir.path().join("other-link")).unwrap(), b"");
        assert_eq!(fs::read(m.path(&three)).unwrap(), b"new");
        // A folder in the way is not swapped: the save fails as the rename did.
        fs::create_dir(m.root().join("d/folder")).unwrap();
        let work = m.temp();
        fs::write(&work, b"x").unwrap();
        assert!(m.put_in_place(&work, &m.root().join("d/folder")).is_err());
        assert!(m.root().join("d/folder").is_dir());
        // Something already where a spare would go: emptied as before, the spare kept.
        let five = RelPath::parse("d/five.txt").unwrap();
        m.create_empty(&five).unwrap();
        let work = m.temp();
        fs::write(&work, b"five").unwrap();
        m.put_in_place(&work, &m.path(&five)).unwrap();
        m.create_empty(&one).unwrap();
        assert_eq!(fs::read(m.path(&one)).unwrap(), b"");
    }

    fn temps(m: &Mirror) -> usize {
        fs::read_dir(m.root().join(TEMP_DIR)).map_or(0, |d| d.count())
    }
}

/// A buffer for reading `file` whole: its size now and one byte more (up to `max`), so the read
/// takes one call and one more that finds the end (an empty `Vec` makes `read_to_end` probe
/// with small reads first: 15 calls for 135 KB).
fn sized_for(file: &File, max: u64) -> Vec<u8> {
    let size = file.metadata().map_or(0, |m| m.len());
    Vec::with_capacity(size.saturating_add(1).min(max).min(MAX_PRESIZE) as usize)
}

/// The most [`sized_for`] reserves ahead: a size read from a file another program is
/// writing is only a hint, and a read that finds more grows the buffer as it goes.
const MAX_PRESIZE: u64 = 64 * 1024 * 1024;
