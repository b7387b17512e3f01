//! `hyperclay service install|uninstall` where there is no systemd (macOS, Windows): refused in
//! one line that says what starts the mount at login there instead (README, "Other systems").

use std::path::PathBuf;

use anyhow::bail;

/// What starts a program at login on this system.
#[cfg(target_os = "macos")]
const AT_LOGIN: &str = "on macOS, a LaunchAgent does: a plist in ~/Library/LaunchAgents whose ProgramArguments run `hyperclay mount DIR`, with RunAtLoad and KeepAlive, loaded with `launchctl bootstrap gui/$(id -u) PLIST`";
#[cfg(windows)]
const AT_LOGIN: &str = "on Windows, a shortcut to `hyperclay.exe mount DIR` in the Startup folder (Win+R, `shell:startup`) does, or a Task Scheduler task run at log on";
#[cfg(not(any(target_os = "macos", windows)))]
const AT_LOGIN: &str = "start `hyperclay mount --daemon DIR` from your session's start-up instead";

pub fn install(
    _mountpoint: Option<PathBuf>,
    _mirror: Option<PathBuf>,
    _folder: bool,
    _start: bool,
) -> anyhow::Result<()> {
    bail!("`hyperclay service` writes systemd user units, which only Linux has; {AT_LOGIN} (README, \"Other systems\")")
}

pub fn uninstall(_mountpoint: Option<PathBuf>) -> anyhow::Result<()> {
    bail!("`hyperclay service` manages systemd user units, which only Linux has: nothing was installed here; {AT_LOGIN}, remove that instead")
}
