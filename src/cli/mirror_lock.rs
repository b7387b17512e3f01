//! One owner per mirror: a mount or `hyperclay serve` holds an exclusive `flock` on
//! `<mirror>/.hyperclay/lock` for the whole life of its process. It is taken before anything in
//! the mirror is opened (the index, the temp files), so a second mount can't fight the first over
//! the index, and a `serve` can't answer "Saved" for a save the running mount never sends up. The
//! file holds who has it (pid, mount point, the local server's address) for the refusal's message.
//! The kernel lets go of the lock when the process ends, however it ends: a killed owner leaves
//! nothing to clean up. Windows has no `flock`: there it is `LockFileEx` on one byte far past
//! the file's content (Windows' locks are mandatory, so the holder's words stay readable), let go
//! of by the system when the process ends too.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
#[cfg(unix)]
use nix::errno::Errno;
#[cfg(unix)]
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// The lock's file name inside the mirror's program folder.
pub const LOCK_FILE: &str = "lock";

/// Who holds the lock: what its file says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The mount point; none for `hyperclay serve`.
    #[serde(default)]
    pub mountpoint: Option<PathBuf>,
    /// The local server's address, once it listens; none when it runs no server.
    #[serde(default)]
    pub apps: Option<String>,
}

/// The lock file, locked.
#[cfg(unix)]
type Locked = Flock<File>;
#[cfg(windows)]
type Locked = File;

/// Locks `file` without waiting; `Ok(None)` when another process holds it.
#[cfg(unix)]
fn try_lock(file: File) -> Result<Option<Locked>, Errno> {
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(file) => Ok(Some(file)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e),
    }
}

#[cfg(windows)]
fn try_lock(file: File) -> Result<Option<Locked>, std::io::Error> {
    Ok(hyperclay::os::windows::try_lock_exclusive(&file)?.then_some(file))
}

/// The held lock. Never dropped: it is let go of when the process ends.
pub struct MirrorLock {
    file: Locked,
    holder: std::sync::Mutex<Holder>,
}

/// The lock file of the mirror at `mirror`.
pub fn path_for(mirror: &Path) -> PathBuf {
    mirror.join(hyperclay::cache::INDEX_DIR).join(LOCK_FILE)
}

impl MirrorLock {
    /// Takes the mirror's lock for the rest of the process's life, or says who has it.
    /// `mountpoint` is the mount that takes it (none for `hyperclay serve`).
    pub fn acquire(
        mirror: &Path,
        mountpoint: Option<&Path>,
    ) -> anyhow::Result<&'static MirrorLock> {
        let path = path_for(mirror);
        let dir = path.parent().expect("the lock file is inside the mirror");
        {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        // Not truncated on open: the holder's own words are in it until the lock is ours.
        let file = hyperclay::os::owner_only_file(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )
        .open(&path)
        .with_context(|| format!("opening the mirror's lock {}", path.display()))?;
        let file = match try_lock(file) {
            Ok(Some(file)) => file,
            Ok(None) => {
                return Err(anyhow::anyhow!(in_use_message(
                    mirror,
                    &read_holder(&path),
                    mountpoint.is_some()
                )))
            }
            Err(e) => {
                return Err(e).with_context(|| format!("locking the mirror ({})", path.display()))
            }
        };
        let lock = MirrorLock {
            file,
            holder: std::sync::Mutex::new(Holder {
                pid: std::process::id(),
                mountpoint: mountpoint.map(Path::to_path_buf),
                apps: None,
            }),
        };
        lock.write()
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Box::leak(Box::new(lock)))
    }

    /// Records the local server's address (for a `serve` refused because of this owner).
    pub fn set_apps(&self, url: &str) {
        self.holder.lock().unwrap_or_else(|p| p.into_inner()).apps = Some(url.to_string());
        if let Err(e) = self.write() {
            tracing::warn!(error = %e, "could not record the local server's address in the mirror's lock");
        }
    }

    fn write(&self) -> std::io::Result<()> {
        let holder = self.holder.lock().unwrap_or_else(|p| p.into_inner());
        let text = serde_json::to_string(&*holder).map_err(std::io::Error::other)?;
        let mut file: &File = &self.file;
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(format!("{text}\n").as_bytes())
    }
}

/// What the lock file says about its holder. The holder writes it just after locking: a file
/// still empty is read again for a moment.
fn read_holder(path: &Path) -> Option<Holder> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut text = String::new();
        let read = File::open(path).and_then(|mut f| f.read_to_string(&mut text));
        if let Ok(holder) = serde_json::from_str::<Holder>(text.trim()) {
            return Some(holder);
        }
        if read.is_err() || Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One line: who uses the mirror, and what to do instead. `for_mount`: a mount asked (otherwise
/// `hyperclay serve`).
pub fn in_use_message(mirror: &Path, holder: &Option<Holder>, for_mount: bool) -> String {
    let mirror = mirror.display();
    let Some(holder) = holder else {
        return format!("{mirror} is in use by another hyperclay process: one mount or `hyperclay serve` per mirror; stop it, or use another --mirror DIR");
    };
    let pid = holder.pid;
    match (&holder.mountpoint, for_mount) {
        (Some(mnt), true) => format!(
            "{mirror} is in use by the mount at {} (pid {pid}): one mount per mirror; use that mount, run `hyperclay unmount {}` first, or give this one its own --mirror DIR",
            mnt.display(),
            mnt.display()
        ),
        (Some(mnt), false) => match &holder.apps {
            Some(apps) => format!(
                "{mirror} is in use by the mount at {} (pid {pid}), which serves its apps at {apps} (the same routes; its saves go up to the platform): use that, or `hyperclay unmount {}` first",
                mnt.display(),
                mnt.display()
            ),
            None => format!(
                "{mirror} is in use by the mount at {} (pid {pid}), which runs no local server: mount again without --no-serve (or with another --serve-port) to serve its apps, or `hyperclay unmount {}` first",
                mnt.display(),
                mnt.display()
            ),
        },
        (None, for_mount) => {
            let at = holder
                .apps
                .as_deref()
                .map(|a| format!(" at {a}"))
                .unwrap_or_default();
            let what = if for_mount {
                "stop it first (Ctrl-C where it runs)"
            } else {
                "use that one, or stop it first"
            };
            format!("{mirror} is in use by `hyperclay serve` (pid {pid}){at}: {what}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_names_its_holder_and_a_second_taker_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mirror = dir.path().join("mirror");
        let mnt = dir.path().join("mnt");
        let lock = MirrorLock::acquire(&mirror, Some(&mnt)).unwrap();
        lock.set_apps("http://127.0.0.1:4321");
        let holder = read_holder(&path_for(&mirror)).unwrap();
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.mountpoint.as_deref(), Some(mnt.as_path()));
        let again = MirrorLock::acquire(&mirror, None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            again.contains("serves its apps at http://127.0.0.1:4321"),
            "{again}"
        );
    }
}
