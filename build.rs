//! Puts the git commit the program is built from into `hyperclay --version`
//! (`HYPERCLAY_BUILD_COMMIT`), or "unknown commit" when built outside a git checkout (a crate
//! tarball). Written by hand: it is one `git` call, no crate needed.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    let version = match &commit {
        Some(c) => c.clone(),
        None => "unknown commit".to_string(),
    };
    println!("cargo:rustc-env=HYPERCLAY_BUILD_COMMIT={version}");
    // Built again when HEAD moves: HEAD itself (a checkout), the branch it points to (a commit),
    // and packed refs. Only files that exist: a missing one would rebuild every time.
    // In a worktree, HEAD is the worktree's own but branches and packed refs live in the common
    // git dir: watching the branch under the worktree's dir missed every commit.
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        let git_dir = Path::new(&git_dir);
        let common = git(&["rev-parse", "--git-common-dir"])
            .unwrap_or_else(|| git_dir.display().to_string());
        let common = Path::new(&common);
        let mut watch = vec![git_dir.join("HEAD"), common.join("packed-refs")];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(common.join(branch));
        }
        for path in watch.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
