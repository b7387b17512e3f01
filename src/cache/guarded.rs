//! Putting a file in place in a folder other programs write to (the plain-folder front door):
//! what is replaced must be what the caller last saw there, or a program's save made since would
//! be lost under it. The mount needs none of this: nothing but the engine writes its mirror.
//!
//! On Linux the staged file and the target are swapped in one step (`renameat2` with
//! `RENAME_EXCHANGE`), and the file that was replaced, now at the staged file's name, is looked
//! at afterwards: a save that landed at any moment before the swap is in it, and is swapped back.
//! Elsewhere (and on a file system without the exchange) the target is checked just before a
//! plain rename; a save landing between the check and the rename is lost there, and
//! docs/semantics.md says so.

use std::fs;
use std::path::Path;

use super::mirror::{sync_parent, Mirror, MirrorError};
use super::RelPath;
use crate::protocol::Checksum;

type Result<T> = std::result::Result<T, MirrorError>;

/// What a guarded replacement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded {
    /// The staged file is in place; what it replaced was what the caller expected (or nothing).
    Replaced,
    /// Not replaced: the file there is not what the caller expected (a program saved it since).
    /// It is left as the program saved it, and the staged file is removed.
    Changed,
}

impl Mirror {
    /// Puts the finished file `staged` in place of `rel` if what is there now holds `expected`
    /// (`None`: nothing is expected there, so any file there is a program's).
    pub fn replace_guarded(
        &self,
        staged: &Path,
        rel: &RelPath,
        expected: Option<&Checksum>,
    ) -> Result<Guarded> {
        let target = self.ensure_parent(rel)?;
        let outcome = self.swap_in(staged, rel, &target, expected);
        if outcome.is_err() || outcome.as_ref().is_ok_and(|g| *g == Guarded::Changed) {
            let _ = fs::remove_file(staged);
        }
        outcome
    }

    fn holds(&self, rel: &RelPath, expected: Option<&Checksum>) -> Result<bool> {
        match fs::symlink_metadata(self.path(rel)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(expected.is_none()),
            Err(e) => Err(MirrorError::io("looking at", &self.path(rel), e)),
            Ok(meta) if !meta.is_file() => Ok(false),
            Ok(_) => Ok(Some(&self.checksum_at(rel)?.0) == expected),
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn swap_in(
        &self,
        staged: &Path,
        rel: &RelPath,
        target: &Path,
        expected: Option<&Checksum>,
    ) -> Result<Guarded> {
        use nix::errno::Errno;
        use nix::fcntl::{renameat2, RenameFlags};
        // A few rounds: the target may appear or vanish between two steps.
        for _ in 0..4 {
            match fs::symlink_metadata(target) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if expected.is_some() {
                        // Deleted by a program since: its delete stands.
                        return Ok(Guarded::Changed);
                    }
                    match renameat2(None, staged, None, target, RenameFlags::RENAME_NOREPLACE) {
                        Ok(()) => {
                            sync_parent(target)?;
                            return Ok(Guarded::Replaced);
                        }
                        Err(Errno::EEXIST) => continue,
                        Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {
                            return self.check_then_rename(staged, rel, target, expected)
                        }
                        Err(e) => {
                            return Err(MirrorError::io("renaming into place", target, e.into()))
                        }
                    }
                }
                Err(e) => return Err(MirrorError::io("looking at", target, e)),
                // A folder or a symlink is never swapped away.
                Ok(meta) if !meta.is_file() => return Ok(Guarded::Changed),
                // A file where none was expected: a program's.
                Ok(_) if expected.is_none() => return Ok(Guarded::Changed),
                Ok(_) => {}
            }
            match renameat2(None, staged, None, target, RenameFlags::RENAME_EXCHANGE) {
                Ok(()) => {}
                Err(Errno::ENOENT) => continue,
                Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {
                    return self.check_then_rename(staged, rel, target, expected)
                }
                Err(e) => return Err(MirrorError::io("swapping into place", target, e.into())),
            }
            // `staged` now holds what was in place a moment ago.
            let displaced_ok = fs::symlink_metadata(staged).is_ok_and(|m| m.is_file())
                && Some(&Mirror::checksum_of(staged)?.0) == expected;
            if displaced_ok {
                fs::remove_file(staged).map_err(|e| MirrorError::io("removing", staged, e))?;
                sync_parent(target)?;
                return Ok(Guarded::Replaced);
            }
            // A program saved (or put something else there) before the swap: put it back.
            let ours = Mirror::checksum_of(target).ok();
            renameat2(None, staged, None, target, RenameFlags::RENAME_EXCHANGE)
                .map_err(|e| MirrorError::io("swapping back", target, e.into()))?;
            sync_parent(target)?;
            if Mirror::checksum_of(staged).ok() != ours {
                // Written to again between the two swaps: what it holds is kept as a version.
                if let Ok(bytes) = fs::read(staged) {
                    let kind = crate::protocol::NodeKind::of_file_name(rel.as_str());
                    super::versions::save(&self.versions_root(), rel, kind, &bytes)?;
                }
            }
            return Ok(Guarded::Changed);
        }
        Ok(Guarded::Changed)
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn swap_in(
        &self,
        staged: &Path,
        rel: &RelPath,
        target: &Path,
        expected: Option<&Checksum>,
    ) -> Result<Guarded> {
        self.check_then_rename(staged, rel, target, expected)
    }

    /// Without an atomic exchange: checked, then renamed (the window is documented above).
    fn check_then_rename(
        &self,
        staged: &Path,
        rel: &RelPath,
        target: &Path,
        expected: Option<&Checksum>,
    ) -> Result<Guarded> {
        if !self.holds(rel, expected)? {
            return Ok(Guarded::Changed);
        }
        fs::rename(staged, target)
            .map_err(|e| MirrorError::io("renaming into place", target, e))?;
        sync_parent(target)?;
        Ok(Guarded::Replaced)
    }
}
