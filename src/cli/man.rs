//! `hyperclay man DIR`: manual pages generated from the same definitions as `--help`
//! (clap_mangen), one for the program and one per command (`man hyperclay-mount`), with what
//! `--help` does not say: EXIT STATUS, ENVIRONMENT, FILES and EXAMPLES (written here, true to
//! config.rs and the commands; tests/cli.rs checks every variable the code reads is named).

use std::path::Path;

use anyhow::Context;

pub fn write_pages(command: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    write_page(&command, dir, &top_sections(), &mut written)?;
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let extra = command_sections(sub.get_name());
        let name = format!("hyperclay-{}", sub.get_name());
        // The version for the page's VERSION section; no `--version` flag (a command has none).
        let sub = sub
            .clone()
            .name(name)
            .version(crate::VERSION)
            .disable_version_flag(true);
        write_page(&sub, dir, &extra, &mut written)?;
    }
    println!(
        "hyperclay: wrote {} manual pages in {}",
        written.len(),
        dir.display()
    );
    Ok(())
}

fn write_page(
    command: &clap::Command,
    dir: &Path,
    extra: &str,
    written: &mut Vec<String>,
) -> anyhow::Result<()> {
    let file = format!("{}.1", command.get_name());
    let man = clap_mangen::Man::new(command.clone());
    let mut roff = Vec::new();
    (|| -> std::io::Result<()> {
        man.render_title(&mut roff)?;
        man.render_name_section(&mut roff)?;
        man.render_synopsis_section(&mut roff)?;
        man.render_description_section(&mut roff)?;
        if command.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut roff)?;
        }
        if command.has_subcommands() {
            man.render_subcommands_section(&mut roff)?;
        }
        roff.extend_from_slice(extra.as_bytes());
        man.render_version_section(&mut roff)
    })()
    .with_context(|| format!("rendering {file}"))?;
    let path = dir.join(&file);
    std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
    written.push(file);
    Ok(())
}

/// A line of plain text as roff reads it: backslashes and hyphens escaped, no control character
/// at its start.
fn text(line: &str) -> String {
    let escaped = line.replace('\\', "\\e").replace('-', "\\-");
    match escaped.starts_with(['.', '\'']) {
        true => format!("\\&{escaped}\n"),
        false => format!("{escaped}\n"),
    }
}

/// A section: `.SH NAME`, then tagged paragraphs (term, explanation).
fn section(name: &str, items: &[(&str, &str)]) -> String {
    let mut out = format!(".SH \"{name}\"\n");
    for (term, what) in items {
        out.push_str(".TP\n");
        out.push_str(&text(term));
        out.push_str(&text(what));
    }
    out
}

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success. `hyperclay status` with no mount running also answers 0 (and says so)."),
    (
        "1",
        "Failure: one line on standard error, `hyperclay: ` and what went wrong with what to do (a mount that cannot start, no mount at the path given, systemd refusing the service, a version that does not exist...).",
    ),
    ("2", "The command line was not understood (an unknown option or command, a missing argument)."),
    ("101", "A bug (a panic): the log has the details; please report it."),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "HYPERCLAY_HOME",
        "Keeps everything under one folder: DIR/config, DIR/data, DIR/state and DIR/run instead of the XDG folders below (and `hyperclay service install` writes its unit under DIR/config/systemd/user).",
    ),
    (
        "HYPERCLAY_URL",
        "The platform's address (https://hyperclay.com by default). Also read from ./.env (only an address on this machine) and from the config folder's .env.",
    ),
    (
        "HYPERCLAY_API_KEY",
        "A platform API key (hcsk_...) to sign in with instead of the stored sign-in. Never copied into a service unit; never sent to an address taken from ./.env.",
    ),
    (
        "HYPERCLAY_DEV_API_KEY",
        "`hyperclay dev-platform`: the account's API key (as --api-key, kept out of `ps`).",
    ),
    (
        "XDG_CONFIG_HOME",
        "Sign-in and .env in XDG_CONFIG_HOME/hyperclay (~/.config/hyperclay); systemd user units in XDG_CONFIG_HOME/systemd/user.",
    ),
    ("XDG_DATA_HOME", "The default mirror and the dev platform's data in XDG_DATA_HOME/hyperclay (~/.local/share/hyperclay)."),
    ("XDG_STATE_HOME", "The log in XDG_STATE_HOME/hyperclay (~/.local/state/hyperclay)."),
    (
        "XDG_RUNTIME_DIR",
        "Running mounts' pid files and control sockets in XDG_RUNTIME_DIR/hyperclay (the temp folder otherwise).",
    ),
    ("HOME", "Where the XDG folders and ~/Hyperclay (the service's default mount point) are."),
    ("RUST_LOG", "The log's level and filter (as `hyperclay=debug`), over -v."),
    ("NO_COLOR", "No colours on standard error."),
    ("BROWSER", "`hyperclay login`: the browser to open (a :-separated list; %s stands for the address)."),
    ("NOTIFY_SOCKET", "Set by systemd: the mount tells it READY=1 once the account is listed."),
    ("HYPERCLAY_PREFETCH", "0: the mount fetches files when they are opened, not ahead in the background."),
    (
        "HYPERCLAY_STREAM_SILENCE_SECS",
        "How long the platform's event stream may stay silent before it is opened again (tests).",
    ),
    (
        "HYPERCLAY_FAST_CHECKS_SECS",
        "Shortens the first part of an outage (30 s) in which the platform is looked for every second (tests).",
    ),
    (
        "HYPERCLAY_MAX_LISTING_NODES",
        "Lowers the number of nodes taken from one account's listing (200,000; tests reach it with a small listing).",
    ),
    (
        "HYPERCLAY_PROGRESS_TIMEOUT_SECS",
        "How long a transfer may make no progress before it is given up (tests).",
    ),
    (
        "HYPERCLAY_FIRST_LISTING_SECS",
        "How long a mount waits for the account's first listing before it says it is mounted (30 by default).",
    ),
    (
        "HYPERCLAY_REFRESH_CHECK_SECS",
        "How often the mount checks whether its sign-in needs renewing (3600 by default).",
    ),
    (
        "HYPERCLAY_REFRESH_AFTER_SECS",
        "The sign-in's age at which it is renewed (one day by default).",
    ),
    (
        "HYPERCLAY_NOTIFY_READY",
        "Internal: set by `hyperclay mount --daemon` in its child.",
    ),
];

const FILES: &[(&str, &str)] = &[
    ("~/.config/hyperclay/credentials.json", "The stored sign-in (mode 0600); `hyperclay logout` removes it."),
    ("~/.config/hyperclay/.env", "HYPERCLAY_URL=... for every command."),
    ("~/.local/share/hyperclay/mirror/", "The default mirror: the offline copy of every file (--mirror chooses another)."),
    (
        "MIRROR/sites-versions/",
        "Local backups, as Hyperclay Local keeps them: blog/post.html's versions in sites-versions/blog/post/, named by the time they were replaced (2026-11-01-01-30-00-431-0400.html). Per file the newest 20 and all from the last 60 days are kept; the mount cleans the rest at start and daily, and never touches a name that is not a version.",
    ),
    ("MIRROR/.hyperclay/", "The program's own files in the mirror: index.db, the owner lock, temp files."),
    ("~/.local/state/hyperclay/sync.log", "The log (`hyperclay status` names it)."),
    ("$XDG_RUNTIME_DIR/hyperclay/mounts/", "Each running mount's pid file and control socket."),
    (
        "~/.config/systemd/user/hyperclay-MOUNT.service",
        "The unit `hyperclay service install` writes, one per mount point (MOUNT is the mount point as `systemd-escape --path` writes it).",
    ),
    ("~/.local/share/hyperclay/dev-platform/", "`hyperclay dev-platform`'s database."),
];

const EXAMPLES: &[(&str, &str)] = &[
    ("hyperclay login", "Sign in through the browser."),
    ("hyperclay mount --daemon ~/Hyperclay", "Mount the account and return once it is there."),
    ("hyperclay status ~/Hyperclay", "Whether it syncs, and the one problem to fix, if any."),
    ("hyperclay versions ~/Hyperclay/blog/post.html", "Every version of a file, local backups and the platform's, newest first."),
    (
        "hyperclay restore ~/Hyperclay/blog/post.html --at '2026-11-01 09:00'",
        "Make the file what it was at 9 o'clock, as a normal save (the content it replaces is kept as a version).",
    ),
    ("hyperclay service install ~/Hyperclay", "Mount at every login, as a systemd user service."),
    ("hyperclay unmount ~/Hyperclay", "End the mount once its pushes are done."),
    ("hyperclay man ~/.local/share/man/man1", "Install these pages."),
];

/// The program's page: everything.
fn top_sections() -> String {
    let mut out = section("EXIT STATUS", EXIT_STATUS);
    out.push_str(&section("ENVIRONMENT", ENVIRONMENT));
    out.push_str(".PP\n");
    out.push_str(&text(
        "With HYPERCLAY_HOME set, the ~/.config/hyperclay, ~/.local/share/hyperclay and ~/.local/state/hyperclay below are HOME/config, HOME/data and HOME/state, and the runtime folder is HOME/run.",
    ));
    out.push_str(&section("FILES", FILES));
    out.push_str(&section("EXAMPLES", EXAMPLES));
    out.push_str(".SH \"SEE ALSO\"\n");
    out.push_str(&text(
        "hyperclay-mount(1), hyperclay-status(1), hyperclay-versions(1), hyperclay-restore(1), hyperclay-service(1), systemctl(1)",
    ));
    out
}

/// A command's page: how it ends, its own examples, and where the rest is.
fn command_sections(name: &str) -> String {
    let mut out = section("EXIT STATUS", EXIT_STATUS);
    let examples: Vec<(&str, &str)> = EXAMPLES
        .iter()
        .copied()
        .filter(|(line, _)| line.split_whitespace().nth(1) == Some(name))
        .collect();
    if !examples.is_empty() {
        out.push_str(&section("EXAMPLES", &examples));
    }
    out.push_str(".SH \"SEE ALSO\"\n");
    out.push_str(&text(
        "hyperclay(1), for ENVIRONMENT (the variables every command reads) and FILES.",
    ));
    out
}
