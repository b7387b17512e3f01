//! Which process a kernel request comes from. FUSE names the calling thread; a save on close
//! needs the process (its thread group), to tell the writer's own close from a forked child
//! closing an inherited descriptor (an exec closes every close-on-exec descriptor, and each close
//! is a FLUSH). Read from `/proc/<tid>/status`: no crate offers just this (procfs parses all of
//! /proc), and the thread is alive while its request waits for our answer.

/// The process (thread group id) of thread `tid`; None when it can't be told.
pub fn of_thread(tid: u32) -> Option<u32> {
    if tid == 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether threads `a` and `b` belong to one process; None when it can't be told (a thread
/// gone). The same thread needs no lookup: reading `/proc/<tid>/status` was a twentieth of a small
/// file's cost in the mount (issue 25), paid at every create and close.
pub fn same_process(a: u32, b: u32) -> Option<bool> {
    if a == b && a != 0 {
        return Some(true);
    }
    Some(of_thread(a)? == of_thread(b)?)
}

/// Whether thread `tid` is being killed (or is gone): a fatal signal is pending for it. The
/// kernel marks SIGKILL pending on every thread of a group that a fatal signal ends (SIGKILL
/// itself, or a SIGINT/SIGTERM left to its default action), so this sees `kill -9` and Ctrl-C
/// alike. fuser 0.18 answers the kernel's FUSE_INTERRUPT with ENOSYS itself (the kernel then
/// stops sending them), so a request waiting on the network watches this instead.
pub fn is_dying(tid: u32) -> bool {
    if tid == 0 {
        return false;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return true;
    };
    const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);
    status.lines().any(|l| {
        let pending = l
            .strip_prefix("SigPnd:")
            .or_else(|| l.strip_prefix("ShdPnd:"));
        pending
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|mask| mask & SIGKILL_BIT != 0)
    })
}

/// How often a request waiting on the network looks whether its caller is being killed.
pub const DYING_CHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// Resolves once thread `tid` is being killed (never for tid 0, which names no thread).
pub async fn killed(tid: u32) {
    loop {
        tokio::time::sleep(DYING_CHECK).await;
        if tid != 0 && is_dying(tid) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `f` of the id of another thread of this process, while that thread runs.
    fn with_live_thread<T>(f: impl FnOnce(u32) -> T) -> T {
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            s.spawn(move || {
                tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
                let _ = done_rx.recv();
            });
            let answer = f(rx.recv().unwrap());
            done_tx.send(()).unwrap();
            answer
        })
    }

    #[test]
    fn a_thread_belongs_to_its_process() {
        let me = std::process::id();
        assert_eq!(of_thread(me), Some(me));
        let tid = std::thread::spawn(|| nix::unistd::gettid().as_raw() as u32)
            .join()
            .unwrap();
        // The thread has ended: nothing to tell, never a wrong answer.
        assert!(matches!(of_thread(tid), None | Some(_)));
        let live = with_live_thread(of_thread);
        assert_eq!(live, Some(me), "a live thread of this process");
        assert_eq!(of_thread(0), None);
    }

    #[test]
    fn threads_of_one_process_are_told_from_another_process() {
        let me = std::process::id();
        assert_eq!(same_process(me, me), Some(true));
        let other_thread = with_live_thread(|tid| same_process(me, tid));
        assert_eq!(other_thread, Some(true), "another thread of this process");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert_eq!(same_process(me, child.id()), Some(false), "a child process");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(same_process(me, child.id()), None, "gone: can't be told");
    }

    #[test]
    fn a_killed_process_is_seen_dying() {
        let me = std::process::id();
        assert!(!is_dying(me));
        // A stopped child killed with SIGKILL: the signal stays pending while it is stopped.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        assert!(!is_dying(child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(is_dying(child.id()), "gone counts as dying");
    }
}
