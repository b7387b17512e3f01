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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_belongs_to_its_process() {
        let me = std::process::id();
        assert_eq!(of_thread(me), Some(me));
        let tid = std::thread::spawn(|| nix::unistd::gettid().as_raw() as u32)
            .join()
            .unwrap();
        // The thread has ended: nothing to tell, never a wrong answer.
        assert!(matches!(of_thread(tid), None | Some(_)));
        let live = std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            s.spawn(move || {
                tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
                let _ = done_rx.recv();
            });
            let tid = rx.recv().unwrap();
            let answer = of_thread(tid);
            done_tx.send(()).unwrap();
            answer
        });
        assert_eq!(live, Some(me), "a live thread of this process");
        assert_eq!(of_thread(0), None);
    }
}
