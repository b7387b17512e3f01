//! `hyperclay service install|uninstall`: the mount as a systemd user service, so that it is
//! there after every login and reboot. `Type=notify`: the mount tells systemd it is ready
//! (`sd_notify` READY=1) once the account is listed, the same moment `--daemon` returns.
//!
//! The unit carries what the mount needs from this shell (the platform address from
//! `HYPERCLAY_URL`, `HYPERCLAY_HOME`) and never a secret: the service signs in with the stored
//! credentials (`hyperclay login`), which only this user can read. An address from a project's
//! `./.env` is not carried over: a service outlives the folder it was installed from.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The unit's name (`systemctl --user status hyperclay`).
pub const UNIT: &str = "hyperclay.service";

/// Where systemd looks for this user's units.
pub fn unit_path() -> PathBuf {
    let config = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".config")
        }
    };
    config.join("systemd/user").join(UNIT)
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

/// Whether this session has a systemd user instance to talk to.
fn has_user_systemd() -> bool {
    Command::new("systemctl")
        .args(["--user", "show-environment"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .status()
        .with_context(|| format!("running systemctl --user {}", args.join(" ")))?;
    if !status.success() {
        bail!(
            "`systemctl --user {}` failed ({status}); see `journalctl --user -u hyperclay`",
            args.join(" ")
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
    let temp = dir.join(format!(".{UNIT}.tmp"));
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

pub fn install(
    mountpoint: Option<PathBuf>,
    mirror: Option<PathBuf>,
    start: bool,
) -> anyhow::Result<()> {
    let mountpoint = super::mount_path(&mountpoint.unwrap_or_else(default_mountpoint));
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
        mirror: mirror.map(|m| hyperclay::fs::absolute(&m)),
        env: carried_env(),
    };
    let text = unit_text(&spec);
    let path = unit_path();
    write_unit(&path, &text)?;
    println!("hyperclay: wrote {}", path.display());
    if !start {
        return Ok(());
    }
    if !has_user_systemd() {
        println!("hyperclay: no systemd user instance in this session: start it where systemd runs with `systemctl --user enable --now hyperclay`, or run `hyperclay mount --daemon {}`. The unit:", mountpoint.display());
        print!("{text}");
        return Ok(());
    }
    systemctl(&["daemon-reload"])?;
    systemctl(&["enable", "--now", UNIT])?;
    println!(
        "hyperclay: the service mounts {} at every login; its log: journalctl --user -u hyperclay (and `hyperclay status`)",
        mountpoint.display()
    );
    Ok(())
}

pub fn uninstall() -> anyhow::Result<()> {
    let path = unit_path();
    if has_user_systemd() {
        // Stopping it unmounts (ExecStop); a unit that is not loaded is not an error here.
        let _ = systemctl(&["disable", "--now", UNIT]);
    }
    match std::fs::remove_file(&path) {
        Ok(()) => println!("hyperclay: removed {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!(
                "hyperclay: no service installed ({} is not there)",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    if has_user_systemd() {
        systemctl(&["daemon-reload"])?;
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
    fn odd_paths_stay_one_argument() {
        assert_eq!(
            quoted(r#"/a b/100%/"x"$y\z"#),
            r#""/a b/100%%/\"x\"$$y\\z""#
        );
    }
}
