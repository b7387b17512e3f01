//! The thin FUSE adapter: each callback calls [`MountFs`] and answers with its data or its
//! error's errno. The one wait on the network (opening a file whose copy is not on disk yet)
//! runs as a task on the runtime, so a slow fetch never stalls `ls`.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request,
};

use super::error::FsError;
use super::ops::{Attr, Kind, MountFs};
use super::process;

/// With push invalidation from the engine, long kernel caching is safe (a TTL of 0 would make
/// listings quadratic).
const TTL: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct FuseAdapter {
    fs: Arc<MountFs>,
    runtime: tokio::runtime::Handle,
    uid: u32,
    gid: u32,
}

impl FuseAdapter {
    pub fn new(fs: Arc<MountFs>, runtime: tokio::runtime::Handle) -> FuseAdapter {
        FuseAdapter {
            fs,
            runtime,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        }
    }

    fn attr(&self, a: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: a.mtime,
            mtime: a.mtime,
            ctime: self.fs.ctime(a.ino, a.mtime),
            crtime: a.mtime,
            kind: file_type(a.kind),
            perm: a.perm,
            nlink: if a.kind == Kind::Dir {
                self.fs.dir_links(a.ino)
            } else if a.orphan {
                0
            } else {
                1
            },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Answers an entry request (lookup, mknod, mkdir, symlink): the kernel counts one lookup
    /// of the inode for each entry it is given, so the count is taken here, before the answer
    /// goes out (`fs/kernel.rs`).
    fn answer_entry(&self, reply: ReplyEntry, result: Result<Attr, FsError>, what: &str) {
        match result {
            Ok(a) => {
                self.fs.kernel_took(a.ino);
                reply.entry(&TTL, &self.attr(&a), Generation(0))
            }
            Err(e) => reply.error(errno(&e, what)),
        }
    }
}

impl FuseAdapter {
    /// Runs `answer` once the account's first listing is in the index (or known not to come for
    /// now), so that a first mount never answers "empty" for an account it has not listed yet.
    /// After that it runs at once. `answer` gets EINTR instead if the caller is killed while it
    /// waits.
    fn after_first_listing(
        &self,
        req: &Request,
        what: &'static str,
        answer: impl FnOnce(&FuseAdapter, Option<fuser::Errno>) + Send + 'static,
    ) {
        if self.fs.engine.first_listing.is_settled() {
            return guard(what, || answer(self, None));
        }
        let me = self.clone();
        let tid = req.pid();
        self.runtime.spawn(async move {
            let killed = tokio::select! {
                _ = me.fs.engine.first_listing.settled() => None,
                () = process::killed(tid) => Some(fuser::Errno::from_i32(libc::EINTR)),
            };
            guard(what, || answer(&me, killed));
        });
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
    }
}

fn answer_open(reply: ReplyOpen, result: Result<super::ops::Opened, FsError>) {
    match result {
        Ok(o) => {
            let flags = if o.keep_cache {
                FopenFlags::FOPEN_KEEP_CACHE
            } else {
                FopenFlags::empty()
            };
            reply.opened(FileHandle(o.fh), flags)
        }
        Err(e) => reply.error(errno(&e, "open")),
    }
}

/// Fetches `ino` for the request of thread `tid`, answering EINTR as soon as that thread is being
/// killed: the kernel waits for our answer without end once a request is ours, so a reader
/// killed while a slow platform trickles would hang unkillably otherwise. The fetch runs in its
/// own task and goes on (the next reader finds it done or joins it).
async fn fetch_unless_killed(fs: &Arc<MountFs>, ino: u64, tid: u32) -> Result<(), FsError> {
    let fetching = {
        let fs = fs.clone();
        tokio::spawn(async move { fs.fetch(ino).await })
    };
    tokio::select! {
        done = fetching => done.unwrap_or_else(|e| {
            Err(FsError::NotFetched(e.to_string()))
        }),
        () = process::killed(tid) => {
            tracing::debug!(ino, tid, "the reader was killed while its file was fetched; answered EINTR, the fetch goes on");
            Err(FsError::Interrupted)
        }
    }
}

/// Runs one kernel request. A panic (a bug) must not take the mount down with it: it is logged,
/// the request's reply, dropped unsent, answers EIO (fuser does that on drop), and the mount
/// goes on serving.
fn guard(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        tracing::error!("{what}: a bug stopped this request, answered EIO; the mount goes on");
    }
}

fn errno(e: &FsError, what: &str) -> fuser::Errno {
    if !e.is_routine() {
        tracing::warn!(error = %e, "{what} failed");
    }
    fuser::Errno::from_i32(e.errno())
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Listings with attributes (no lookup per entry); pages dropped when a file changes;
        // O_TRUNC arrives with open (one save, not an empty save and then the content). Each
        // is asked for alone: a kernel without one still gets the others.
        for flag in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_AUTO_INVAL_DATA,
            InitFlags::FUSE_ATOMIC_O_TRUNC,
        ] {
            if config.add_capabilities(flag).is_err() {
                tracing::debug!(?flag, "the kernel does not offer this FUSE capability");
            }
        }
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_write(1 << 20);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_owned();
        self.after_first_listing(req, "lookup", move |me, killed| {
            // A deliberate bug, in debug builds only (the tests'): proves that a panic costs one
            // request, not the mount.
            if cfg!(debug_assertions) && name == ".hyperclay-test-panic" {
                panic!("the test panic");
            }
            if let Some(e) = killed {
                return reply.error(e);
            }
            me.answer_entry(reply, me.fs.lookup(parent.0, &name), "lookup")
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        guard("fallocate", || {
            match self.fs.fallocate(fh.0, offset, length, mode) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "fallocate")),
            }
        });
    }

    /// No ioctl is supported: ENOTTY, as for a plain file on most file systems, and quietly
    /// (fuser's default logs a warning for each, and Python's `open()` asks on every file).
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(fuser::Errno::from_i32(libc::ENOTTY));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        guard("getattr", || match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &self.attr(&a)),
            Err(e) => reply.error(errno(&e, "getattr")),
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        guard("readlink", || match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(&e, "readlink")),
        });
    }

    /// Listings stay in the kernel's cache across opens: a warm `find` or `ls -R` never comes
    /// back here. The kernel drops a folder's cache itself when it changes through the mount;
    /// a change from the platform drops it with a notice (`notify.rs`). `sites-versions/` and
    /// the root (which shows it once the first backup is made) are listed afresh each time.
    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        guard("opendir", || {
            let flags = if super::backups::is_backup_ino(ino.0) || ino.0 == crate::cache::ROOT_INO {
                FopenFlags::empty()
            } else {
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
            };
            reply.opened(FileHandle(0), flags);
        });
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.after_first_listing(req, "readdir", move |me, killed| {
            if let Some(e) = killed {
                return reply.error(e);
            }
            let result = me.fs.readdir(ino.0, offset, |ino, name, a| {
                !reply.add(INodeNo(a.ino), ino, file_type(a.kind), name)
            });
            match result {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "readdir")),
            }
        });
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.after_first_listing(req, "readdirplus", move |me, killed| {
            if let Some(e) = killed {
                return reply.error(e);
            }
            // The entries the kernel will link (and count a lookup for): all but `.` and `..`.
            let mut given = Vec::new();
            let result = me.fs.readdir(ino.0, offset, |next, name, a| {
                // `.` and `..` carry no attributes the kernel may cache under their own inode.
                let full = reply.add(
                    INodeNo(a.ino),
                    next,
                    name,
                    &TTL,
                    &me.attr(&a),
                    Generation(0),
                );
                if !full && name != "." && name != ".." {
                    given.push(a.ino);
                }
                !full
            });
            match result {
                Ok(()) => {
                    for ino in given {
                        me.fs.kernel_took(ino);
                    }
                    reply.ok()
                }
                Err(e) => reply.error(errno(&e, "readdirplus")),
            }
        });
    }

    // `batch_forget` is left to fuser's default, which calls this for each inode: its
    // `ForgetOne` is private in 0.18.
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        guard("forget", || self.fs.kernel_forgot(ino.0, nlookup));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        guard("open", || {
            let write = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
            let truncate = flags.0 & libc::O_TRUNC != 0;
            let append = flags.0 & libc::O_APPEND != 0;
            let opener = (write && req.pid() != 0).then(|| req.pid());
            let open = move |fs: &MountFs| {
                if write {
                    let opened = fs.open_write(ino.0, truncate)?;
                    fs.note_opener(opened.fh, opener);
                    if append {
                        fs.note_append(opened.fh);
                    }
                    Ok(opened)
                } else {
                    fs.open_read(ino.0)
                }
            };
            if self.fs.must_fetch_before_open(ino.0) && !(write && truncate) {
                // The one network wait: off the FUSE threads, and never longer than the caller
                // lives (a killed reader ends at once; the fetch goes on for the next one).
                let fs = self.fs.clone();
                let tid = req.pid();
                self.runtime.spawn(async move {
                    let result = match fetch_unless_killed(&fs, ino.0, tid).await {
                        Ok(()) => open(&fs),
                        Err(e) => Err(e),
                    };
                    answer_open(reply, result)
                });
                return;
            }
            answer_open(reply, open(&self.fs));
        });
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        guard("mknod", || {
            self.answer_entry(reply, self.fs.mknod(parent.0, name, mode), "mknod")
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        guard("create", || match self.fs.create(parent.0, name, mode) {
            Ok((a, o)) => {
                self.fs.kernel_took(a.ino);
                self.fs
                    .note_opener(o.fh, (req.pid() != 0).then(|| req.pid()));
                if flags & libc::O_APPEND != 0 {
                    self.fs.note_append(o.fh);
                }
                reply.created(
                    &TTL,
                    &self.attr(&a),
                    Generation(0),
                    FileHandle(o.fh),
                    FopenFlags::empty(),
                )
            }
            Err(e) => reply.error(errno(&e, "create")),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        guard("write", || match self.fs.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(&e, "write")),
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        guard("fsync", || match self.fs.fsync(fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e, "fsync")),
        });
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        guard("fsyncdir", || match self.fs.fsync_dir(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e, "fsyncdir")),
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        guard("mkdir", || {
            self.answer_entry(reply, self.fs.mkdir(parent.0, name, mode), "mkdir")
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        guard("unlink", || match self.fs.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e, "unlink")),
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        guard("rmdir", || match self.fs.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e, "rmdir")),
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        guard("rename", || {
            let flags = flags.bits();
            let answer = |reply: ReplyEmpty, r: Result<(), FsError>| match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "rename")),
            };
            if let Some(ino) = self.fs.rename_needs_fetch(parent.0, name) {
                // The file goes up under its new name: its bytes must be here first.
                let fs = self.fs.clone();
                let (name, newname) = (name.to_os_string(), newname.to_os_string());
                let tid = req.pid();
                self.runtime.spawn(async move {
                    let result = match fetch_unless_killed(&fs, ino, tid).await {
                        Ok(()) => fs.rename(parent.0, &name, newparent.0, &newname, flags),
                        Err(e) => Err(e),
                    };
                    answer(reply, result)
                });
                return;
            }
            answer(
                reply,
                self.fs.rename(parent.0, name, newparent.0, newname, flags),
            );
        });
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        guard("symlink", || {
            self.answer_entry(
                reply,
                self.fs.symlink(parent.0, link_name, target),
                "symlink",
            )
        });
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        guard("link", || {
            // The platform has no hard links.
            reply.error(fuser::Errno::from_i32(libc::EPERM));
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        guard("setxattr", || {
            reply.error(fuser::Errno::from_i32(libc::ENOTSUP));
        });
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        // ENOSYS: the kernel then answers EOPNOTSUPP (the same errno as ENOTSUP) to every later
        // `getxattr` itself, without asking (issue 25: it asks for `security.capability` on
        // every write and `setattr`, one round trip each).
        guard("getxattr", || {
            reply.error(fuser::Errno::from_i32(libc::ENOSYS));
        });
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        guard("listxattr", || {
            // No attributes: an empty list, so `cp -a` and file managers go on.
            if size == 0 {
                reply.size(0);
            } else {
                reply.data(&[]);
            }
        });
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        guard("removexattr", || {
            reply.error(fuser::Errno::from_i32(libc::ENOTSUP));
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        guard("read", || match self.fs.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(&e, "read")),
        });
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // The opener is noted by its thread; the processes are looked up only when another
        // thread closes (a single-threaded program's own close costs nothing).
        let tid = req.pid();
        guard("flush", || {
            match self
                .fs
                .flush(fh.0, |opener| process::same_process(opener, tid))
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "flush")),
            }
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        guard("release", || match self.fs.release(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e, "release")),
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        guard("statfs", || {
            match nix::sys::statvfs::statvfs(self.fs.engine.mirror.root()) {
                Ok(s) => reply.statfs(
                    s.blocks(),
                    s.blocks_free(),
                    s.blocks_available(),
                    s.files(),
                    s.files_free(),
                    s.block_size() as u32,
                    255,
                    s.fragment_size() as u32,
                ),
                Err(_) => reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096),
            }
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        guard("setattr", || {
            let mtime = mtime.map(|t| match t {
                fuser::TimeOrNow::SpecificTime(t) => t,
                fuser::TimeOrNow::Now => SystemTime::now(),
            });
            match self.fs.setattr(ino.0, size, mtime, mode) {
                Ok(a) => reply.attr(&TTL, &self.attr(&a)),
                Err(e) => reply.error(errno(&e, "setattr")),
            }
        });
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        guard("access", || {
            reply.ok();
        });
    }
}
