//! `hyperclay service install|uninstall`: the mount as a systemd user service, so that it is
//! there after every login and reboot. `Type=notify`: the mount tells systemd it is ready
//! (`sd_notify` READY=1) once the account is listed, the same moment `--daemon` returns.
//!
//! One unit per mount point, named by it as systemd names mount units
//! (`hyperclay-home-me-Hyperclay.service`, `systemd-escape --path`), so several mounts can run.
//! The unit goes where systemd looks for this user's units (`$XDG_CONFIG_HOME/systemd/user`);
//! with `HYPERCLAY_HOME` set it stays under it (`$HYPERCLAY_HOME/config/systemd/user`), like
//! every other file of the program, and starting it links it into systemd's folder
//! (`systemctl --user enable PATH`).
//!
//! The unit carries what the mount needs from this shell (the platform address from
//! `HYPERCLAY_URL`, `HYPERCLAY_HOME`) and never a secret: the service signs in with the stored
//! credentials (`hyperclay login`), which only this user can read. An address from a project's
//! `./.env` is not carried over: a service outlives the folder it was installed from.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The unit the first versions wrote, for one mount only (`hyperclay service uninstall` still
/// removes it).
pub const LEGACY_UNIT: &str = "hyperclay.service";

/// A path as `systemd-escape --path` writes it: `/home/me/My Site` → `home-me-My\x20Site`.
pub fn systemd_escape_path(path: &Path) -> String {
    let text = path.as_os_str().as_encoded_bytes();
    let parts: Vec<&[u8]> = text
        .split(|b| *b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return "-".into();
    }
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        for (j, &b) in part.iter().enumerate() {
            let plain = b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.';
            if plain && !(b == b'.' && i == 0 && j == 0) {
                out.push(b as char);
            } else {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    out
}

/// The unit of the mount at `mountpoint` (`systemctl --user status <this>`).
pub fn unit_name(mountpoint: &Path) -> String {
    format!("hyperclay-{}.service", systemd_escape_path(mountpoint))
}

/// Where the units are written, and whether systemd reads that folder by itself (otherwise the
/// unit is linked into systemd's folder when it is enabled).
pub fn unit_dir() -> (PathBuf, bool) {
    if let Some(home) = std::env::var_os("HYPERCLAY_HOME").filter(|h| !h.is_empty()) {
        return (PathBuf::from(home).join("config/systemd/user"), false);
    }
    let config = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".config")
        }
    };
    (config.join("systemd/user"), true)
}

/// One word of a unit's command line or `Environment=` value, quoted the way systemd reads it:
/// in double quotes, with `\` and `"` escaped, `%` doubled (specifiers) and `$` doubled (no
/// variable expansion), so a path with spaces or odd characters stays one argument.
fn quoted(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn command_line(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| quoted(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the unit needs to know besides the command.
pub struct UnitSpec {
    pub exe: PathBuf,
    pub mountpoint: PathBuf,
    pub mirror: Option<PathBuf>,
    /// `--folder`: the mount point is kept as a plain folder in sync.
    pub folder: bool,
    /// `KEY=value` pairs for `Environment=`.
    pub env: Vec<(String, String)>,
}

/// The variables a mount started by systemd needs from the installing shell: where the platform
/// is and where hyperclay keeps its files. Never a key or token.
pub fn carried_env() -> Vec<(String, String)> {
    ["HYPERCLAY_URL", "HYPERCLAY_HOME"]
        .iter()
        .filter_map(|k| {
            let v = std::env::var(k).ok().filter(|v| !v.is_empty())?;
            Some((k.to_string(), v))
        })
        .collect()
}

pub fn unit_text(spec: &UnitSpec) -> String {
    let exe = spec.exe.to_string_lossy();
    let mnt = spec.mountpoint.to_string_lossy();
    let mut mount = vec![exe.as_ref(), "mount", mnt.as_ref()];
    let mirror = spec
        .mirror
        .as_ref()
        .map(|m| m.to_string_lossy().into_owned());
    if let Some(m) = &mirror {
        mount.extend(["--mirror", m.as_str()]);
    }
    if spec.folder {
        mount.push("--folder");
    }
    let unmount = command_line(&[exe.as_ref(), "unmount", mnt.as_ref()]);
    let env: String = spec
        .env
        .iter()
        .map(|(k, v)| format!("Environment={}\n", quoted(&format!("{k}={v}"))))
        .collect();
    format!(
        "# Written by `hyperclay service install`; `hyperclay service uninstall` removes it.\n\
         [Unit]\n\
         Description=Hyperclay account mounted at {mnt_plain}\n\
         Documentation=man:hyperclay(1)\n\
         \n\
         [Service]\n\
         Type=notify\n\
         NotifyAccess=main\n\
         # A mount left by a crash is cleared first (nothing is lost: saves are on disk).\n\
         ExecStartPre=-{unmount}\n\
         ExecStart={mount}\n\
         # Saved files finish going up before the mount goes away (one already gone is no failure).\n\
         ExecStop=-{unmount}\n\
         {env}\
         Restart=on-failure\n\
         RestartSec=5\n\
         # The first listing of the account waits at most 30 s.\n\
         TimeoutStartSec=90\n\
         # Pushes get up to two minutes to drain on stop.\n\
         TimeoutStopSec=150\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        mnt_plain = mnt.replace('%', "%%").replace(['\n', '\r'], " "),
        mount = command_line(&mount),
    )
}

/// Whether this session has a systemd user instance to talk to; if not, why.
fn user_systemd() -> Result<(), String> {
    match Command::new("systemctl")
        .args(["--user", "show-environment"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`systemctl --user` answers: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("systemctl could not run: {e}")),
    }
}

/// Runs `systemctl --user ARGS`; a refusal is an error quoting what systemd said.
fn systemctl(args: &[&str], unit: &str) -> anyhow::Result<()> {
    let out = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::piped())
        .output()
        .with_context(|| format!("running systemctl --user {}", args.join(" ")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        bail!(
            "systemd refused `systemctl --user {}` ({}): {}; see `journalctl --user -u {unit}`",
            args.join(" "),
            out.status,
            hyperclay::log::printable(said.trim())
        );
    }
    Ok(())
}

/// Writes the unit atomically (temp, fsync, rename), readable by this user only.
fn write_unit(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().context("the unit's folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .context("the unit's name")?
        .to_string_lossy();
    let temp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("writing {}", temp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&temp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The other installed units (`hyperclay-*.service` and the legacy one): (name, text).
fn other_units(dir: &Path, except: &str) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let ours = (name.starts_with("hyperclay-") && name.ends_with(".service"))
                || name == LEGACY_UNIT;
            if !ours || name == except {
                return None;
            }
            Some((name, std::fs::read_to_string(e.path()).ok()?))
        })
        .collect()
}

/// The mirror an installed unit's mount uses, as its ExecStart says it (`None`: the default).
fn unit_mirror(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("ExecStart="))?;
    let at = line.find("\"--mirror\" ")? + "\"--mirror\" ".len();
    Some(line[at..].to_string())
}

pub fn install(
    mountpoint: Option<PathBuf>,
    mirror: Option<PathBuf>,
    folder: bool,
    start: bool,
) -> anyhow::Result<()> {
    if folder && mirror.is_some() {
        anyhow::bail!("--mirror does not go with --folder: the folder itself holds the files");
    }
    let mountpoint = super::mount_path(&mountpoint.unwrap_or_else(default_mountpoint));
    let mirror = mirror.map(|m| hyperclay::fs::absolute(&m));
    let unit = unit_name(&mountpoint);
    let (dir, systemd_reads_it) = unit_dir();
    // One owner per mirror: two services on one mirror would have the second refused at every
    // start. Said now, with what to do.
    let ours = mirror.as_ref().map(|m| quoted(&m.to_string_lossy()));
    if let Some((other, _)) = other_units(&dir, &unit)
        .into_iter()
        .find(|(_, text)| unit_mirror(text) == ours)
    {
        bail!(
            "the service {other} already mounts {}: give this mount its own mirror (--mirror DIR), or remove that service first (`hyperclay service uninstall MOUNTPOINT`)",
            match &mirror {
                Some(m) => format!("the mirror {}", m.display()),
                None => format!("the default mirror {}", hyperclay::config::default_mirror().display()),
            }
        );
    }
    std::fs::create_dir_all(&mountpoint)
        .with_context(|| format!("creating the mount point {}", mountpoint.display()))?;
    let exe = std::env::current_exe().context("finding the hyperclay program")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    if std::env::var_os("HYPERCLAY_API_KEY").is_some()
        && hyperclay::credentials::load().ok().flatten().is_none()
    {
        println!(
            "note: HYPERCLAY_API_KEY is not copied into the service (a unit file is no place for a secret); run `hyperclay login` (or `hyperclay login --api-key`) so the service can sign in"
        );
    }
    let spec = UnitSpec {
        exe,
        mountpoint: mountpoint.clone(),
        mirror,
        folder,
        env: carried_env(),
    };
    let text = unit_text(&spec);
    let path = dir.join(&unit);
    write_unit(&path, &text)?;
    println!("hyperclay: wrote {}", path.display());
    // What `systemctl enable` is given: the name where systemd looks by itself, else the file.
    let enable_as = match systemd_reads_it {
        true => unit.clone(),
        false => path.display().to_string(),
    };
    if !start {
        println!("  start it with: systemctl --user enable --now '{enable_as}'");
        return Ok(());
    }
    if let Err(why) = user_systemd() {
        print!("{text}");
        bail!(
            "wrote the unit above to {}, but could not start it: no systemd user instance in this session ({why}). Where systemd runs: `systemctl --user enable --now '{enable_as}'`; or run `hyperclay mount --daemon {}`; `--no-start` only writes the unit",
            path.display(),
            mountpoint.display()
        );
    }
    systemctl(&["daemon-reload"], &unit)?;
    systemctl(&["enable", "--now", &enable_as], &unit)?;
    println!(
        "hyperclay: the service {unit} mounts {} at every login; its log: journalctl --user -u '{unit}' (and `hyperclay status`)",
        mountpoint.display()
    );
    Ok(())
}

pub fn uninstall(mountpoint: Option<PathBuf>) -> anyhow::Result<()> {
    let mountpoint = super::mount_path(&mountpoint.unwrap_or_else(default_mountpoint));
    let unit = unit_name(&mountpoint);
    let (dir, _) = unit_dir();
    let mut units = vec![unit.clone()];
    // The one unit of earlier versions, when it mounts this mount point.
    let legacy = dir.join(LEGACY_UNIT);
    if std::fs::read_to_string(&legacy).is_ok_and(|t| {
        t.lines().any(|l| {
            l.starts_with("ExecStart=")
                && l.contains(&format!(
                    " \"mount\" {}",
                    quoted(&mountpoint.to_string_lossy())
                ))
        })
    }) {
        units.push(LEGACY_UNIT.to_string());
    }
    let systemd = user_systemd().is_ok();
    let mut removed = false;
    for name in &units {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        if systemd {
            // Stopping it unmounts (ExecStop) and drops its links; a unit that is not loaded is
            // no error here.
            let _ = systemctl(&["disable", "--now", name], name);
        }
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        println!("hyperclay: removed {}", path.display());
        removed = true;
    }
    if !removed {
        println!(
            "hyperclay: no service installed for {} ({} is not there)",
            mountpoint.display(),
            dir.join(&unit).display()
        );
        return Ok(());
    }
    if systemd {
        systemctl(&["daemon-reload"], &unit)?;
    }
    Ok(())
}

/// `~/Hyperclay`.
pub fn default_mountpoint() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join("Hyperclay")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_escape_the_mount_point_as_systemd_does() {
        assert_eq!(
            systemd_escape_path(Path::new("/home/me/Hyperclay")),
            "home-me-Hyperclay"
        );
        assert_eq!(
            systemd_escape_path(Path::new("/tmp/.tmpAB/My Hyperclay-x/\u{e9}")),
            r"tmp-.tmpAB-My\x20Hyperclay\x2dx-\xc3\xa9"
        );
        assert_eq!(
            systemd_escape_path(Path::new("/.hidden//a/")),
            r"\x2ehidden-a"
        );
        assert_eq!(systemd_escape_path(Path::new("/")), "-");
        assert_eq!(
            unit_name(Path::new("/home/me/Hyperclay")),
            "hyperclay-home-me-Hyperclay.service"
        );
    }

    #[test]
    fn odd_paths_stay_one_argument() {
        assert_eq!(
            quoted(r#"/a b/100%/"x"$y\z"#),
            r#""/a b/100%%/\"x\"$$y\\z""#
        );
    }
}
