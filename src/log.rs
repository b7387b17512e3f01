//! Logging: `tracing` to standard error and to the plain-text sync log
//! (`$XDG_STATE_HOME/hyperclay/sync.log`), one line per event, rotated at 10 MiB with three old
//! files kept so it can never fill the disk. Secrets are never logged (credentials print as `..`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

const ROTATE_AT: u64 = 10 * 1024 * 1024;
const KEEP: usize = 3;

/// A log file that rotates itself by size: `sync.log`, `sync.log.1` ... `sync.log.3`.
#[derive(Clone)]
pub struct RotatingLog {
    inner: Arc<Mutex<(PathBuf, Option<File>, u64)>>,
}

impl RotatingLog {
    pub fn open(path: &Path) -> io::Result<RotatingLog> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            inner: Arc::new(Mutex::new((path.to_path_buf(), Some(file), size))),
        })
    }

    fn rotate(path: &Path) -> io::Result<File> {
        for i in (1..KEEP).rev() {
            let _ = fs::rename(
                format!("{}.{i}", path.display()),
                format!("{}.{}", path.display(), i + 1),
            );
        }
        let _ = fs::rename(path, format!("{}.1", path.display()));
        OpenOptions::new().create(true).append(true).open(path)
    }
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (path, file, size) = &mut *guard;
        if *size + buf.len() as u64 > ROTATE_AT {
            *file = Some(Self::rotate(path)?);
            *size = 0;
        }
        let f = file
            .as_mut()
            .ok_or_else(|| io::Error::other("log closed"))?;
        f.write_all(buf)?;
        *size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RotatingLog {
    type Writer = RotatingLog;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn filter() -> EnvFilter {
    // fuser's session drop tries to unmount again after our `fusermount3 -u` and warns that it
    // failed; its own comment says that is expected when someone else unmounted. Not worth a
    // line in every log.
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("hyperclay=info,warn,fuser::mnt=error"))
}

/// Logs to standard error only (the dev platform, short commands).
pub fn init_stderr() {
    let _ = tracing_subscriber::registry()
        .with(filter())
        .with(tracing_subscriber::fmt::layer().with_writer(io::stderr))
        .try_init();
}

/// Logs to standard error and to the sync log at `path`.
pub fn init_with_file(path: &Path) -> io::Result<()> {
    let file = RotatingLog::open(path)?;
    let _ = tracing_subscriber::registry()
        .with(filter())
        .with(tracing_subscriber::fmt::layer().with_writer(io::stderr))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(file),
        )
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_three() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.log");
        let mut log = RotatingLog::open(&path).unwrap();
        let line = vec![b'x'; 1024 * 1024];
        for _ in 0..45 {
            log.write_all(&line).unwrap();
        }
        assert!(fs::metadata(&path).unwrap().len() <= ROTATE_AT);
        assert!(dir.path().join("sync.log.3").exists());
        assert!(!dir.path().join("sync.log.4").exists());
    }
}
