//! Writing through the mount. Writes never touch the mirror copy directly: an inode being written
//! has one session with a working copy (a temp file beside the mirror copy, shared by all its
//! writable handles); a close (flush) or fsync hands the finished working copy to the engine's
//! save, which backs up, renames it into place atomically and pushes; an fsync also makes the
//! saved copy durable. A crash therefore never leaves a half-written mirror copy, and nothing
//! leaves before close or fsync. The working
//! copies are the one local storage outside `cache/`: this module creates, writes and removes
//! them itself (they are temp files in the mirror's temp folder, never a mirror copy).
//! Also here: namespace changes (create, mkdir, unlink, rmdir, rename); symlinks, pipes and
//! sockets are `links.rs`'s.

use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::backups;
use super::error::{FsError, Result};
use super::links::Special;
use super::ops::{Attr, MountFs, Opened};
use crate::cache::kept_mode;
use crate::sync::cell::{Claim, Claimed, WriteSession};

/// The session's working file, if it has one (the caller holds the gate).
fn work_file(gate: &Claimed<'_>) -> Option<Arc<File>> {
    let state = gate.state();
    state
        .session
        .as_ref()?
        .work
        .as_ref()
        .map(|(_, f)| f.clone())
}

/// Marks the session failed with the errno of `e` (the caller holds the gate).
fn mark_failed(gate: &Claimed<'_>, errno: i32) {
    if let Some(s) = gate.state().session.as_mut() {
        s.failed = Some(errno);
    }
}

/// One writer leaves the session (the caller holds the gate, so nobody joins before it ends the
/// session); for the last one, what the session holds (whether it is dirty, failed, and its
/// working copy).
fn leave_session(gate: &Claimed<'_>) -> Option<LastWriter> {
    let mut state = gate.state();
    let s = state.session.as_mut()?;
    s.writers = s.writers.saturating_sub(1);
    (s.writers == 0).then(|| LastWriter {
        dirty: s.dirty,
        failed: s.failed,
        work: s.work.clone(),
        mtime_set: s.mtime_set,
    })
}

fn name_str(name: &OsStr) -> Result<&str> {
    name.to_str().ok_or(FsError::NotUtf8)
}

fn refuse_backups(ino: u64) -> Result<()> {
    if backups::is_backup_ino(ino) {
        return Err(FsError::ReadOnly(
            "sites-versions/ is read-only: copy a version out to restore it",
        ));
    }
    Ok(())
}

/// What the last writer leaving a session finds in it.
struct LastWriter {
    dirty: bool,
    failed: Option<i32>,
    work: Option<(PathBuf, Arc<File>)>,
    mtime_set: Option<i64>,
}

impl MountFs {
    /// Whether `ino` has a write session (without waiting for its gate).
    fn has_session(&self, ino: u64) -> bool {
        self.engine
            .cells
            .peek(ino, |c| c.session.is_some())
            .unwrap_or(false)
    }

    /// Inodes with a write session now.
    fn session_inos(&self) -> Vec<u64> {
        self.engine.cells.inos_where(|c| c.session.is_some())
    }

    /// Holds the write gate of `ino` (its cell's `Claim::Gate`) until dropped: one change to a
    /// file's working copy at a time (a write, a truncate, a save from taking the working copy
    /// to the new mirror copy being in place, a close). Without it a write arriving while a save
    /// moves the working copy into place started a fresh working copy from the old mirror copy,
    /// and what was written before the save was lost from the next one.
    fn gate(&self, ino: u64) -> Claimed<'_> {
        self.engine.cells.claim(ino, Claim::Gate)
    }

    /// Size and time of the working copy, while one exists. For a file open for writing, this
    /// waits for the write, truncate or save under way (its gate): an answer taken in the middle
    /// gave the size before the write, and the kernel put another process's O_APPEND write over
    /// it. No session: nothing to wait for.
    pub(super) fn working_metadata(&self, ino: u64) -> Option<Metadata> {
        if !self.has_session(ino) {
            return None;
        }
        let gate = self.gate(ino);
        let file = work_file(&gate)?;
        file.metadata().ok()
    }

    /// The file to read for a writable handle: the working copy, else the mirror copy.
    pub(super) fn current_copy(&self, ino: u64) -> Result<Arc<File>> {
        let gate = self.gate(ino);
        if let Some(f) = work_file(&gate) {
            return Ok(f);
        }
        let path = self.engine.mirror_path(ino).ok_or(FsError::NotFound)?;
        Ok(Arc::new(File::open(path)?))
    }

    /// Starts (or joins) the write session of `ino`.
    fn join_session(&self, ino: u64, truncate: bool, new_file: bool) -> Result<()> {
        let gate = self.gate(ino);
        {
            let mut state = gate.state();
            let s = state.session.get_or_insert_with(WriteSession::default);
            s.writers += 1;
            s.dirty |= new_file;
        }
        if truncate {
            self.ensure_work(&gate, ino, Some(0))?;
            if let Some(s) = gate.state().session.as_mut() {
                s.dirty = true;
            }
        }
        Ok(())
    }

    /// The creator joins its new file's session: the working copy starts empty if it is the
    /// first writer, and is left as it is if another got there first.
    fn join_created(&self, ino: u64) -> Result<()> {
        let gate = self.gate(ino);
        let first = {
            let mut state = gate.state();
            let s = state.session.get_or_insert_with(WriteSession::default);
            let first = s.writers == 0 && s.work.is_none();
            s.writers += 1;
            s.dirty = true;
            first
        };
        if first {
            self.ensure_work(&gate, ino, Some(0))?;
        }
        Ok(())
    }

    /// Makes the working copy of the session exist (the caller holds the file's `gate`): a copy
    /// of the mirror copy (or empty, when truncating to 0); returns its open file. The copy is
    /// made outside the cell's lock: the gate keeps every other change of the session out.
    fn ensure_work(
        &self,
        gate: &Claimed<'_>,
        ino: u64,
        truncate_to: Option<u64>,
    ) -> Result<Arc<File>> {
        let have = {
            let state = gate.state();
            let s = state.session.as_ref().ok_or(FsError::BadHandle)?;
            if let Some(errno) = s.failed {
                // Sticky until every writer has closed: a write the kernel sent before it saw
                // the failure must not start a fresh working copy that a later close would save
                // (a file of holes and one late chunk).
                return Err(FsError::EarlierWriteFailed { errno });
            }
            s.work.as_ref().map(|(_, f)| f.clone())
        };
        let file = match have {
            Some(f) => f,
            None => {
                // A file renamed over or deleted while open still takes writes (as POSIX has
                // it); they go to a working copy that is dropped at close.
                let temp = self.engine.temp_file();
                let mirror = self.engine.mirror_path(ino);
                if truncate_to != Some(0) {
                    match mirror.map(|m| std::fs::copy(&m, &temp)) {
                        Some(Ok(_)) => {}
                        Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
                            let _ = std::fs::remove_file(&temp);
                            return Err(e.into());
                        }
                        _ => {}
                    }
                }
                let file = Arc::new(
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&temp)?,
                );
                if let Some(s) = gate.state().session.as_mut() {
                    s.work = Some((temp, file.clone()));
                }
                file
            }
        };
        if let Some(size) = truncate_to {
            file.set_len(size)?;
        }
        Ok(file)
    }

    /// Opens an existing file for writing (its copy must be on disk).
    pub fn open_write(&self, ino: u64, truncate: bool) -> Result<Opened> {
        refuse_backups(ino)?;
        let e = self.live_file(ino)?;
        if e.local.is_none() && !truncate {
            return Err(FsError::NotFetched("see the log".into()));
        }
        self.join_session(ino, truncate, e.local.is_none())?;
        Ok(Opened {
            fh: self.add_handle(ino, None, true),
            keep_cache: false,
        })
    }

    /// create(2): a new empty file with permission bits `mode` (the kernel applied the umask),
    /// opened for writing.
    pub fn create(&self, parent: u64, name: &OsStr, mode: u32) -> Result<(Attr, Opened)> {
        refuse_backups(parent)?;
        let name = name_str(name)?;
        let e = self
            .engine
            .create_file(parent, name, kept_mode(mode, false))?;
        self.touch(parent);
        // A created file starts empty, now: its working copy must not start from a mirror copy
        // that a pull may write meanwhile (a name deleted and made again takes the platform's
        // node back, and a platform edit of that node would have become its first content).
        // Unless another writer opened it between its creation and here (`echo A >> f` racing
        // `echo B >> f`): what that one wrote is in the working copy and must stay.
        self.join_created(e.ino)?;
        let fh = self.add_handle(e.ino, None, true);
        Ok((
            self.entry_attr(&e),
            Opened {
                fh,
                keep_cache: false,
            },
        ))
    }

    /// A write. On an O_APPEND descriptor it goes to the end of the working copy, whatever
    /// offset the kernel sent: the kernel computes that offset from the size it has cached, and
    /// its cache can be behind the working copy when several processes append to a new file at
    /// once (seen under load: two inode objects for one new file, one holding the size before
    /// another process's append, so that append was written over; issue 14). A local disk
    /// appends atomically at the end, and so does this. When the place differs, the kernel is
    /// told to drop its cached size and pages.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        let (ino, append) = self.writable_handle(fh)?;
        let gate = self.gate(ino);
        let file = self.working_file(&gate, ino)?;
        let offset = match append {
            true => {
                let end = file.metadata()?.len();
                if end != offset {
                    tracing::debug!(
                        ino,
                        kernel = offset,
                        end,
                        "an append placed at the end of the file"
                    );
                    self.engine.notify_content(ino);
                }
                end
            }
            false => offset,
        };
        if let Err(e) = file.write_all_at(data, offset) {
            // The working copy is now incomplete: the saved copy must stay as it was.
            mark_failed(&gate, e.raw_os_error().unwrap_or(libc::EIO));
            return Err(e.into());
        }
        Ok(data.len() as u32)
    }

    /// fallocate(2) on the working copy: mode 0 (reserve, growing the file) and
    /// FALLOC_FL_KEEP_SIZE (reserve only). The others (punching or collapsing holes) are
    /// EOPNOTSUPP: they have no meaning on the platform's side, which stores whole files.
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> Result<()> {
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            // EOPNOTSUPP (ENOTSUP on Linux), quietly: programs try it and fall back.
            return Err(FsError::NotSupported);
        }
        let ino = self.writable_ino(fh)?;
        let gate = self.gate(ino);
        let file = self.working_file(&gate, ino)?;
        let (offset, length) = (
            i64::try_from(offset).map_err(|_| FsError::TooLarge("offset"))?,
            i64::try_from(length).map_err(|_| FsError::TooLarge("length"))?,
        );
        // SAFETY: fallocate on a file descriptor this process owns for the call's duration.
        let answer = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, length) };
        if answer != 0 {
            let e = std::io::Error::last_os_error();
            mark_failed(&gate, e.raw_os_error().unwrap_or(libc::EIO));
            return Err(e.into());
        }
        Ok(())
    }

    /// The session's working copy, made if need be; the session counts as written (under the
    /// caller's gate).
    fn working_file(&self, gate: &Claimed<'_>, ino: u64) -> Result<Arc<File>> {
        let file = match self.ensure_work(gate, ino, None) {
            Ok(f) => f,
            Err(FsError::BadHandle) => return Err(FsError::BadHandle),
            Err(e) => {
                mark_failed(gate, e.errno());
                return Err(e);
            }
        };
        if let Some(s) = gate.state().session.as_mut() {
            s.dirty = true;
            s.written = true;
            s.mtime_set = None;
        }
        Ok(file)
    }

    fn writable_ino(&self, fh: u64) -> Result<u64> {
        self.writable_handle(fh).map(|(ino, _)| ino)
    }

    /// The inode of a handle open for writing, and whether it appends.
    fn writable_handle(&self, fh: u64) -> Result<(u64, bool)> {
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        match handles.get(&fh) {
            Some(h) if h.writable => Ok((h.ino, h.append)),
            Some(_) => Err(FsError::NotWritable),
            None => Err(FsError::BadHandle),
        }
    }

    /// Notes that `fh` was opened with O_APPEND.
    pub fn note_append(&self, fh: u64) {
        if let Some(h) = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&fh)
        {
            h.append = true;
        }
    }

    /// Notes who opened `fh` for writing (the mount: the opener's thread), for `flush`.
    pub fn note_opener(&self, fh: u64, process: Option<u32>) {
        if let Some(h) = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&fh)
        {
            h.opener = process;
        }
    }

    /// close(2): a file written to is saved before close returns (and goes up at once), so a
    /// rename right after close sees the content. A close that wrote nothing (the shell's
    /// `> file` closes a duplicate of the descriptor before the command writes) saves nothing:
    /// the last close (release) does, so one redirection is one save. Neither does a close by
    /// another process than the opener: a child forked while the file was open closing its
    /// inherited copy (at exec, or as `{ a; b; } > file` runs each command) would save whatever
    /// the writer had written so far; the opener's close, or the last one, saves.
    /// `same_as_opener` tells, given the opener noted at open ([`MountFs::note_opener`]),
    /// whether the closer is that process (None: it can't be told, and the close saves).
    pub fn flush(&self, fh: u64, same_as_opener: impl FnOnce(u32) -> Option<bool>) -> Result<()> {
        let (ino, opener) = {
            let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
            match handles.get(&fh) {
                Some(h) if h.writable => (h.ino, h.opener),
                _ => return Ok(()),
            }
        };
        let written = self
            .engine
            .cells
            .peek(ino, |c| c.session.as_ref().is_some_and(|s| s.written))
            .unwrap_or(false);
        if !written {
            return Ok(());
        }
        if let Some(opener) = opener {
            if same_as_opener(opener) == Some(false) {
                tracing::debug!(ino, opener, "an inherited descriptor closed: not a save");
                return Ok(());
            }
        }
        self.save(ino)
    }

    /// fsync(2), fdatasync(2) (`data_only`): whatever changed is saved now, and the saved copy
    /// and the folder naming it are on the disk before the reply, as a local disk has it. (A
    /// close saves without this: docs/semantics.md, "Crash safety".) On a read-only descriptor
    /// too: what an earlier close saved is made durable.
    pub fn fsync(&self, fh: u64, data_only: bool) -> Result<()> {
        let ino = {
            let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
            match handles.get(&fh) {
                Some(h) if backups::is_backup_ino(h.ino) => return Ok(()),
                Some(h) => h.ino,
                None => return Ok(()),
            }
        };
        if self.writable_ino(fh).is_ok() {
            self.save(ino)?;
        }
        Ok(self.engine.make_durable(ino, data_only)?)
    }

    /// fsync(2) of a folder (FUSE fsyncdir): the names in its mirror folder are on the disk.
    pub fn fsync_dir(&self, ino: u64) -> Result<()> {
        if backups::is_backup_ino(ino) {
            return Ok(());
        }
        Ok(self.engine.make_durable(ino, false)?)
    }

    fn save(&self, ino: u64) -> Result<()> {
        let gate = self.gate(ino);
        if self.engine.index.get(ino).is_none_or(|e| e.tombstone) {
            // Unlinked (or replaced) while open: its descriptors keep using the working copy
            // until the last close drops it; nothing is saved.
            return Ok(());
        }
        let (work, kept_mtime, failed) = {
            let mut state = gate.state();
            let Some(s) = state.session.as_mut() else {
                return Ok(());
            };
            if !s.dirty {
                return Ok(());
            }
            s.dirty = false;
            s.written = false;
            let kept_mtime = s.mtime_set.take();
            match s.failed {
                // The session stays failed until its last writer closes.
                Some(errno) => (s.work.take(), kept_mtime, Some(errno)),
                None => (s.work.clone(), kept_mtime, None),
            }
        };
        if let Some(errno) = failed {
            // A write failed: drop the incomplete working copy, keep the saved copy, and say so.
            // Closed before what follows: its space (a full disk) is free only once it is.
            if let Some((path, file)) = work {
                drop(file);
                let _ = std::fs::remove_file(path);
            }
            let path = self.engine.index.path(ino).unwrap_or_default();
            tracing::warn!(%path, errno, "a write failed (disk full?): the file keeps its last saved content");
            self.engine.save_failed(ino);
            return Err(FsError::WriteFailed { errno });
        }
        // The working copy stays in the session (its size is what getattr answers) until the
        // index holds the saved size: an answer from the old size in between would make the
        // kernel put the next O_APPEND write of another process over this one's data.
        let saved = self.commit(ino, work, kept_mtime);
        if let Some(s) = gate.state().session.as_mut() {
            s.work = None;
        }
        saved
    }

    /// Hands a finished working copy to the engine's save (or, with none, pushes the file as it
    /// is); then keeps `mtime_set`, a time set on the open file, instead of the save's time.
    fn commit(
        &self,
        ino: u64,
        work: Option<(PathBuf, Arc<File>)>,
        mtime_set: Option<i64>,
    ) -> Result<()> {
        if self.engine.index.get(ino).is_none_or(|e| e.tombstone) {
            // Deleted or replaced while open: what was written to it goes with it.
            if let Some((path, _)) = work {
                let _ = std::fs::remove_file(path);
            }
            return Ok(());
        }
        match work {
            Some((path, file)) => {
                // The time set on the open file, given again now (a write after it moved it):
                // the working copy becomes the mirror copy, and the save records the time in
                // the same index write as the content (`tar x` sets one on every file).
                if let Some(ms) = mtime_set {
                    let _ = file.set_modified(
                        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
                    );
                }
                // No fsync here: a close keeps the file as a local disk does (the program's own
                // fsync makes it durable: `fsync`). Nothing is lost to a `kill -9`: the page
                // cache outlives this process.
                drop(file);
                match self.engine.save_file(ino, &path, mtime_set) {
                    Ok(()) => Ok(()),
                    // Deleted or replaced after the check above: gone with the file, as above.
                    Err(crate::sync::SyncError::Gone) => Ok(()),
                    Err(e) => {
                        let _ = std::fs::remove_file(&path);
                        Err(e.into())
                    }
                }
            }
            // Created and closed with nothing written: an empty file goes up as it is.
            None => {
                self.engine.save_succeeded(ino);
                self.engine.request_push(ino);
                if let Some(ms) = mtime_set {
                    self.engine.keep_mtime(ino, ms)?;
                }
                Ok(())
            }
        }
    }

    pub fn release(&self, fh: u64) -> Result<()> {
        let handle = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh);
        let Some(h) = handle else { return Ok(()) };
        if !h.writable {
            return Ok(());
        }
        // Held to the end: no writer joins while the last one's copy is saved.
        let gate = self.gate(h.ino);
        let Some(LastWriter {
            dirty,
            failed,
            work,
            mtime_set,
        }) = leave_session(&gate)
        else {
            return Ok(());
        };
        let result = match (dirty, failed) {
            (true, None) => self.commit(h.ino, work, mtime_set),
            (_, failed) => {
                // Every handle on the working copy closed before a failure is recorded: an
                // unlinked file's space (a full disk) is free only once they are.
                if let Some(s) = gate.state().session.as_mut() {
                    s.work = None;
                }
                if let Some((path, file)) = work {
                    drop(file);
                    let _ = std::fs::remove_file(path);
                }
                if failed.is_some() {
                    self.engine.save_failed(h.ino);
                }
                Ok(())
            }
        };
        // Ended only now: until the index has the saved size, the working copy's size is what
        // getattr answers (see `save`).
        gate.state().session = None;
        result
    }

    /// setattr: a size change truncates (through the session if the file is open, else as a save
    /// of its own); the mode and times are kept locally (nothing goes up for them: the platform
    /// has neither); the owner is accepted and not kept.
    pub fn setattr(
        &self,
        ino: u64,
        size: Option<u64>,
        mtime: Option<SystemTime>,
        mode: Option<u32>,
    ) -> Result<Attr> {
        if backups::is_backup_ino(ino) && (size.is_some() || mtime.is_some() || mode.is_some()) {
            refuse_backups(ino)?;
        }
        // chmod, chown, utimens, truncate: the status changed.
        self.touch(ino);
        if let Some(mode) = mode {
            // A symlink has no mode of its own (Linux has no lchmod); a file that lost its last
            // name keeps none (nothing will show it again).
            let live = self.engine.index.get(ino).is_some_and(|e| !e.tombstone);
            if live && self.links.attr(ino).is_none() {
                self.engine.keep_mode(ino, mode)?;
            }
        }
        // A symlink, pipe or socket keeps its mode and time in the mount's memory.
        self.links.set(ino, mode, mtime);
        if let Some(size) = size {
            self.live_file(ino)?;
            let open = self.has_session(ino);
            if !open {
                self.join_session(ino, false, false)?;
            }
            {
                let gate = self.gate(ino);
                if gate.state().session.is_some() {
                    self.ensure_work(&gate, ino, Some(size))?;
                    if let Some(s) = gate.state().session.as_mut() {
                        s.dirty = true;
                        s.written = true;
                    }
                }
            }
            if !open {
                // A truncate(2) of a file nobody has open is a save of its own.
                let saved = self.save(ino);
                let gate = self.gate(ino);
                if let Some(last) = leave_session(&gate) {
                    if let Some((path, _)) = last.work {
                        let _ = std::fs::remove_file(path);
                    }
                    gate.state().session = None;
                }
                saved?;
            }
        }
        if let Some(t) = mtime {
            if !backups::is_backup_ino(ino) && self.links.attr(ino).is_none() {
                let ms = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                // Open for writing: the working copy shows the time now, and the save keeps it.
                // When a save is coming (something was written), it records the time with the
                // content, and the index is not written twice (`tar x` sets the time of every
                // file it writes, before close).
                let mut save_keeps_it = false;
                if self.has_session(ino) {
                    let gate = self.gate(ino);
                    let work = {
                        let mut state = gate.state();
                        state.session.as_mut().map(|s| {
                            s.mtime_set = Some(ms);
                            save_keeps_it = s.work.is_some() && s.dirty && s.failed.is_none();
                            s.work.as_ref().map(|(_, f)| f.clone())
                        })
                    };
                    if let Some(Some(f)) = work {
                        let _ = f.set_modified(t);
                    }
                }
                if !save_keeps_it {
                    self.engine.keep_mtime(ino, ms)?;
                }
            }
        }
        self.getattr(ino)
    }

    /// mkdir(2), with permission bits `mode` (the kernel applied the umask).
    pub fn mkdir(&self, parent: u64, name: &OsStr, mode: u32) -> Result<Attr> {
        refuse_backups(parent)?;
        let e = self
            .engine
            .make_dir(parent, name_str(name)?, kept_mode(mode, true))?;
        self.touch(parent);
        Ok(self.entry_attr(&e))
    }

    pub fn unlink(&self, parent: u64, name: &OsStr) -> Result<()> {
        refuse_backups(parent)?;
        let name = name_str(name)?;
        if self.unlink_special(parent, name)? {
            self.touch(parent);
            return Ok(());
        }
        if let Some(e) = self.engine.index.lookup(parent, name) {
            self.keep_open_copy(e.ino)?;
        }
        self.engine.remove_file(parent, name)?;
        self.touch(parent);
        Ok(())
    }

    /// A file still open for writing is about to lose its name (unlink, or a rename over it):
    /// its content moves into the write session's working copy, which its descriptors read and
    /// write until the last close, as an unlinked file on ext4 lives until then. It is never
    /// saved or pushed (`save` skips a file without a live entry; the last close drops it).
    /// Read-only descriptors hold the mirror copy open already.
    pub(super) fn keep_open_copy(&self, ino: u64) -> Result<()> {
        let gate = self.gate(ino);
        let writing = gate.state().session.as_ref().is_some_and(|s| s.writers > 0);
        if writing {
            self.ensure_work(&gate, ino, None)?;
        }
        Ok(())
    }

    /// Attributes of a file that lost its name but is still open (`fstat` on the descriptor).
    pub(super) fn open_orphan_attr(&self, ino: u64) -> Option<Attr> {
        let file = match self.working_copy(ino) {
            Some(f) => f,
            None => self
                .handles
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .find(|h| h.ino == ino)
                .and_then(|h| h.file.clone())?,
        };
        let m = file.metadata().ok()?;
        Some(Attr {
            ino,
            kind: super::ops::Kind::File,
            size: m.len(),
            mtime: m.modified().unwrap_or(std::time::SystemTime::now()),
            perm: 0o644,
            orphan: true,
        })
    }

    pub fn rmdir(&self, parent: u64, name: &OsStr) -> Result<()> {
        refuse_backups(parent)?;
        let name = name_str(name)?;
        // Symlinks (and pipes, sockets) are not in the index: a folder holding one is not empty.
        if let Some(dir) = self
            .engine
            .index
            .lookup(parent, name)
            .filter(|e| e.is_dir())
        {
            if self.has_specials(dir.ino) {
                return Err(FsError::NotEmpty);
            }
        }
        self.engine.remove_dir(parent, name)?;
        self.touch(parent);
        Ok(())
    }

    /// Whether a rename must first fetch the source's copy (it goes up under its new name).
    pub fn rename_needs_fetch(&self, parent: u64, name: &OsStr) -> Option<u64> {
        let e = self.engine.index.lookup(parent, name.to_str()?)?;
        (!e.is_hydrated()).then_some(e.ino)
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: u32,
    ) -> Result<()> {
        refuse_backups(parent)?;
        refuse_backups(new_parent)?;
        const RENAME_NOREPLACE: u32 = 1;
        const RENAME_EXCHANGE: u32 = 2;
        if flags & RENAME_EXCHANGE != 0 {
            return Err(FsError::NoExchange);
        }
        let (name, new_name) = (name_str(name)?, name_str(new_name)?);
        if self.rename_special(
            parent,
            name,
            new_parent,
            new_name,
            flags & RENAME_NOREPLACE != 0,
        )? {
            self.touch(parent);
            self.touch(new_parent);
            return Ok(());
        }
        // Over a symlink, pipe or socket: it goes, once the file is in its place.
        if let Some(source) = self.engine.index.lookup(parent, name) {
            self.replacing_special(
                source.is_dir(),
                new_parent,
                new_name,
                flags & RENAME_NOREPLACE != 0,
            )?;
        }
        // A change not saved yet (its last close is still on the way) is saved under the old
        // name first, so the rename carries it.
        if let Some(e) = self.engine.index.lookup(parent, name) {
            self.save(e.ino)?;
        }
        // A file open for writing that this rename replaces keeps its content for its
        // descriptors (see `keep_open_copy`); a folder holding a symlink, pipe or socket (which
        // the index does not count) is not empty.
        if let Some(target) = self.engine.index.lookup(new_parent, new_name) {
            if !target.is_dir() {
                self.keep_open_copy(target.ino)?;
            } else if self.has_specials(target.ino) {
                return Err(FsError::NotEmpty);
            }
        }
        self.engine.rename(
            parent,
            name,
            new_parent,
            new_name,
            flags & RENAME_NOREPLACE != 0,
        )?;
        self.touch(parent);
        self.touch(new_parent);
        Ok(())
    }

    /// The unsaved working copy of `ino`, if any (readers see what writers closed).
    pub(super) fn working_copy(&self, ino: u64) -> Option<Arc<File>> {
        self.engine
            .cells
            .peek(ino, |c| {
                let s = c.session.as_ref()?;
                s.work.as_ref().map(|(_, f)| f.clone())
            })
            .flatten()
    }

    /// mknod(2): a regular file is a create (as `touch` makes it); a named pipe or a unix
    /// socket's name only where the name is local-only (a segment starting with `.`, and the
    /// other local-only names of docs/semantics.md), since the platform holds neither; devices
    /// never.
    pub fn mknod(&self, parent: u64, name: &OsStr, mode: u32) -> Result<Attr> {
        let special = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => {
                let (attr, opened) = self.create(parent, name, mode)?;
                self.release(opened.fh)?;
                return Ok(attr);
            }
            libc::S_IFIFO => Special::Fifo,
            libc::S_IFSOCK => Special::Socket,
            _ => return Err(FsError::NoDevices),
        };
        self.make_special(parent, name, special, mode)
    }

    /// Saves every open session (unmount): nothing written is left unsaved.
    pub fn save_all(&self) {
        let inos = self.session_inos();
        for ino in inos {
            if let Err(e) = self.save(ino) {
                tracing::warn!(error = %e, "could not save an open file at unmount");
            }
        }
    }
}
