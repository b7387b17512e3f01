//! `sites-versions/`: the backup layout Hyperclay Local users know (architecture.md).
//! `blog/post.html` keeps its versions in `sites-versions/blog/post/`, named by local wall-clock
//! time with UTC offset to the millisecond: `2026-11-01-01-30-00-431-0400.html`; same-millisecond
//! versions get `-001`, `-002`... before the extension. Site versions end in `.html` (also for
//! `.htmlclay`), uploads keep their own extension.
//!
//! Order: a version's place is (instant, counter), parsed from its name; a new version is always
//! placed after every existing one, even if the clock went back (it then reuses the newest
//! instant with the next counter). Each version is written as a temp file, fsync'ed, then
//! hard-linked into place (which never replaces an existing name), so a crash leaves the whole
//! version or none. Symlinks are never followed inside `sites-versions/`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, Local, TimeZone, Utc};

use super::mirror::{sync_parent, MirrorError};
use crate::protocol::NodeKind;

type Result<T> = std::result::Result<T, MirrorError>;

/// Keep at least this many versions per file...
pub const KEEP_NEWEST: usize = 20;
/// ...and every version younger than this.
pub const KEEP_DAYS: i64 = 60;

/// The folder holding the versions of `rel` (`blog/post.html` → `sites-versions/blog/post`).
pub fn dir_for(versions_root: &Path, rel: &str) -> PathBuf {
    let stem = match rel.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{}", strip_ext(name)),
        None => strip_ext(rel).to_string(),
    };
    versions_root.join(stem)
}

fn strip_ext(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

/// The extension a version of `rel` carries (with its dot, or empty).
fn extension_for(rel: &str, kind: NodeKind) -> String {
    if kind == NodeKind::Site {
        return ".html".into();
    }
    let name = rel.rsplit('/').next().unwrap_or(rel);
    match name.rfind('.') {
        Some(i) if i > 0 => name[i..].to_string(),
        _ => String::new(),
    }
}

/// A version's place in its folder's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    pub instant_ms: i64,
    pub counter: u32,
}

/// Parses `YYYY-MM-DD-HH-MM-SS-mmm±HHMM[-NNN]` from the start of a version's file name.
pub fn parse_name(name: &str) -> Option<(Stamp, DateTime<FixedOffset>)> {
    let b = name.as_bytes();
    if b.len() < 28 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let s = name.get(range)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    for i in [4, 7, 10, 13, 16, 19] {
        if b[i] != b'-' {
            return None;
        }
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let sign = match b[23] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let offset_secs = sign * (num(24..26)? * 3600 + num(26..28)? * 60) as i32;
    let offset = FixedOffset::east_opt(offset_secs)?;
    let time = offset
        .with_ymd_and_hms(year as i32, month, day, hour, min, sec)
        .single()?
        + chrono::Duration::milliseconds(ms as i64);
    let rest = &name[28..];
    let counter = match rest.strip_prefix('-') {
        Some(r) if r.len() >= 3 && r.as_bytes()[..3].iter().all(u8::is_ascii_digit) => {
            r[..3].parse().ok()?
        }
        _ => 0,
    };
    Some((
        Stamp {
            instant_ms: time.timestamp_millis(),
            counter,
        },
        time,
    ))
}

fn format_name(time: DateTime<FixedOffset>, counter: u32, ext: &str) -> String {
    let base = time.format("%Y-%m-%d-%H-%M-%S-%3f%z").to_string();
    match counter {
        0 => format!("{base}{ext}"),
        n => format!("{base}-{n:03}{ext}"),
    }
}

/// The versions in a folder, oldest first: (stamp, path). Non-version names are ignored.
pub fn list(dir: &Path) -> Vec<(Stamp, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut versions: Vec<(Stamp, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((parse_name(&name)?.0, e.path()))
        })
        .collect();
    versions.sort();
    versions
}

/// Creates `dir` and its parents under `root`, refusing any component that is a symlink.
pub(super) fn ensure_dir_no_symlinks(root: &Path, dir: &Path) -> Result<()> {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let mut current = root.to_path_buf();
    for part in rel.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => return Err(MirrorError::Symlink(current)),
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(MirrorError::io(
                    "creating",
                    &current,
                    io::Error::from_raw_os_error(libc::ENOTDIR),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&current)
                    .or_else(|e| {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| MirrorError::io("creating", &current, e))?;
            }
            Err(e) => return Err(MirrorError::io("inspecting", &current, e)),
        }
    }
    Ok(())
}

/// Records `bytes` as the newest version of `rel`; answers the version's path.
pub fn save(versions_root: &Path, rel: &str, kind: NodeKind, bytes: &[u8]) -> Result<PathBuf> {
    save_at(versions_root, rel, kind, bytes, Local::now().fixed_offset())
}

/// [`save`] with the clock given (tests move it).
pub fn save_at(
    versions_root: &Path,
    rel: &str,
    kind: NodeKind,
    bytes: &[u8],
    now: DateTime<FixedOffset>,
) -> Result<PathBuf> {
    if let Ok(m) = fs::symlink_metadata(versions_root) {
        if m.file_type().is_symlink() {
            return Err(MirrorError::Symlink(versions_root.to_path_buf()));
        }
    }
    let dir = dir_for(versions_root, rel);
    ensure_dir_no_symlinks(versions_root, &dir)?;
    let ext = extension_for(rel, kind);
    let temp = dir.join(format!(".version-tmp-{:016x}", rand::random::<u64>()));
    let written = (|| {
        let mut f = File::options().write(true).create_new(true).open(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(MirrorError::io("writing a version in", &dir, e));
    }
    let existing = list(&dir);
    let newest = existing.last().map(|(s, _)| *s);
    let (mut time, mut counter) = (now, 0u32);
    let now_ms = now.timestamp_millis();
    if let Some(newest) = newest {
        if newest.instant_ms >= now_ms {
            // Same millisecond, or the clock went back: go after the newest.
            let newest_path = &existing.last().expect("newest exists").1;
            let newest_name = newest_path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            time = parse_name(newest_name).map(|(_, t)| t).unwrap_or(now);
            counter = newest.counter + 1;
        }
    }
    let result = loop {
        let target = dir.join(format_name(time, counter, &ext));
        match fs::hard_link(&temp, &target) {
            Ok(()) => break Ok(target),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && counter < 999 => counter += 1,
            Err(e) => break Err(MirrorError::io("linking a version into", &dir, e)),
        }
    };
    let _ = fs::remove_file(&temp);
    let target = result?;
    sync_parent(&target)?;
    prune(&dir, Utc::now());
    Ok(target)
}

/// Keeps the newest [`KEEP_NEWEST`] versions plus all from the last [`KEEP_DAYS`] days.
pub fn prune(dir: &Path, now: DateTime<Utc>) {
    let versions = list(dir);
    if versions.len() <= KEEP_NEWEST {
        return;
    }
    let cutoff = (now - chrono::Duration::days(KEEP_DAYS)).timestamp_millis();
    let old = versions.len() - KEEP_NEWEST;
    for (stamp, path) in versions.into_iter().take(old) {
        if stamp.instant_ms < cutoff {
            let _ = fs::remove_file(path);
        }
    }
}

/// Whether `bytes` is already kept as a version of `rel` (compared by content).
pub fn contains(versions_root: &Path, rel: &str, bytes: &[u8]) -> bool {
    list(&dir_for(versions_root, rel))
        .iter()
        .rev()
        .any(|(_, p)| fs::read(p).map(|b| b == bytes).unwrap_or(false))
}

/// Read-only access to the backup folder, for the mount's `sites-versions/` view: paths are
/// relative to it, and symlinks are shown, never followed.
pub struct Browse {
    root: std::path::PathBuf,
}

impl Browse {
    pub fn new(root: std::path::PathBuf) -> Browse {
        Browse { root }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    pub fn metadata(&self, rel: &str) -> std::io::Result<std::fs::Metadata> {
        std::fs::symlink_metadata(self.path(rel))
    }

    /// The names in the folder `rel`, sorted (UTF-8 names only; dot-names are the program's).
    pub fn names(&self, rel: &str) -> std::io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(rel))?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    pub fn read_link(&self, rel: &str) -> std::io::Result<std::path::PathBuf> {
        std::fs::read_link(self.path(rel))
    }

    /// Opens a backup for reading; a symlink is refused (ELOOP), never followed.
    pub fn open(&self, rel: &str) -> std::io::Result<std::fs::File> {
        open_nofollow(&self.path(rel))
    }
}

/// Opens `path` for reading without following a symlink at its last component.
pub(super) fn open_nofollow(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[test]
    fn layout_and_names_match_hyperclay_local() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let p = save_at(
            root,
            "blog/post.html",
            NodeKind::Site,
            b"a",
            at("2026-11-01T01:30:00.431-04:00"),
        )
        .unwrap();
        assert_eq!(p, root.join("blog/post/2026-11-01-01-30-00-431-0400.html"));
        let p = save_at(
            root,
            "app.htmlclay",
            NodeKind::Site,
            b"a",
            at("2026-11-01T05:30:00.000Z"),
        )
        .unwrap();
        assert_eq!(p, root.join("app/2026-11-01-05-30-00-000+0000.html"));
        let p = save_at(
            root,
            "img/logo.png",
            NodeKind::Upload,
            b"a",
            at("2026-11-01T05:30:00.000Z"),
        )
        .unwrap();
        assert_eq!(p, root.join("img/logo/2026-11-01-05-30-00-000+0000.png"));
    }

    #[test]
    fn same_millisecond_and_clock_going_back_sort_after() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let t = at("2026-11-01T05:30:00.000Z");
        save_at(root, "a.html", NodeKind::Site, b"1", t).unwrap();
        let p2 = save_at(root, "a.html", NodeKind::Site, b"2", t).unwrap();
        assert!(p2.ends_with("a/2026-11-01-05-30-00-000+0000-001.html"));
        let p3 = save_at(
            root,
            "a.html",
            NodeKind::Site,
            b"3",
            at("2026-10-01T00:00:00.000Z"),
        )
        .unwrap();
        assert!(
            p3.ends_with("a/2026-11-01-05-30-00-000+0000-002.html"),
            "{p3:?}"
        );
        let order: Vec<Vec<u8>> = list(&root.join("a"))
            .into_iter()
            .map(|(_, p)| fs::read(p).unwrap())
            .collect();
        assert_eq!(order, vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
    }

    #[test]
    fn pruning_keeps_twenty_and_sixty_days_and_foreign_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let now = Utc::now();
        for i in 0..30 {
            let t = (now - chrono::Duration::days(200 - i)).fixed_offset();
            save_at(root, "a.html", NodeKind::Site, b"old", t).unwrap();
        }
        fs::write(root.join("a/notes.txt"), b"mine").unwrap();
        for i in 0..5 {
            let t = (now - chrono::Duration::days(10 - i)).fixed_offset();
            save_at(root, "a.html", NodeKind::Site, b"recent", t).unwrap();
        }
        assert_eq!(list(&root.join("a")).len(), KEEP_NEWEST);
        assert!(root.join("a/notes.txt").exists());
    }

    #[test]
    fn symlinks_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("blog")).unwrap();
        let e = save(dir.path(), "blog/post.html", NodeKind::Site, b"x").unwrap_err();
        assert!(matches!(e, MirrorError::Symlink(_)));
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
