//! Many small files, side by side in one run: a plain folder on the same disk, two FUSE
//! passthroughs over it (the floor any FUSE mount pays on this machine: kernel round trips,
//! context switches), `hyperclay mount --folder` (the plain folder kept in sync: the workload
//! writes the disk directly, a watcher tells the program afterwards) and `hyperclay mount`
//! (FUSE), each over a dev platform of its own, and `rclone mount` (`--vfs-cache-mode full`,
//! uploads at once) over `rclone serve webdav`. The two floors: `bindfs` (libfuse's high-level,
//! path-based API) and libfuse's own low-level example `passthrough_ll` (`-o
//! source=DIR,writeback,cache=always`), built at the start of each run from Debian's
//! `libfuse3-dev` into target/bench-tools/ (without libfuse3-dev or gcc that column alone is
//! skipped, and said why); the better floor of a run is the lower median of the two. Three
//! workloads (issue 15): `git clone` of a repository of 4,650 files, `tar xf` of 3,478 files,
//! and 2,000 small files written one after another by a program (open, write, close). Each
//! figure: the time until the program finished (what the user waits for), and for hyperclay and
//! rclone the time until the backend holds every file (the platform, or rclone's webdav folder),
//! from the start of the workload. The runs interleave the columns (plain, folder, bindfs,
//! passthrough_ll, mount, rclone, then again), so a change in the machine's load falls on all of
//! them. `cargo bench --bench smallfiles -- [--quick] [--runs N] [--columns LIST] [--busy]`
//! (each figure the median of N runs, 3 by default, 1 with --quick; LIST, e.g. `plain,folder`,
//! runs only those of plain, folder, bindfs, passthrough_ll, mount, rclone: for profiling;
//! --busy runs `stress-ng --cpu 2 --cpu-load 50` beside the whole run, issue 25's busy machine,
//! stopped by its PID at the end); bench/run runs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    bindfs_mount, build_passthrough_ll, busy, hyperclay_folder, hyperclay_mount,
    passthrough_ll_mount, rclone_mount, rclone_webdav, start_platform, Started,
};

/// A file's content: 200 bytes to 4 KB, text.
fn content(i: usize) -> String {
    let line = format!("line of file {i}\n");
    line.repeat(1 + (i * 7919) % 256)
}

/// A source tree of `files` files in folders of 50, under `dir/name`.
fn make_tree(dir: &Path, name: &str, files: usize) -> PathBuf {
    let root = dir.join(name);
    for i in 0..files {
        let folder = root.join(format!("d{}", i / 50));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("f{i}.txt")), content(i)).unwrap();
    }
    root
}

/// Runs a command; its error output's first line when it fails.
fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(err.lines().next().unwrap_or("failed").to_string())
}

/// Seconds `f` took, or why it failed.
fn timed(f: impl FnOnce() -> Result<(), String>) -> Result<f64, String> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64())
}

/// Seconds until `count()` reaches `want` (up to 10 minutes), from `since`.
fn until_held(since: Instant, want: usize, count: impl Fn() -> usize) -> Option<f64> {
    while since.elapsed() < Duration::from_secs(600) {
        if count() >= want {
            return Some(since.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Seconds until the backend held every file, as a result: "-" when the workload itself failed,
/// a timeout otherwise.
fn held(run: &Result<f64, String>, h: Option<f64>) -> Result<f64, String> {
    match (run, h) {
        (_, Some(s)) => Ok(s),
        (Err(_), None) => Err("-".into()),
        (Ok(_), None) => Err("not all there after 10 minutes".into()),
    }
}

/// The seconds of the runs that succeeded, in order.
fn successes(runs: &[Result<f64, String>]) -> Vec<f64> {
    let mut ok: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    ok.sort_by(f64::total_cmp);
    ok
}

/// The median of the runs that succeeded, or the first failure when none did.
fn median(runs: &[Result<f64, String>]) -> Result<f64, String> {
    let ok = successes(runs);
    if ok.is_empty() {
        return Err(runs
            .iter()
            .find_map(|r| r.clone().err())
            .unwrap_or_default());
    }
    Ok(ok[ok.len() / 2])
}

/// One figure: the median, and the range when there were several runs.
fn shown(runs: &[Result<f64, String>]) -> String {
    let m = median(runs);
    match (&m, successes(runs).as_slice()) {
        (Ok(m), [lo, .., hi]) => format!("{m:.2} s ({lo:.2}-{hi:.2})"),
        _ => shown_one(&m),
    }
}

fn shown_one(r: &Result<f64, String>) -> String {
    match r {
        Ok(s) => format!("{s:.2} s"),
        Err(e) if e == "-" || e.starts_with("skipped") => e.clone(),
        Err(e) => format!("fails: {e}"),
    }
}

/// Regular files under `dir` (the `.git` folder and dot-names skipped).
fn count_files(dir: &Path) -> usize {
    common::files_under(dir).len()
}

/// Runs a workload into a folder.
type Runner = Box<dyn Fn(&Path) -> Result<(), String>>;

struct Workload {
    name: &'static str,
    files: usize,
    run: Runner,
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    // Runs of each workload: the disk of this VM varies by a third from run to run, so a figure
    // is the median of three (one with --quick); `--runs N` sets it.
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .map_or(if quick { 1 } else { 3 }, |n| n.parse().expect("--runs N"));
    let columns: Option<String> = std::env::args().skip_while(|a| a != "--columns").nth(1);
    let column_on = |name: &str| {
        columns
            .as_ref()
            .is_none_or(|l| l.split(',').any(|c| c == name))
    };
    const COLUMNS: [&str; 6] = [
        "plain",
        "folder",
        "bindfs",
        "passthrough_ll",
        "mount",
        "rclone",
    ];
    if let Some(list) = &columns {
        for c in list.split(',') {
            assert!(
                COLUMNS.contains(&c),
                "--columns: {c} is none of {}",
                COLUMNS.join(",")
            );
        }
    }
    let skipped = || -> Result<f64, String> { Err("-".into()) };
    let load_at_start = load_average();
    // The busy machine of issue 25, beside the whole run; stopped (by its PID) when `stress`
    // is dropped at the end, or on a panic.
    let stress = std::env::args().any(|a| a == "--busy").then(|| {
        let s = busy().unwrap_or_else(|e| panic!("--busy: {e}"));
        eprintln!(
            "busy: stress-ng --cpu 2 --cpu-load 50 running beside the run (pid {})",
            s.id()
        );
        s
    });
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();

    // The repository: 4,650 files, one commit.
    let repo_files = 4650 / scale;
    let repo = make_tree(&src, "repo", repo_files);
    let git = |args: &[&str]| {
        run(Command::new("git")
            .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
            .args(args)
            .current_dir(&repo))
        .unwrap()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "files"]);
    // The archive: 3,478 files.
    let tar_files = 3478 / scale;
    let tree = make_tree(&src, "tree", tar_files);
    let archive = src.join("tree.tar");
    run(Command::new("tar")
        .arg("cf")
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg("tree"))
    .unwrap();
    std::fs::remove_dir_all(&tree).unwrap();
    let loop_files = 2000 / scale;

    let workloads = vec![
        Workload {
            name: "git clone",
            files: repo_files,
            run: Box::new({
                let repo = repo.clone();
                move |target: &Path| {
                    run(Command::new("git")
                        .args(["clone", "-q", "--no-hardlinks"])
                        .arg(&repo)
                        .arg(target.join("clone")))
                }
            }),
        },
        Workload {
            name: "tar xf",
            files: tar_files,
            run: Box::new({
                let archive = archive.clone();
                move |target: &Path| {
                    run(Command::new("tar")
                        .arg("xf")
                        .arg(&archive)
                        .arg("-C")
                        .arg(target))
                }
            }),
        },
        Workload {
            name: "small files in a loop",
            files: loop_files,
            run: Box::new(move |target: &Path| {
                let script = format!(
                    "import sys\nfor i in range({loop_files}):\n    with open(f'{{sys.argv[1]}}/loop/f{{i}}.txt', 'w') as f: f.write('line of file ' + str(i) * 40)\n"
                );
                std::fs::create_dir_all(target.join("loop")).map_err(|e| e.to_string())?;
                run(Command::new("python3").args(["-c", &script]).arg(target))
            }),
        },
    ];

    // The backends. The folder mode has a platform (an account) of its own: on one account
    // each front door would download what the other one sent up, during the other's runs.
    let (platform, client) = start_platform(&dir.path().join("platform")).await;
    let url = platform.url();
    let (folder_platform, folder_client) =
        start_platform(&dir.path().join("folder-platform")).await;
    let folder_url = folder_platform.url();
    let webdav_data = dir.path().join("webdav");
    std::fs::create_dir_all(&webdav_data).unwrap();
    let (webdav, webdav_url) = rclone_webdav(&webdav_data);
    let _webdav = Started::process(webdav);
    let plain = dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();

    // Every mount below is a `Started`: dropped (stopped, its own mount point unmounted) at the
    // end of its use, and on the way out of a panic too.
    let bind_src = dir.path().join("bind-src");
    std::fs::create_dir_all(&bind_src).unwrap();
    let bind_mnt = dir.path().join("bind-mnt");
    let bindfs: Result<Started, String> = match column_on("bindfs") {
        true => bindfs_mount(&bind_src, &bind_mnt)
            .ok_or_else(|| "bindfs is not installed (apt-get install bindfs)".to_string()),
        false => Err("-".into()),
    };
    // libfuse's passthrough_ll, built for this run; mounted afresh for each run (it holds a
    // descriptor per inode it was told of, and the kernel forgets none under this load).
    let passthrough: Result<PathBuf, String> = match column_on("passthrough_ll") {
        true => build_passthrough_ll(&bench_tools()),
        false => Err("-".into()),
    };
    // A floor that can't run is said once, here, in full, and is "skipped: ..." in its column.
    let skip = |name: &str, e: String| -> String {
        if e == "-" {
            return e;
        }
        eprintln!("{name}: {e}: no {name} column (the rest of the bench runs)");
        format!("skipped: {}", e.split(" (").next().unwrap_or(&e))
    };
    let bindfs = bindfs.map_err(|e| skip("bindfs", e));
    let passthrough = passthrough.map_err(|e| skip("passthrough_ll", e));
    let pll_src = dir.path().join("pll-src");
    std::fs::create_dir_all(&pll_src).unwrap();
    let pll_mnt = dir.path().join("pll-mnt");

    println!(
        "| workload (files) | plain folder | hyperclay folder | bindfs | passthrough_ll | hyperclay mount | rclone mount | better FUSE floor | mount / floor | floor / plain | folder / plain | mount / rclone | all on the backend: folder; mount; rclone |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for w in &workloads {
        let mut rows = Vec::new();
        for run in 1..=runs {
            // Each run in folders of its own (a clone needs an empty one), and counted apart on
            // the backends.
            let folder = format!("{}-{run}", w.name.replace(' ', "-"));
            let target = |root: &Path| {
                let t = root.join(&folder);
                std::fs::create_dir_all(&t).unwrap();
                t
            };
            // The files of this run on a platform, by name (cheap to poll).
            let on_platform = |c: &std::sync::Arc<hyperclay::remote::Client>| {
                let c = c.clone();
                let prefix = format!("{folder}/");
                move || {
                    let rt = tokio::runtime::Handle::current();
                    let nodes =
                        std::thread::scope(|s| s.spawn(|| rt.block_on(c.nodes())).join().unwrap());
                    nodes.map_or(0, |n| {
                        n.nodes
                            .iter()
                            .filter(|n| n.kind.is_file() && n.path.starts_with(&prefix))
                            .count()
                    })
                }
            };
            let plain_s = match column_on("plain") {
                true => timed(|| (w.run)(&target(&plain))),
                false => skipped(),
            };
            // The plain folder kept in sync, right after the plain folder, on the same disk.
            let (hf_s, hf_held) = match column_on("folder") {
                true => {
                    let (hf, hf_dir, _) = hyperclay_folder(&dir.path().join("hcf"), &folder_url);
                    let hf = Started::mount(hf, &hf_dir);
                    let started = Instant::now();
                    let hf_s = timed(|| (w.run)(&target(&hf_dir)));
                    if let Err(e) = &hf_s {
                        eprintln!("hyperclay folder failed {}: {e}", w.name);
                    }
                    let hf_held = tokio::task::block_in_place(|| {
                        until_held(started, w.files, on_platform(&folder_client))
                    });
                    hf.stop();
                    (hf_s, hf_held)
                }
                false => (skipped(), None),
            };
            let bind_s = match &bindfs {
                Ok(_) => timed(|| (w.run)(&target(&bind_mnt))),
                Err(e) => Err(e.clone()),
            };
            let pll_s = match &passthrough {
                Ok(program) => match passthrough_ll_mount(program, &pll_src, &pll_mnt) {
                    Ok(pll) => {
                        let s = timed(|| (w.run)(&target(&pll_mnt)));
                        pll.stop();
                        s
                    }
                    Err(e) => Err(format!("did not mount: {e}")),
                },
                Err(e) => Err(e.clone()),
            };
            let (hc_s, hc_held) = match column_on("mount") {
                true => {
                    let home = dir.path().join("hc");
                    let (hc, hc_mnt, _) = hyperclay_mount(&home, &url);
                    let hc = Started::mount(hc, &hc_mnt);
                    let started = Instant::now();
                    let hc_s = timed(|| (w.run)(&target(&hc_mnt)));
                    if let Err(e) = &hc_s {
                        eprintln!("hyperclay failed {}: {e}", w.name);
                    }
                    let hc_held = tokio::task::block_in_place(|| {
                        until_held(started, w.files, on_platform(&client))
                    });
                    hc.stop();
                    (hc_s, hc_held)
                }
                false => (skipped(), None),
            };
            let (rc_s, rc_held) = match column_on("rclone") {
                true => {
                    let (rc, rc_mnt, _) = rclone_mount(dir.path(), &webdav_url);
                    let rc = Started::mount(rc, &rc_mnt);
                    let started = Instant::now();
                    let rc_s = timed(|| (w.run)(&target(&rc_mnt)));
                    let backend = webdav_data.join(&folder);
                    let rc_held = match rc_s {
                        Ok(_) => until_held(started, w.files, || count_files(&backend)),
                        Err(_) => None,
                    };
                    rc.stop();
                    (rc_s, rc_held)
                }
                false => (skipped(), None),
            };
            let (hf_held, hc_held, rc_held) = (
                held(&hf_s, hf_held),
                held(&hc_s, hc_held),
                held(&rc_s, rc_held),
            );
            eprintln!(
                "{} run {run}: plain {}, folder {} (all up {}), bindfs {}, passthrough_ll {}, mount {} (all up {}), rclone {} (all up {})",
                w.name,
                shown_one(&plain_s),
                shown_one(&hf_s),
                shown_one(&hf_held),
                shown_one(&bind_s),
                shown_one(&pll_s),
                shown_one(&hc_s),
                shown_one(&hc_held),
                shown_one(&rc_s),
                shown_one(&rc_held)
            );
            rows.push([
                plain_s, hf_s, bind_s, pll_s, hc_s, rc_s, hf_held, hc_held, rc_held,
            ]);
        }
        let column =
            |i: usize| -> Vec<Result<f64, String>> { rows.iter().map(|r| r[i].clone()).collect() };
        let [plain_s, hf_s, bind_s, pll_s, hc_s, rc_s, _, _, _] =
            [0, 1, 2, 3, 4, 5, 6, 7, 8].map(|i| median(&column(i)));
        // The better floor: the lower of the two passthroughs' medians.
        let floor = match (&bind_s, &pll_s) {
            (Ok(b), Ok(p)) if p < b => Ok((*p, "passthrough_ll")),
            (Ok(b), _) => Ok((*b, "bindfs")),
            (Err(_), Ok(p)) => Ok((*p, "passthrough_ll")),
            (Err(_), Err(_)) => Err("-".to_string()),
        };
        let floor_s = floor.clone().map(|(s, _)| s);
        let floor_shown = match &floor {
            Ok((s, name)) => format!("{s:.2} s ({name})"),
            Err(_) => "-".into(),
        };
        let ratio = |a: &Result<f64, String>, b: &Result<f64, String>| match (a, b) {
            (Ok(a), Ok(b)) => format!("{:.2}x", a / b),
            _ => "-".into(),
        };
        println!(
            "| {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}; {}; {} |",
            w.name,
            w.files,
            shown(&column(0)),
            shown(&column(1)),
            shown(&column(2)),
            shown(&column(3)),
            shown(&column(4)),
            shown(&column(5)),
            floor_shown,
            ratio(&hc_s, &floor_s),
            ratio(&floor_s, &plain_s),
            ratio(&hf_s, &plain_s),
            ratio(&hc_s, &rc_s),
            shown(&column(6)),
            shown(&column(7)),
            shown(&column(8))
        );
    }
    drop(bindfs);
    println!(
        "\n{} run(s) per figure; load average at the start {load_at_start}, at the end {}; {}",
        runs,
        load_average(),
        match &stress {
            Some(_) => "busy: `stress-ng --cpu 2 --cpu-load 50` ran beside the whole run",
            None => "nothing started beside the run (--busy adds stress-ng --cpu 2 --cpu-load 50)",
        }
    );
    drop(stress);
    drop(platform);
    drop(folder_platform);
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg says them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Where the bench builds the tools it runs (target/bench-tools).
fn bench_tools() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("bench-tools")
}
