//! A randomized operation stream through a real mount, in the spirit of fsx: create, write at
//! offsets, truncate, rename (also over existing files), unlink, mkdir, rmdir, fsync and
//! read-back, checked at every read against a model of what each file must contain. Seeded and
//! reproducible: `HYPERCLAY_FSX_SEED=N HYPERCLAY_FSX_OPS=M cargo test --test exerciser` replays a
//! run. Then the platform must hold exactly the last saved content of every file the mount shows.

#![allow(clippy::expect_fun_call)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::{eventually, platform_files, Mode, MountProcess, TestPlatform};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const FILES: &[&str] = &[
    "a.txt", "b.txt", "c.html", "d.html", "x/e.txt", "x/f.html", "y/g.bin",
];
const DIRS: &[&str] = &["x", "y"];

struct Model {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

impl Model {
    fn parent_exists(&self, path: &str) -> bool {
        match path.rsplit_once('/') {
            Some((dir, _)) => self.dirs.contains(dir),
            None => true,
        }
    }

    fn dir_empty(&self, dir: &str) -> bool {
        !self.files.keys().any(|f| f.starts_with(&format!("{dir}/")))
    }
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = rng.gen_range(0..=max);
    (0..n).map(|_| rng.gen_range(b'a'..=b'z')).collect()
}

fn run(seed: u64, ops: usize, m: &MountProcess) -> Model {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model {
        files: BTreeMap::new(),
        dirs: BTreeSet::new(),
    };
    let at = |rel: &str| m.path(rel);
    let trace = std::env::var("HYPERCLAY_FSX_TRACE").is_ok();
    for step in 0..ops {
        let ctx = |what: &str| format!("seed {seed}, step {step}: {what}");
        let note = |what: String| {
            if trace {
                eprintln!(
                    "{} step {step}: {what}",
                    chrono::Utc::now().format("%H:%M:%S%.6f")
                );
            }
        };
        match rng.gen_range(0..100) {
            0..=24 => {
                // Write at an offset (creating the file), then close.
                let name = FILES[rng.gen_range(0..FILES.len())];
                if !model.parent_exists(name) {
                    continue;
                }
                let data = random_bytes(&mut rng, 3000);
                let old = model.files.get(name).cloned().unwrap_or_default();
                let offset = rng.gen_range(0..=old.len() + 50);
                note(format!("write {name} at {offset}, {} bytes", data.len()));
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(at(name))
                    .expect(&ctx("open for write"));
                f.write_all_at(&data, offset as u64).expect(&ctx("write"));
                drop(f);
                let mut new = old;
                if new.len() < offset + data.len() {
                    new.resize(offset + data.len(), 0);
                }
                new[offset..offset + data.len()].copy_from_slice(&data);
                model.files.insert(name.to_string(), new);
            }
            25..=34 => {
                // Rewrite whole (O_TRUNC), like an editor.
                let name = FILES[rng.gen_range(0..FILES.len())];
                if !model.parent_exists(name) {
                    continue;
                }
                let data = random_bytes(&mut rng, 5000);
                note(format!("rewrite {name}"));
                std::fs::write(at(name), &data).expect(&ctx("rewrite"));
                model.files.insert(name.to_string(), data);
            }
            35..=44 => {
                // Truncate an existing file.
                let Some(name) = pick(&mut rng, &model.files) else {
                    continue;
                };
                let len = rng.gen_range(0..=model.files[&name].len() + 100);
                note(format!("truncate {name} to {len}"));
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(at(&name))
                    .expect(&ctx("open for truncate"));
                f.set_len(len as u64).expect(&ctx("truncate"));
                drop(f);
                model.files.get_mut(&name).unwrap().resize(len, 0);
            }
            45..=54 => {
                // Rename, sometimes over an existing file.
                let Some(from) = pick(&mut rng, &model.files) else {
                    continue;
                };
                let to = FILES[rng.gen_range(0..FILES.len())];
                if to == from || !model.parent_exists(to) {
                    continue;
                }
                note(format!("rename {from} -> {to}"));
                std::fs::rename(at(&from), at(to)).expect(&ctx("rename"));
                let content = model.files.remove(&from).unwrap();
                model.files.insert(to.to_string(), content);
            }
            55..=61 => {
                let Some(name) = pick(&mut rng, &model.files) else {
                    continue;
                };
                note(format!("unlink {name}"));
                std::fs::remove_file(at(&name)).expect(&ctx("unlink"));
                model.files.remove(&name);
            }
            62..=69 => {
                let dir = DIRS[rng.gen_range(0..DIRS.len())];
                if model.dirs.contains(dir) {
                    if model.dir_empty(dir) {
                        note(format!("rmdir {dir}"));
                        std::fs::remove_dir(at(dir)).expect(&ctx("rmdir"));
                        model.dirs.remove(dir);
                    }
                } else {
                    note(format!("mkdir {dir}"));
                    std::fs::create_dir(at(dir)).expect(&ctx("mkdir"));
                    model.dirs.insert(dir.to_string());
                }
            }
            70..=77 => {
                // Write, fsync, write more through one descriptor.
                let Some(name) = pick(&mut rng, &model.files) else {
                    continue;
                };
                let a = random_bytes(&mut rng, 500);
                let b = random_bytes(&mut rng, 500);
                note(format!("append+fsync {name}"));
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(at(&name))
                    .expect(&ctx("open"));
                f.seek(SeekFrom::End(0)).unwrap();
                f.write_all(&a).expect(&ctx("write"));
                f.sync_all().expect(&ctx("fsync"));
                f.write_all(&b).expect(&ctx("write after fsync"));
                drop(f);
                let c = model.files.get_mut(&name).unwrap();
                c.extend_from_slice(&a);
                c.extend_from_slice(&b);
            }
            _ => {
                // Read back and compare with the model.
                let Some(name) = pick(&mut rng, &model.files) else {
                    continue;
                };
                note(format!("read {name}"));
                let mut got = Vec::new();
                std::fs::File::open(at(&name))
                    .expect(&ctx("open for read"))
                    .read_to_end(&mut got)
                    .expect(&ctx("read"));
                assert_eq!(
                    got.len(),
                    model.files[&name].len(),
                    "{}",
                    ctx(&format!("size of {name}"))
                );
                assert!(
                    got == model.files[&name],
                    "{}",
                    ctx(&format!("content of {name}"))
                );
            }
        }
    }
    model
}

fn pick(rng: &mut StdRng, files: &BTreeMap<String, Vec<u8>>) -> Option<String> {
    if files.is_empty() {
        return None;
    }
    files.keys().nth(rng.gen_range(0..files.len())).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_match_the_model_and_reach_the_platform() {
    let seeds: Vec<u64> = match std::env::var("HYPERCLAY_FSX_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => vec![1, 2, 3],
    };
    let ops: usize = std::env::var("HYPERCLAY_FSX_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    for seed in seeds {
        let p = TestPlatform::start(Mode::Full).await;
        let m = MountProcess::start(&p.url());
        let model = tokio::task::block_in_place(|| run(seed, ops, &m));
        // Everything the mount shows matches the model...
        for (name, content) in &model.files {
            assert_eq!(
                &std::fs::read(m.path(name)).unwrap(),
                content,
                "seed {seed}: {name} at the end"
            );
            assert_eq!(
                &std::fs::read(m.mirror.join(name)).unwrap(),
                content,
                "seed {seed}: the mirror copy of {name}"
            );
        }
        // ...and the platform holds the last saved content of every file the mount shows.
        let c = p.client();
        let settled = eventually(Duration::from_secs(15), || {
            let c = c.clone();
            let files = model.files.clone();
            async move {
                let on_platform = platform_files(&c).await;
                files
                    .iter()
                    .all(|(name, content)| on_platform.get(name) == Some(content))
            }
        })
        .await;
        if !settled {
            let on_platform = platform_files(&c).await;
            for (name, content) in &model.files {
                if on_platform.get(name) != Some(content) {
                    eprintln!(
                        "seed {seed}: {name}: platform {:?} bytes, model {} bytes",
                        on_platform.get(name).map(|c| c.len()),
                        content.len()
                    );
                }
            }
            panic!(
                "seed {seed}: the platform does not hold the mount's files\n{}",
                m.log()
            );
        }
    }
}
