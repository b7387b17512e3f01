//! `hyperclay versions PATH` and `hyperclay restore PATH --version ID | --at TIME`: a file's
//! history from both places (the mirror's `sites-versions/` and the platform's versions), and
//! bringing one back. PATH is a file (or folder) in a running mount, or in its mirror; the
//! running mount answers over its control socket, with its own index and sign-in.
//!
//! Restoring is a normal save through the mount: the content is written to the file in the mount
//! as an editor would, so the mount keeps the content it replaces as a version first and pushes
//! the new one at once. Nothing is written into the mirror behind the engine's back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, Local, TimeZone, Utc};
use hyperclay::control::{
    self, ContentAnswer, FileHistory, HistoryAnswer, Place, Request, StatusReport,
};

/// A path resolved to the mount running over it.
struct Located {
    socket: PathBuf,
    report: StatusReport,
    /// Relative to the mount (empty: all of it).
    rel: String,
}

impl Located {
    fn in_mount(&self, rel: &str) -> PathBuf {
        Path::new(&self.report.mountpoint).join(rel)
    }
}

/// Finds the running mount whose mount point (or mirror) holds `path`.
async fn locate(path: &Path) -> anyhow::Result<Located> {
    let wanted = super::mount_path(path);
    let mut running = Vec::new();
    for socket in control::all_sockets() {
        let Ok(report) = control::ask(&socket, &Request::Status).await else {
            continue;
        };
        let found = [&report.mountpoint, &report.mirror]
            .into_iter()
            .find_map(|base| wanted.strip_prefix(base).ok().map(Path::to_path_buf));
        if let Some(rest) = found {
            let rel = rest
                .to_str()
                .with_context(|| format!("{} is not a UTF-8 path", wanted.display()))?
                .to_string();
            // The mount's paths are `/`-separated everywhere (no Windows name holds a `\`).
            #[cfg(windows)]
            let rel = rel.replace('\\', "/");
            return Ok(Located {
                socket,
                report,
                rel,
            });
        }
        running.push(report.mountpoint);
    }
    let others = match running.as_slice() {
        [] => " (no mount is running: start one with `hyperclay mount`)".to_string(),
        [one] => format!(" (the one running is at {one})"),
        many => format!(" (running: {})", many.join(", ")),
    };
    bail!(
        "{} is in no running mount{others}; versions are listed by the mount that holds the file",
        wanted.display()
    )
}

async fn history(at: &Located) -> anyhow::Result<Vec<FileHistory>> {
    let answer: HistoryAnswer = control::ask_for(
        &at.socket,
        &Request::Versions {
            path: at.rel.clone(),
        },
    )
    .await
    .with_context(|| format!("asking the mount at {}", at.report.mountpoint))?;
    if let Some(e) = answer.error {
        return Err(answered(at, e));
    }
    Ok(answer.files)
}

/// The mount's refusal as the user reads it: a mount started by an older hyperclay does not know
/// the request at all.
fn answered(at: &Located, error: String) -> anyhow::Error {
    if error.contains("unknown variant") {
        return anyhow::anyhow!(
            "the mount at {} runs an older hyperclay, which cannot list versions: restart it (`hyperclay unmount {}`, then mount it again)",
            at.report.mountpoint,
            at.report.mountpoint
        );
    }
    anyhow::anyhow!("{error}")
}

fn local_time(ms: i64) -> String {
    match Local.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => "(unknown time)".into(),
    }
}

fn short(sum: &str) -> &str {
    sum.get(..12).unwrap_or(sum)
}

pub fn render(files: &[FileHistory]) -> String {
    use hyperclay::protocol::printable;
    let mut out = String::new();
    for f in files {
        let now = match &f.current {
            Some((size, sum)) => format!("now {size} bytes, {}", short(sum.as_str())),
            None => "not here now".to_string(),
        };
        out.push_str(&format!("{} ({now})\n", printable(&f.path, 300)));
        if f.versions.is_empty() {
            out.push_str("  no versions kept\n");
        } else {
            out.push_str(&format!(
                "  {:<32} {:<19} {:>10}  {:<8} {:<12}  {}\n",
                "ID", "TIME", "SIZE", "WHERE", "CHECKSUM", "MADE"
            ));
        }
        for v in &f.versions {
            let place = match v.place {
                Place::Local => "local",
                Place::Platform => "platform",
            };
            out.push_str(&format!(
                "  {:<32} {:<19} {:>10}  {:<8} {:<12}  {}\n",
                printable(&v.id, 64),
                local_time(v.time_ms),
                v.size,
                place,
                printable(short(v.checksum.as_str()), 12),
                if v.made_here { "here" } else { "-" }
            ));
        }
        if let Some(why) = &f.platform_missing {
            out.push_str(&format!(
                "  (the platform's versions are not listed: {})\n",
                printable(why, 300)
            ));
        }
    }
    out
}

pub async fn versions(path: PathBuf, json: bool) -> anyhow::Result<()> {
    let at = locate(&path).await?;
    let files = history(&at).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "mountpoint": at.report.mountpoint,
                "files": files,
            }))?
        );
        return Ok(());
    }
    if files.is_empty() {
        println!("hyperclay: no files under {}", path.display());
        return Ok(());
    }
    print!("{}", render(&files));
    Ok(())
}

/// Reads `--at`: RFC 3339 (`2026-11-01T09:00:00Z`), or local time as `YYYY-MM-DD HH:MM[:SS]`
/// (a `T` instead of the space too), or a day (`YYYY-MM-DD`, its start).
pub fn parse_time(text: &str) -> anyhow::Result<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    });
    let Some(naive) = naive else {
        bail!("`{text}` is not a time: say 2026-11-01 09:30, 2026-11-01 or 2026-11-01T09:30:00Z");
    };
    match Local.from_local_datetime(&naive).earliest() {
        Some(t) => Ok(t.with_timezone(&Utc)),
        None => bail!("{text} does not exist in the local time zone (a clock change)"),
    }
}

/// What `--at TIME` brings back.
#[derive(Debug)]
pub enum AtTime<'a> {
    /// This version held the content current at that time.
    Version(&'a control::VersionEntry),
    /// The current content was already there.
    Current,
    /// Nothing kept is that old.
    NothingKept,
}

/// The content current at `time`. With the platform's versions listed, their times are exact:
/// each holds a content until the moment it was replaced, so it is the first one replaced after
/// `time` (none: the current content was already there). Without them, the local backups: the
/// newest kept at or before `time` (a site's saves are each kept as they happen).
pub fn version_at(f: &FileHistory, time: DateTime<Utc>) -> AtTime<'_> {
    let ms = time.timestamp_millis();
    let on_platform = || f.versions.iter().filter(|v| v.place == Place::Platform);
    if f.platform_missing.is_none() {
        return match on_platform()
            .filter(|v| v.time_ms > ms)
            .min_by_key(|v| v.time_ms)
        {
            Some(v) => AtTime::Version(v),
            None => AtTime::Current,
        };
    }
    match f
        .versions
        .iter()
        .filter(|v| v.place == Place::Local && v.time_ms <= ms)
        .max_by_key(|v| v.time_ms)
    {
        Some(v) => AtTime::Version(v),
        None => AtTime::NothingKept,
    }
}

pub async fn restore(
    path: PathBuf,
    id: Option<String>,
    at_time: Option<String>,
) -> anyhow::Result<()> {
    let at = locate(&path).await?;
    let files = history(&at).await?;
    let file = match files.as_slice() {
        [one] if one.path == at.rel.trim_matches('/') => one,
        _ => bail!(
            "{} is a folder: restore one file at a time (`hyperclay versions {}` lists them)",
            path.display(),
            path.display()
        ),
    };
    let version = match (id, at_time) {
        (Some(id), _) => file.versions.iter().find(|v| v.id == id).with_context(|| {
            format!(
                "{} has no version {id} (`hyperclay versions {}` lists them)",
                file.path,
                path.display()
            )
        })?,
        (None, Some(time)) => {
            let t = parse_time(&time)?;
            let when = t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S");
            match version_at(file, t) {
                AtTime::Version(v) => v,
                AtTime::Current => {
                    println!(
                        "hyperclay: {} has not changed on the platform since {when}: nothing to restore",
                        file.path
                    );
                    return Ok(());
                }
                AtTime::NothingKept => bail!(
                    "no version of {} kept here is from {when} or before (the platform's versions could not be listed: {})",
                    file.path,
                    file.platform_missing.as_deref().unwrap_or("")
                ),
            }
        }
        (None, None) => bail!("say which version: --version ID or --at TIME"),
    };
    let answer: ContentAnswer = control::ask_for(
        &at.socket,
        &Request::Version {
            path: file.path.clone(),
            id: version.id.clone(),
        },
    )
    .await
    .with_context(|| format!("asking the mount at {}", at.report.mountpoint))?;
    if let Some(e) = answer.error {
        return Err(answered(&at, e));
    }
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(answer.content)
        .context("the mount's answer is not base64")?;
    let target = at.in_mount(&file.path);
    if file
        .current
        .as_ref()
        .is_some_and(|(_, sum)| *sum == hyperclay::protocol::checksum(&bytes))
    {
        println!(
            "hyperclay: {} already holds version {}: nothing to restore",
            target.display(),
            version.id
        );
        return Ok(());
    }
    // An editor's save: through the mount, which backs up what it replaces and pushes at once.
    let written = tokio::task::spawn_blocking({
        let target = target.clone();
        move || std::fs::write(&target, &bytes).map(|()| bytes.len())
    })
    .await?
    .with_context(|| format!("writing {}", target.display()))?;
    println!(
        "hyperclay: restored {} to version {} ({written} bytes, kept {}); the content it replaced is kept as a version",
        target.display(),
        version.id,
        local_time(version.time_ms)
    );
    wait_until_up(&at).await;
    Ok(())
}

/// Says whether the restored content reached the platform (a save goes up at once; this waits a
/// little for it, never long).
async fn wait_until_up(at: &Located) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match control::ask(&at.socket, &Request::Status).await {
            Ok(r) if !r.sync_on => {
                println!("  sync is off: it goes up when `hyperclay sync on` resumes it");
                return;
            }
            Ok(r) if !r.online => {
                println!("  offline: it goes up when the platform is back");
                return;
            }
            Ok(r) if r.waiting == 0 && !r.syncing => {
                println!("  on the platform");
                return;
            }
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            _ => {
                println!("  going up (`hyperclay status` follows it)");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperclay::control::VersionEntry;

    fn v(id: &str, ms: i64, place: Place) -> VersionEntry {
        VersionEntry {
            id: id.into(),
            place,
            time: String::new(),
            time_ms: ms,
            size: 1,
            checksum: Default::default(),
            made_here: false,
        }
    }

    #[test]
    fn the_content_at_a_time_is_the_first_replaced_after_it_on_the_platform() {
        let mut f = FileHistory {
            path: "a.html".into(),
            current: None,
            versions: vec![
                v("2", 3001, Place::Local),
                v("p3", 3000, Place::Platform),
                v("p2", 2000, Place::Platform),
                v("1", 1500, Place::Local),
                v("p1", 1000, Place::Platform),
            ],
            platform_missing: None,
        };
        let at =
            |f: &FileHistory, ms| match version_at(f, DateTime::from_timestamp_millis(ms).unwrap())
            {
                AtTime::Version(v) => v.id.clone(),
                AtTime::Current => "current".into(),
                AtTime::NothingKept => "nothing".into(),
            };
        assert_eq!(at(&f, 500), "p1");
        assert_eq!(at(&f, 1000), "p2");
        assert_eq!(at(&f, 2500), "p3");
        assert_eq!(at(&f, 3000), "current");
        // Without the platform: the newest local version kept by then.
        f.platform_missing = Some("offline".into());
        assert_eq!(at(&f, 500), "nothing");
        assert_eq!(at(&f, 2000), "1");
        assert_eq!(at(&f, 3001), "2");
    }

    #[test]
    fn times_are_read_in_the_forms_a_user_types() {
        let utc = parse_time("2026-11-01T09:30:00Z").unwrap();
        assert_eq!(utc.timestamp(), 1_793_525_400);
        let local = parse_time("2026-11-01 09:30").unwrap();
        assert_eq!(
            local.with_timezone(&Local).format("%H:%M").to_string(),
            "09:30"
        );
        assert!(parse_time("2026-11-01").is_ok());
        assert!(parse_time("yesterday").is_err());
    }
}
