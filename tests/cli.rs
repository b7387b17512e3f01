//! The command line as a user's shell and systemd see it (issue 16): the service unit (checked
//! by `systemd-analyze verify`), readiness told to systemd over a real NOTIFY_SOCKET, shell
//! completions, manual pages and `--version`. And what the commands say (issue 27): one owner
//! per mirror, messages and exit codes that are true, and a log that is plain text to read.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::hostile::{node, Content, HostilePlatform, Script};
use common::{Mode, MountProcess, TestPlatform};

/// How long a command that should answer at once may take on a loaded machine.
const LIMIT: Duration = Duration::from_secs(30);

fn hyperclay(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hyperclay"));
    c.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("HYPERCLAY_HOME", home.join("hc"))
        // No systemd user instance reachable, whatever the machine running the tests has: a
        // test must never enable a service on the developer's own session.
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .env_remove("HYPERCLAY_URL")
        .env_remove("HYPERCLAY_API_KEY");
    c
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `systemd-escape --path` itself, to check the unit's name against.
fn systemd_escape(path: &Path) -> String {
    let out = Command::new("systemd-escape")
        .arg("--path")
        .arg(path)
        .output()
        .expect("systemd-escape (Debian's systemd package; .ci/run installs it)");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Where `hyperclay()`'s environment (HYPERCLAY_HOME set) has the service's units.
fn unit_dir(home: &Path) -> PathBuf {
    home.join("hc/config/systemd/user")
}

fn unit_file(home: &Path, mountpoint: &Path) -> PathBuf {
    unit_dir(home).join(format!("hyperclay-{}.service", systemd_escape(mountpoint)))
}

/// systemd's own checker reads the unit as systemd would (unknown keys, bad quoting, a missing
/// program all fail it).
fn systemd_accepts(unit_path: &Path) {
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit_path)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .expect("systemd-analyze (Debian's systemd package; .ci/run installs it)");
    let said = String::from_utf8_lossy(&verify.stderr);
    // Only findings about our unit count: a machine without a running systemd also warns
    // about itself.
    let name = unit_path.file_name().unwrap().to_string_lossy().to_string();
    let ours: Vec<&str> = said.lines().filter(|l| l.contains(&name)).collect();
    assert!(
        verify.status.success() && ours.is_empty(),
        "systemd-analyze verify {name}: {:?}\n{said}",
        verify.status
    );
}

#[test]
fn the_service_unit_carries_the_mount_and_no_secret_and_systemd_accepts_it() {
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("My Hyperclay");
    let stdout = ok(hyperclay(home.path())
        .args(["service", "install", "--no-start"])
        .arg(&mnt)
        .env("HYPERCLAY_URL", "http://127.0.0.1:8787")
        .env("HYPERCLAY_API_KEY", "hcsk_secret_never_in_a_unit")
        .output()
        .unwrap());
    let unit_path = unit_file(home.path(), &mnt);
    assert!(
        stdout.contains(&unit_path.display().to_string()),
        "{stdout}"
    );
    assert!(
        stdout.contains("HYPERCLAY_API_KEY is not copied"),
        "the user is told how the service signs in: {stdout}"
    );
    assert!(mnt.is_dir(), "the mount point is made");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_hyperclay")).unwrap();
    let exe = exe.display();
    let mnt = mnt.display();
    for line in [
        "Type=notify".to_string(),
        format!("ExecStart=\"{exe}\" \"mount\" \"{mnt}\""),
        format!("ExecStop=-\"{exe}\" \"unmount\" \"{mnt}\""),
        format!("ExecStartPre=-\"{exe}\" \"unmount\" \"{mnt}\""),
        "Restart=on-failure".to_string(),
        "Environment=\"HYPERCLAY_URL=http://127.0.0.1:8787\"".to_string(),
        format!(
            "Environment=\"HYPERCLAY_HOME={}\"",
            home.path().join("hc").display()
        ),
        "WantedBy=default.target".to_string(),
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "no line {line:?} in\n{unit}"
        );
    }
    assert!(!unit.contains("hcsk_"), "a secret in the unit:\n{unit}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&unit_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the unit is the user's own");
    systemd_accepts(&unit_path);
}

/// `service install --folder`: the unit keeps the folder in sync (no FUSE), and systemd takes it.
#[test]
fn the_service_unit_of_a_plain_folder_says_folder() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("Hyperclay");
    ok(hyperclay(home.path())
        .args(["service", "install", "--no-start", "--folder"])
        .arg(&dir)
        .output()
        .unwrap());
    let unit_path = unit_file(home.path(), &dir);
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_hyperclay")).unwrap();
    let line = format!(
        "ExecStart=\"{}\" \"mount\" \"{}\" \"--folder\"",
        exe.display(),
        dir.display()
    );
    assert!(
        unit.lines().any(|l| l == line),
        "no line {line:?} in\n{unit}"
    );
    systemd_accepts(&unit_path);
}

/// With HYPERCLAY_HOME set, nothing is written outside it: not into ~/.config/systemd/user.
/// Without it, the unit goes where systemd reads user units.
#[test]
fn the_unit_follows_hyperclay_home_and_otherwise_goes_where_systemd_reads() {
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("mnt");
    ok(hyperclay(home.path())
        .args(["service", "install", "--no-start"])
        .arg(&mnt)
        .output()
        .unwrap());
    assert!(unit_file(home.path(), &mnt).exists());
    assert!(
        !home.path().join("config/systemd").exists(),
        "written outside HYPERCLAY_HOME"
    );
    let stdout = ok(hyperclay(home.path())
        .args(["service", "install", "--no-start"])
        .arg(&mnt)
        .env_remove("HYPERCLAY_HOME")
        .output()
        .unwrap());
    let name = format!("hyperclay-{}.service", systemd_escape(&mnt));
    let path = home.path().join("config/systemd/user").join(&name);
    assert!(path.exists(), "{stdout}");
    assert!(
        stdout.contains(&format!("systemctl --user enable --now '{name}'")),
        "{stdout}"
    );
}

/// One unit per mount point, named by it: two mounts, two services, each accepted by systemd;
/// a second service on a mirror another one uses is refused with what to do; uninstall removes
/// only the mount's own.
#[test]
fn each_mount_point_gets_its_own_unit_and_a_shared_mirror_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        home.path().join("work site"),
        home.path().join("play-site"),
        home.path().join("third"),
    );
    ok(hyperclay(home.path())
        .args(["service", "install", "--no-start"])
        .arg(&a)
        .output()
        .unwrap());
    let refused = hyperclay(home.path())
        .args(["service", "install", "--no-start"])
        .arg(&b)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = text(&refused.stderr);
    assert!(
        said.contains("default mirror") && said.contains("--mirror"),
        "{said}"
    );
    ok(hyperclay(home.path())
        .args(["service", "install", "--no-start"])
        .arg(&b)
        .arg("--mirror")
        .arg(home.path().join("play mirror"))
        .output()
        .unwrap());
    let refused = hyperclay(home.path())
        .args(["service", "install", "--no-start"])
        .arg(&c)
        .arg("--mirror")
        .arg(home.path().join("play mirror"))
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a mirror given twice");
    let (unit_a, unit_b) = (unit_file(home.path(), &a), unit_file(home.path(), &b));
    assert!(unit_a.exists() && unit_b.exists());
    assert_eq!(std::fs::read_dir(unit_dir(home.path())).unwrap().count(), 2);
    systemd_accepts(&unit_a);
    systemd_accepts(&unit_b);
    ok(hyperclay(home.path())
        .args(["service", "uninstall"])
        .arg(&b)
        .output()
        .unwrap());
    assert!(unit_a.exists() && !unit_b.exists());
}

/// systemd refusing to start the service (here a stand-in `systemctl` first on PATH, which
/// records what it is asked and refuses `enable`): install exits 1 quoting systemd. With
/// HYPERCLAY_HOME set, the unit is enabled by its path (systemd links it into its folder).
#[test]
fn when_systemd_refuses_install_exits_1_quoting_it() {
    let home = tempfile::tempdir().unwrap();
    let bin = home.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let asked = home.path().join("asked");
    let fake = bin.join("systemctl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\ncase \"$*\" in *enable*) echo 'Failed to enable unit: Unit hyperclay-x.service has a bad setting.' >&2; exit 1;; esac\nexit 0\n",
            asked.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mnt = home.path().join("mnt");
    let out = hyperclay(home.path())
        .args(["service", "install"])
        .arg(&mnt)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let said = text(&out.stderr);
    assert!(
        said.contains("systemd refused") && said.contains("has a bad setting"),
        "{said}"
    );
    let unit = unit_file(home.path(), &mnt);
    let asked = std::fs::read_to_string(&asked).unwrap();
    assert!(
        asked
            .lines()
            .any(|l| l == format!("--user enable --now {}", unit.display())),
        "{asked}"
    );
}

/// The single `hyperclay.service` earlier versions wrote is removed by `uninstall` of the mount
/// point it mounts, and left alone for any other.
#[test]
fn uninstall_removes_the_earlier_single_unit_of_that_mount_only() {
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("Hyperclay");
    let legacy = unit_dir(home.path()).join("hyperclay.service");
    std::fs::create_dir_all(unit_dir(home.path())).unwrap();
    std::fs::write(
        &legacy,
        format!(
            "[Service]\nExecStart=\"/usr/bin/hyperclay\" \"mount\" \"{}\"\n",
            mnt.display()
        ),
    )
    .unwrap();
    let stdout = ok(hyperclay(home.path())
        .args(["service", "uninstall"])
        .arg(home.path().join("elsewhere"))
        .output()
        .unwrap());
    assert!(stdout.contains("no service installed"), "{stdout}");
    assert!(legacy.exists());
    let stdout = ok(hyperclay(home.path())
        .args(["service", "uninstall"])
        .output()
        .unwrap());
    assert!(stdout.contains("removed"), "{stdout}");
    assert!(!legacy.exists());
}

/// Asked to start it where no systemd user instance answers (a container, this sandbox), install
/// writes the unit, prints it, and fails saying why and what to run; `systemctl` itself cannot be
/// driven here, so enabling a real service is not tested.
#[test]
fn without_systemd_install_fails_saying_why_and_uninstall_removes_the_unit() {
    let home = tempfile::tempdir().unwrap();
    let out = hyperclay(home.path())
        .args(["service", "install"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let said = text(&out.stderr);
    assert!(
        said.contains("could not start it") && said.contains("no systemd user instance"),
        "{said}"
    );
    assert!(said.contains("systemctl --user enable --now"), "{said}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("[Service]") && stdout.contains("Type=notify"),
        "{stdout}"
    );
    // The default mount point.
    let mnt = home.path().join("Hyperclay");
    assert!(mnt.is_dir());
    let unit_path = unit_file(home.path(), &mnt);
    assert!(unit_path.exists());
    let stdout = ok(hyperclay(home.path())
        .args(["service", "uninstall"])
        .output()
        .unwrap());
    assert!(stdout.contains("removed"), "{stdout}");
    assert!(!unit_path.exists());
}

/// `Type=notify` as systemd does it: a datagram socket in NOTIFY_SOCKET. READY=1 comes once the
/// account is listed (the files are there when systemd calls the service started), STOPPING=1
/// when it stops.
#[tokio::test(flavor = "multi_thread")]
async fn the_mount_tells_systemd_it_is_ready_once_listed() {
    let platform = TestPlatform::start(Mode::Full).await;
    platform
        .client()
        .create(
            hyperclay::protocol::NodeKind::Site,
            "listed.html",
            hyperclay::protocol::NodeId::ROOT,
            Some(b"x"),
        )
        .await
        .unwrap();
    let sockets = tempfile::tempdir().unwrap();
    let socket_path = sockets.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let notify = socket_path.display().to_string();
    let mut m = MountProcess::prepare(&platform.url(), &[("NOTIFY_SOCKET", notify.as_str())]);
    m.spawn();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("READY=1 within 20 s");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(message.lines().any(|l| l == "READY=1"), "{message}");
    assert!(
        std::fs::read_dir(&m.mountpoint)
            .unwrap()
            .any(|e| e.unwrap().file_name() == "listed.html"),
        "ready means listed"
    );
    m.stop();
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
}

#[test]
fn bash_completion_registers_every_command() {
    let home = tempfile::tempdir().unwrap();
    let script = ok(hyperclay(home.path())
        .args(["completions", "bash"])
        .output()
        .unwrap());
    let file = home.path().join("hyperclay.bash");
    std::fs::write(&file, &script).unwrap();
    // Loaded by a real bash, and asked what it completes after `hyperclay `.
    let out = ok(Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && COMP_WORDS=(hyperclay '') COMP_CWORD=1 COMP_LINE='hyperclay ' COMP_POINT=10 && _hyperclay hyperclay '' hyperclay && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        ))
        .output()
        .unwrap());
    for command in [
        "mount",
        "unmount",
        "status",
        "sync",
        "login",
        "logout",
        "serve",
        "service",
        "completions",
        "man",
    ] {
        assert!(
            out.lines().any(|l| l == command),
            "{command} missing: {out}"
        );
    }
    for shell in ["zsh", "fish"] {
        let script = ok(hyperclay(home.path())
            .args(["completions", shell])
            .output()
            .unwrap());
        assert!(
            script.contains("unmount") && script.contains("service"),
            "{shell}"
        );
    }
}

#[test]
fn man_pages_cover_the_program_and_each_command() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("man1");
    ok(hyperclay(home.path())
        .arg("man")
        .arg(&dir)
        .output()
        .unwrap());
    let top = std::fs::read_to_string(dir.join("hyperclay.1")).unwrap();
    assert!(top.contains(".TH hyperclay 1"), "{top}");
    assert!(top.contains("mount") && top.contains("service"));
    let mount = std::fs::read_to_string(dir.join("hyperclay-mount.1")).unwrap();
    assert!(mount.contains(".TH hyperclay-mount 1"));
    assert!(mount.contains("daemon"), "the options are documented");
    assert!(dir.join("hyperclay-service.1").exists());
    // groff (man's renderer) reads every page without a warning.
    for page in std::fs::read_dir(&dir).unwrap() {
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(page.unwrap().path())
            .output()
            .expect("groff (Debian's groff-base; .ci/run installs it)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The variables the code reads (a quoted `HYPERCLAY_...` or `XDG_...` name in src/), besides
/// the build's own.
fn variables_the_code_reads() -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (i, _) in text.match_indices('"') {
                let rest = &text[i + 1..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                if (name.starts_with("HYPERCLAY_") || name.starts_with("XDG_"))
                    && rest[name.len()..].starts_with('"')
                    && name.len() > "XDG_".len()
                {
                    found.insert(name);
                }
            }
        }
    }
    // Set by build.rs for `--version`, not read when the program runs.
    found.remove("HYPERCLAY_BUILD_COMMIT");
    found
}

#[test]
fn man_pages_say_how_it_ends_what_it_reads_where_its_files_are_with_examples() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("man1");
    ok(hyperclay(home.path())
        .arg("man")
        .arg(&dir)
        .output()
        .unwrap());
    let top = std::fs::read_to_string(dir.join("hyperclay.1")).unwrap();
    let section = |page: &str, name: &str| -> String {
        let start = page
            .find(&format!(".SH \"{name}\""))
            .unwrap_or_else(|| panic!("no {name} section in\n{page}"));
        let rest = &page[start + 4..];
        rest[..rest.find(".SH ").unwrap_or(rest.len())].replace("\\-", "-")
    };
    let env = section(&top, "ENVIRONMENT");
    let read = variables_the_code_reads();
    assert!(
        read.contains("HYPERCLAY_HOME") && read.contains("XDG_RUNTIME_DIR"),
        "{read:?}"
    );
    for var in &read {
        assert!(
            env.contains(var.as_str()),
            "{var} is read by the code but not in ENVIRONMENT"
        );
    }
    for var in ["RUST_LOG", "NO_COLOR", "BROWSER", "HOME"] {
        assert!(env.contains(var), "{var} is not in ENVIRONMENT");
    }
    let exit = section(&top, "EXIT STATUS");
    for code in ["0", "1", "2"] {
        assert!(
            exit.lines().any(|l| l == code),
            "exit status {code}: {exit}"
        );
    }
    let files = section(&top, "FILES");
    for path in [
        "credentials.json",
        "sites-versions/",
        "sync.log",
        "systemd/user",
    ] {
        assert!(files.contains(path), "{path} not in FILES: {files}");
    }
    let examples = section(&top, "EXAMPLES");
    for command in ["hyperclay mount", "hyperclay versions", "hyperclay restore"] {
        assert!(examples.contains(command), "{command} not in EXAMPLES");
    }
    // A command's page says how it ends, its own examples, and where the rest is.
    let restore = std::fs::read_to_string(dir.join("hyperclay-restore.1")).unwrap();
    assert!(section(&restore, "EXIT STATUS").contains("Failure"));
    assert!(section(&restore, "EXAMPLES").contains("hyperclay restore"));
    assert!(section(&restore, "SEE ALSO").contains("hyperclay(1)"));
    assert!(
        !std::fs::read_to_string(dir.join("hyperclay-mount.1"))
            .unwrap()
            .contains("Print version"),
        "a command's page offers no --version it does not have"
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let home = tempfile::tempdir().unwrap();
    let out = ok(hyperclay(home.path()).arg("--version").output().unwrap());
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    // Built where git can't read the checkout (or from a tarball): said so, not made up.
    let head = match head.trim() {
        "" => "unknown commit".to_string(),
        h => h.to_string(),
    };
    assert_eq!(
        out.trim(),
        format!("hyperclay {} ({})", env!("CARGO_PKG_VERSION"), head.trim())
    );
}

/// Waits (at most `limit`) for a line of the child's stdout that holds `wanted`; the rest is
/// drained so the child never blocks on a full pipe.
fn wait_for_line(child: &mut Child, wanted: &'static str, limit: Duration) {
    let (said, heard) = std::sync::mpsc::channel();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    std::thread::spawn(move || {
        if lines.any(|l| l.is_ok_and(|l| l.contains(wanted))) {
            let _ = said.send(());
        }
        lines.for_each(drop);
    });
    heard
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("no line with {wanted:?} within {limit:?}"));
}

/// `unmount`, `status` and `sync off` of a folder where no mount runs, while another mount does:
/// each says no mount runs there (naming the one that does) and fails; a trailing `/` names the
/// same mount.
#[tokio::test(flavor = "multi_thread")]
async fn a_path_where_no_mount_runs_is_said_so_while_another_mount_runs() {
    let platform = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&platform.url());
    let mnt = m.mountpoint.display().to_string();
    let elsewhere = m.home.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let there = elsewhere.display().to_string();

    let out = m.command().arg("unmount").arg(&elsewhere).output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(!text(&out.stdout).contains("unmounted"), "{out:?}");
    assert!(
        text(&out.stderr).starts_with(&format!("hyperclay: {there} is not mounted")),
        "{out:?}"
    );

    let out = m.command().arg("status").arg(&elsewhere).output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stderr).trim(),
        format!("hyperclay: no mount is running at {there} (the one running is at {mnt})")
    );
    assert!(
        !text(&out.stdout).contains(&mnt),
        "no answer about the other mount"
    );

    let out = m
        .command()
        .args(["sync", "off"])
        .arg(&elsewhere)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stderr).trim(),
        format!("hyperclay: no mount is running at {there} (the one running is at {mnt}): nothing to turn off")
    );
    assert_eq!(
        m.status_json()["mounts"][0]["sync_on"],
        true,
        "the other mount still syncs"
    );

    let out = m
        .command()
        .arg("status")
        .arg(format!("{mnt}/"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        text(&out.stdout).contains(&format!("mount:    {mnt} ")),
        "{out:?}"
    );
}
/// A key in HYPERCLAY_API_KEY the platform refuses: the mount and status say that key was
/// refused and to fix the variable (not "sign in again with `hyperclay login`", which would not
/// replace it), and `login --api-key` with a refused key says the key was refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_key_is_named_with_what_to_fix() {
    let platform = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start_with(&platform.url(), &[("HYPERCLAY_API_KEY", "hcsk_not_this")]);
    let out = m
        .command()
        .arg("status")
        .arg(&m.mountpoint)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status = text(&out.stdout);
    assert!(
        status.contains(
            "problem:  The platform refused the API key in HYPERCLAY_API_KEY: fix the variable"
        ),
        "{status}"
    );
    assert!(!status.contains("listing the account"), "{status}");
    assert!(!status.contains("sign in again"), "{status}");
    assert!(!status.contains(".;"), "{status}");

    let mut login = m
        .command()
        .args(["login", "--api-key"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    login
        .stdin
        .take()
        .unwrap()
        .write_all(b"hcsk_not_this\n")
        .unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    let said = text(&out.stderr);
    assert!(said.contains("refused that API key"), "{said}");
    assert!(!said.contains("sign in again"), "{said}");
    assert!(!m.credentials_path().exists(), "nothing stored");
}
/// The local server's port is taken: the mount still comes up, and the hint names its own flag.
#[tokio::test(flavor = "multi_thread")]
async fn a_taken_port_is_met_with_the_mounts_own_flag() {
    let platform = TestPlatform::start(Mode::Full).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let m = MountProcess::start_with(&platform.url(), &[("TEST_SERVE_PORT", port.as_str())]);
    let log = m.log();
    let line = log
        .lines()
        .find(|l| l.contains("the local server could not start"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains(&format!("port {port} on 127.0.0.1 is taken")),
        "{line}"
    );
    assert!(line.contains("--serve-port N"), "{line}");
    assert!(!line.contains("--port"), "{line}");
}

/// No /dev/fuse (hidden in a mount namespace of its own): one line that says FUSE is missing,
/// what to do for the FUSE mount, and that the folder is kept as a plain folder in sync instead,
/// which it then is (status names the mode), not an OS error twice.
#[test]
fn without_dev_fuse_the_mount_says_so_in_one_line_and_keeps_a_plain_folder() {
    common::assert_root("hides /dev/fuse in a mount namespace of its own");
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let env = |c: &mut Command| {
        c.env("HOME", home.path())
            .env("HYPERCLAY_HOME", home.path().join("hc"))
            .env("HYPERCLAY_URL", "http://127.0.0.1:9")
            .env_remove("HYPERCLAY_API_KEY");
    };
    // A /dev without fuse, in a mount namespace of the command's own.
    let mut command = Command::new("unshare");
    command
        .args(["-m", "sh", "-c"])
        .arg("mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 && exec \"$0\" mount \"$1\" --no-serve --daemon")
        .arg(env!("CARGO_BIN_EXE_hyperclay"))
        .arg(&mnt);
    env(&mut command);
    let _cleanup = Unmounts(mnt.clone());
    let out = finish_within(command, LIMIT, "a mount without /dev/fuse");
    let said = text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let first = said.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("hyperclay: FUSE is missing here (there is no /dev/fuse)"),
        "{said}"
    );
    assert!(
        first.contains("as a plain folder in sync instead"),
        "{said}"
    );
    assert!(first.contains("fuse3"), "what to do for the mount: {said}");
    assert!(!said.contains("No such file or directory"), "{said}");
    assert!(!hyperclay::fs::is_mounted(&mnt));
    let mut status = hyperclay(home.path());
    env(&mut status);
    let status = ok(status.arg("status").arg(&mnt).output().unwrap());
    assert!(
        status.contains("folder:") && status.contains("FUSE is missing"),
        "{status}"
    );
    let mut stop = hyperclay(home.path());
    env(&mut stop);
    ok(stop.arg("unmount").arg(&mnt).output().unwrap());
}
/// Names from the platform and from files reach the log printable (issue 26): a site whose name
/// retitles and clears the terminal (its fetch stalls, and the failure is logged with its name)
/// and a file written with such a name leave no ESC or BEL byte in sync.log or on standard
/// error; standard error into a file has no colours and no module paths, which `-v` adds.
#[tokio::test(flavor = "multi_thread")]
async fn names_reach_the_log_printable_and_a_file_gets_no_colours() {
    let hostile_name = "\u{1b}]2;pwned\u{7}\u{1b}[2Jtitle.html";
    let platform = HostilePlatform::start(Script {
        username: "mallory".into(),
        nodes: vec![node(1, "site", hostile_name, "", 0, b"<p>hi</p>")],
        // Its content stalls: the failed fetch is logged with the name.
        content: [(1, Content::Trickle(Duration::from_secs(20)))]
            .into_iter()
            .collect(),
        ..Script::default()
    })
    .await;
    let mut m = MountProcess::prepare(&platform.url(), &[("HYPERCLAY_PROGRESS_TIMEOUT_SECS", "1")]);
    let stderr_path = m.home.path().join("stderr");
    let mount = |m: &mut MountProcess, extra: &[&str]| {
        let mut child = m
            .command()
            .env_remove("NO_COLOR")
            .args(extra)
            .arg("mount")
            .arg(&m.mountpoint)
            .arg("--mirror")
            .arg(&m.mirror)
            .arg("--no-serve")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        wait_for_line(&mut child, " mounted at ", LIMIT);
        m.child = Some(child);
    };
    mount(&mut m, &[]);
    // A file named to do the same, written through the mount.
    let file_name = "\u{1b}]2;again\u{7}\u{1b}[2Jnote.txt";
    std::fs::write(m.path(file_name), b"x").unwrap();
    let logged = common::wait_until(LIMIT, || {
        let log = m.log();
        log.contains("pwned") && log.contains("again")
    });
    assert!(logged.is_some(), "both names reach the log:\n{}", m.log());
    assert!(m.stop().success());
    let log = m.log();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    for (what, text) in [("sync.log", &log), ("standard error", &stderr)] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "a terminal escape in {what}:\n{text:?}"
        );
        assert!(
            !text.contains(" hyperclay::"),
            "a module path in {what}:\n{text}"
        );
    }
    assert!(
        log.contains("\\u{1b}]2;pwned\\u{7}\\u{1b}[2Jtitle.html"),
        "the name is written escaped:\n{log}"
    );
    assert!(stderr.contains(" INFO mounted"), "{stderr}");

    // -v names each line's module.
    mount(&mut m, &["-v"]);
    assert!(m.stop().success());
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        stderr.contains(" hyperclay::cli::mount: mounted"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

/// Runs `command` to its end, at most `limit`; one still running then is killed and the test
/// fails (a refusal must come at once, not after a mount or a server has started).
fn finish_within(mut command: Command, limit: Duration, what: &str) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what}: still running after {limit:?}, it was not refused\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
/// A mount point cleaned up at the end, whatever happened (a mount that should have been
/// refused and was killed leaves its dead mount behind).
struct Unmounts(PathBuf);

impl Drop for Unmounts {
    fn drop(&mut self) {
        if hyperclay::fs::is_mounted(&self.0) {
            let _ = hyperclay::fs::fusermount_unmount(&self.0);
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
/// One owner per mirror (issue 27): a second mount of a mirror, or `hyperclay serve` on it, is
/// refused in one line naming the mount that has it; once that mount ends, the mirror is free.
/// `serve` holds it too: a mount is then refused, naming the server.
#[tokio::test(flavor = "multi_thread")]
async fn one_owner_per_mirror_a_second_mount_or_serve_is_refused_naming_the_first() {
    let platform = TestPlatform::start(Mode::Full).await;
    let apps_port = common::free_port().to_string();
    let mut m =
        MountProcess::start_with(&platform.url(), &[("TEST_SERVE_PORT", apps_port.as_str())]);
    let pid = m.pid();
    let mirror = m.mirror.display().to_string();
    let mnt = m.mountpoint.display().to_string();
    let other = m.home.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let _cleanup = Unmounts(other.clone());

    let mut second = m.command();
    second
        .arg("mount")
        .arg(&other)
        .arg("--mirror")
        .arg(&m.mirror)
        .arg("--no-serve");
    let out = finish_within(second, LIMIT, "a second mount of the same mirror");
    let said = text(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        said.starts_with(&format!(
            "hyperclay: {mirror} is in use by the mount at {mnt} (pid {pid}): "
        )),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "one line: {said}");
    assert!(!hyperclay::fs::is_mounted(&other));

    let mut serve = m.command();
    serve
        .args(["serve", "--mirror"])
        .arg(&m.mirror)
        .args(["--port", &common::free_port().to_string()]);
    let out = finish_within(serve, LIMIT, "`hyperclay serve` on a mounted mirror");
    let said = text(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        said.contains(&format!(
            "{mirror} is in use by the mount at {mnt} (pid {pid}), which serves its apps at http://127.0.0.1:{apps_port}"
        )),
        "points to the mount's own server: {said}"
    );
    // The running mount is untouched.
    assert_eq!(m.status_json()["mounts"][0]["sync_on"], true);

    // The lock ends with its process: `serve` may have the mirror now, and then holds it.
    assert!(m.stop().success());
    let serve_port = common::free_port().to_string();
    let mut serve = m
        .command()
        .args(["serve", "--mirror"])
        .arg(&m.mirror)
        .args(["--port", &serve_port])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let serving = Kill(&mut serve);
    wait_for_line(serving.0, "hyperclay: serving", LIMIT);
    let serve_pid = serving.0.id();
    let mut mount = m.command();
    mount
        .arg("mount")
        .arg(&m.mountpoint)
        .arg("--mirror")
        .arg(&m.mirror)
        .arg("--no-serve");
    let out = finish_within(mount, LIMIT, "a mount of a mirror `hyperclay serve` has");
    let said = text(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        said.starts_with(&format!(
            "hyperclay: {mirror} is in use by `hyperclay serve` (pid {serve_pid}) at http://127.0.0.1:{serve_port}: "
        )),
        "{said}"
    );
    assert!(!hyperclay::fs::is_mounted(&m.mountpoint));
}

/// `scripts/mount.sh MOUNTPOINT OPTIONS...` passes the options on to `hyperclay mount` (here
/// `--daemon`, `--mirror DIR` and `--no-serve`); HYPERCLAY_BIN runs the test's binary, and a
/// `cargo` that fails proves the script builds nothing then.
#[tokio::test(flavor = "multi_thread")]
async fn mount_sh_passes_its_options_on_to_the_mount() {
    let platform = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::prepare(&platform.url(), &[]);
    let _cleanup = Unmounts(m.mountpoint.clone());
    let fake = m.home.path().join("bin");
    std::fs::create_dir(&fake).unwrap();
    std::fs::write(
        fake.join("cargo"),
        "#!/bin/sh\necho 'cargo must not run here' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fake.join("cargo"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    let mut script = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/mount.sh"));
    script
        .env("PATH", path)
        .env("HYPERCLAY_BIN", env!("CARGO_BIN_EXE_hyperclay"))
        .env("HYPERCLAY_HOME", m.home.path().join("home"))
        .env("HYPERCLAY_URL", platform.url())
        .env("HYPERCLAY_API_KEY", common::KEY)
        .arg(&m.mountpoint)
        .args(["--daemon", "--no-serve", "--mirror"])
        .arg(&m.mirror);
    let out = finish_within(script, LIMIT, "scripts/mount.sh with --daemon");
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains(" mounted at "), "{out:?}");
    assert!(hyperclay::fs::is_mounted(&m.mountpoint));
    let status = m.status_json();
    let mirror = std::fs::canonicalize(&m.mirror).unwrap();
    assert_eq!(
        status["mounts"][0]["mirror"],
        mirror.display().to_string(),
        "the mount uses --mirror: {status}"
    );
    m.unmount();
}

/// An error that quotes a name (here a mount point that does not exist, named to clear the
/// screen) reaches standard error escaped, like the log.
#[test]
fn an_error_quoting_a_name_prints_no_terminal_escape() {
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("gone\u{1b}[2J\u{7}");
    let out = hyperclay(home.path())
        .arg("mount")
        .arg(&mnt)
        .env("HYPERCLAY_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let said = text(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(said.contains("does not exist"), "{said}");
    assert!(
        !said.contains('\u{1b}') && !said.contains('\u{7}'),
        "{said:?}"
    );
    assert!(said.contains("gone\\u{1b}[2J\\u{7}"), "{said}");
}
