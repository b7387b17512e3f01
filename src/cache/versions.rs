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

/// Parses a version's file name, strictly: `YYYY-MM-DD-HH-MM-SS-mmm±HHMM`, then `-NNN` (001 to
/// 999) for a same-millisecond version, then nothing or one extension (`.html`, `.png`: a dot and
/// at least one character, no further dot). Anything else (`notes.txt`, `… copy.html`,
/// `….html.bak`, a month 13, an offset written in a way this program never writes) is not a
/// version: the name must be exactly what [`save`] would have written for that instant.
pub fn parse_name(name: &str) -> Option<(Stamp, DateTime<FixedOffset>)> {
    let b = name.as_bytes();
    if b.len() < 28 || !name.is_char_boundary(28) {
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
    let mut rest = &name[28..];
    let mut counter = 0;
    if let Some(r) = rest.strip_prefix('-') {
        let digits = r.get(..3)?;
        if !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        counter = digits.parse().ok()?;
        if counter == 0 {
            return None;
        }
        rest = &r[3..];
    }
    match rest.strip_prefix('.') {
        None if rest.is_empty() => {}
        Some(ext) if !ext.is_empty() && !ext.contains(['.', '/']) => {}
        _ => return None,
    }
    // Exactly what this program writes for that instant (no `+0060`, no `-0000` trick).
    if format_name(time, counter, "") != name[..name.len() - rest.len()] {
        return None;
    }
    Some((
        Stamp {
            instant_ms: time.timestamp_millis(),
            counter,
        },
        time,
    ))
}

/// The extension of a version's file name (with its dot, or empty).
fn version_ext(name: &str) -> &str {
    match name.get(28..).and_then(|rest| rest.find('.')) {
        Some(i) => &name[28 + i..],
        None => "",
    }
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

/// One file's versions, oldest first: those in its folder with its extension (`a.html` and
/// `a.png` share `a/`). `rel` is the file's path in the mirror.
pub fn of_file(versions_root: &Path, rel: &str) -> Vec<(Stamp, PathBuf)> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let ext = extension_for(rel, NodeKind::of_file_name(name));
    list(&dir_for(versions_root, rel))
        .into_iter()
        .filter(|(_, p)| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| version_ext(n) == ext)
        })
        .collect()
}

/// A version's ID as `hyperclay versions` shows it: its file name without the extension.
pub fn id_of(path: &Path) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name[..name.len() - version_ext(name).len()].to_string()
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
                    io::Error::from_raw_os_error(crate::os::NOT_A_FOLDER),
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

/// The cleanup policy (product.md), per file: keeps the newest [`KEEP_NEWEST`] versions plus
/// every version from the last [`KEEP_DAYS`] days; answers the versions to remove. `versions` are
/// one file's, oldest first (as [`list`] answers them).
pub fn to_remove<T>(versions: &[(Stamp, T)], now: DateTime<Utc>) -> Vec<usize> {
    let cutoff = (now - chrono::Duration::days(KEEP_DAYS)).timestamp_millis();
    let old = versions.len().saturating_sub(KEEP_NEWEST);
    (0..old)
        .filter(|&i| versions[i].0.instant_ms < cutoff)
        .collect()
}

/// Applies the policy to one folder of versions: each file's versions apart (`a.html` and
/// `a.png` keep theirs in the same `a/`, told apart by extension). Names that are not versions
/// are never touched. Answers how many versions were removed.
pub fn prune(dir: &Path, now: DateTime<Utc>) -> usize {
    let mut by_ext: std::collections::BTreeMap<String, Vec<(Stamp, PathBuf)>> = Default::default();
    for (stamp, path) in list(dir) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        by_ext
            .entry(version_ext(name).to_string())
            .or_default()
            .push((stamp, path));
    }
    let mut removed = 0;
    for versions in by_ext.values() {
        for i in to_remove(versions, now) {
            match fs::remove_file(&versions[i].1) {
                Ok(()) => removed += 1,
                // Removed meanwhile (a save prunes its folder too).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %versions[i].1.display(), error = %e, "could not remove an old version")
                }
            }
        }
    }
    removed
}

/// Applies the policy to every folder under `sites-versions/` (the mount does at start and daily).
/// Symlinks are never followed; names that are not versions stay. Answers how many versions were
/// removed.
pub fn prune_all(versions_root: &Path, now: DateTime<Utc>) -> usize {
    if fs::symlink_metadata(versions_root).map_or(true, |m| !m.is_dir()) {
        return 0;
    }
    let mut removed = 0;
    let mut folders = vec![(versions_root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = folders.pop() {
        removed += prune(&dir, now);
        if depth >= 64 {
            continue;
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            // `file_type` does not follow a symlink: a linked folder is left alone.
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                folders.push((e.path(), depth + 1));
            }
        }
    }
    removed
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
pub(crate) fn open_nofollow(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    crate::os::open_read_nofollow(path)
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
    fn names_are_parsed_strictly() {
        for good in [
            "2026-11-01-01-30-00-431-0400.html",
            "2026-11-01-01-30-00-431-0400-002.html",
            "2026-11-01-05-30-00-000+0000.png",
            "2026-11-01-05-30-00-000+0000",
            "2026-11-01-05-30-00-000+0530-999.my ext",
        ] {
            assert!(parse_name(good).is_some(), "{good} is a version");
        }
        for bad in [
            "notes.txt",
            "2026-11-01-01-30-00-431-0400 copy.html",
            "2026-11-01-01-30-00-431-0400.html.bak",
            "2026-11-01-01-30-00-431-0400-000.html",
            "2026-11-01-01-30-00-431-0400-01.html",
            "2026-11-01-01-30-00-431-0400-0012.html",
            "2026-11-01-01-30-00-431-0400.",
            "2026-11-01-01-30-00-431-0400-",
            "2026-13-01-01-30-00-431-0400.html",
            "2026-11-01-01-30-00-431+0060.html",
            "2026-11-01-01-30-00-431-0400x.html",
            ".version-tmp-00000000000000ff",
            "2026-11-01-01-30-00-431-04\u{e9}.html",
        ] {
            assert!(parse_name(bad).is_none(), "{bad} is not a version");
        }
    }

    fn stamps(days_ago: &[i64], now: DateTime<Utc>) -> Vec<(Stamp, ())> {
        let mut v: Vec<(Stamp, ())> = days_ago
            .iter()
            .map(|d| {
                (
                    Stamp {
                        instant_ms: (now - chrono::Duration::days(*d)).timestamp_millis(),
                        counter: 0,
                    },
                    (),
                )
            })
            .collect();
        v.sort_by_key(|(s, _)| *s);
        v
    }

    #[test]
    fn policy_keeps_newest_twenty_and_last_sixty_days() {
        let now = Utc::now();
        // 30 versions, all older than 60 days: the 10 oldest go.
        let old: Vec<i64> = (0..30).map(|i| 200 - i).collect();
        assert_eq!(
            to_remove(&stamps(&old, now), now),
            (0..10).collect::<Vec<_>>()
        );
        // 30 versions, all within 60 days: every one stays.
        let recent: Vec<i64> = (0..30).map(|i| 59 - i).collect();
        assert!(to_remove(&stamps(&recent, now), now).is_empty());
        // 25 old and 25 recent: the 20 newest are recent, the old go, the recent all stay.
        let mixed: Vec<i64> = (0..25)
            .map(|i| 300 - i)
            .chain((0..25).map(|i| 50 - i))
            .collect();
        assert_eq!(
            to_remove(&stamps(&mixed, now), now),
            (0..25).collect::<Vec<_>>()
        );
        // 20 or fewer: nothing goes, however old.
        let few: Vec<i64> = (0..20).map(|i| 900 - i).collect();
        assert!(to_remove(&stamps(&few, now), now).is_empty());
    }

    #[test]
    fn pruning_everything_is_per_file_and_leaves_other_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let now = Utc::now();
        for i in 0..25 {
            let t = (now - chrono::Duration::days(300 - i)).fixed_offset();
            // Written straight in place: `save` would prune on the way.
            for (rel, kind) in [("a.html", NodeKind::Site), ("a.png", NodeKind::Upload)] {
                let d = dir_for(root, rel);
                fs::create_dir_all(&d).unwrap();
                let name = format_name(t, 0, &extension_for(rel, kind));
                fs::write(d.join(name), b"v").unwrap();
            }
            let d = root.join("blog/post");
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join(format_name(t, 0, ".html")), b"v").unwrap();
        }
        let foreign = root.join("a/2020-01-01-00-00-00-000+0000 copy.html");
        fs::write(&foreign, b"mine").unwrap();
        fs::write(root.join("blog/post/notes.txt"), b"mine").unwrap();
        assert_eq!(prune_all(root, now), 15);
        let a = list(&root.join("a"));
        assert_eq!(
            a.iter()
                .filter(|(_, p)| p.extension().unwrap() == "html")
                .count(),
            20
        );
        assert_eq!(
            a.iter()
                .filter(|(_, p)| p.extension().unwrap() == "png")
                .count(),
            20
        );
        assert_eq!(list(&root.join("blog/post")).len(), 20);
        assert!(foreign.exists());
        assert!(root.join("blog/post/notes.txt").exists());
    }

    #[test]
    #[cfg(unix)]
    fn symlinks_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("blog")).unwrap();
        let e = save(dir.path(), "blog/post.html", NodeKind::Site, b"x").unwrap_err();
        assert!(matches!(e, MirrorError::Symlink(_)));
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
