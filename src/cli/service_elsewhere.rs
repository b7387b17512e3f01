//! `hyperclay service install|uninstall` where there is no systemd (macOS, Windows): refused in
//! one line that says what starts the plain folder at login there instead.

use std::path::PathBuf;

use anyhow::bail;

/// What starts the plain folder at login on this system (README, "Starting the plain folder at
/// login on macOS and Windows").
#[cfg(target_os = "macos")]
const AT_LOGIN: &str = "on macOS a launchd agent does: a plist in ~/Library/LaunchAgents running `hyperclay mount DIR --folder`, with RunAtLoad and KeepAlive";
#[cfg(windows)]
const AT_LOGIN: &str = "on Windows a shortcut does: `hyperclay.exe mount DIR --folder` in the Startup folder (Win+R, `shell:startup`)";
#[cfg(not(any(target_os = "macos", windows)))]
const AT_LOGIN: &str =
    "start `hyperclay mount --daemon DIR --folder` from your session's start-up instead";

pub fn install(
    _mountpoint: Option<PathBuf>,
    _mirror: Option<PathBuf>,
    _folder: bool,
    _start: bool,
) -> anyhow::Result<()> {
    bail!("`hyperclay service` writes systemd user units, which only Linux has; {AT_LOGIN} (README, \"Starting the plain folder at login on macOS and Windows\")")
}

pub fn uninstall(_mountpoint: Option<PathBuf>) -> anyhow::Result<()> {
    bail!("`hyperclay service` manages systemd user units, which only Linux has: nothing was installed here; {AT_LOGIN}, remove that instead")
}
