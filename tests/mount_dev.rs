//! Developers' workloads in the mount, each run beside a plain folder where that means something
//! (issue 25): executables keep their mode (`chmod +x`, `cc -o`, `make`), symlinks live anywhere
//! locally (`python3 -m venv`, `cp -a`, `ln -s`) and never go up, SQLite's side files stay local,
//! and `fstat` of an unlinked open file answers no links, as ext4 does.

mod common;

use common::{Mode, MountProcess, TestPlatform};

/// `fstat` on a descriptor whose file lost its last name answers `st_nlink` 0, as ext4 does
/// (pjdfstest `unlink/14.t`; it answered 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fstat_of_an_unlinked_open_file_answers_no_links() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let script = r#"
import os, sys, json
d = sys.argv[1]
path = os.path.join(d, "gone.txt")
fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b"hello")
before = os.fstat(fd).st_nlink
os.unlink(path)
after = os.fstat(fd)
os.close(fd)
print(json.dumps([before, after.st_nlink, after.st_size]))
"#;
    let plain = tempfile::tempdir().unwrap();
    let on_disk = common::python_json(script, plain.path());
    assert_eq!(on_disk, serde_json::json!([1, 0, 5]));
    assert_eq!(common::python_json(script, &m.mountpoint), on_disk);
}
