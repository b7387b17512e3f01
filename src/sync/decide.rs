//! The one sync decision (architecture.md): a three-way comparison of the local copy and the
//! platform against the base, what both held at the last sync. It serves the live path, start-up
//! and reconnect alike; nothing is queued, the action is recomputed from the index every time.

use crate::protocol::Checksum;

/// What to do with one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Only the local copy changed: send it up.
    Push,
    /// Only the platform changed: bring it down (backing up the local copy first).
    Pull,
    /// Both changed to the same content: only the base moves.
    RecordBase,
    /// Both changed differently and the local change is later: push; the platform keeps its
    /// content as a version.
    LocalWins,
    /// Both changed differently and the platform's change is later: pull; the local copy is kept
    /// in `sites-versions/`.
    RemoteWins,
}

/// Decides for one node. `local_ms` is the local change's time on the platform's clock (local
/// modification time plus the calibrated offset); `remote_ms` the platform's `modifiedAt`.
///
/// The three sides are checksums: a node id or a platform time in their place does not compile.
///
/// ```compile_fail
/// use hyperclay::protocol::{Checksum, NodeId};
/// let sum = Checksum::new("b");
/// hyperclay::sync::decide(Some(&NodeId::new(1)), Some(&sum), Some(&sum), 0, 0);
/// ```
pub fn decide(
    base: Option<&Checksum>,
    local: Option<&Checksum>,
    remote: Option<&Checksum>,
    local_ms: i64,
    remote_ms: i64,
) -> Action {
    let local_changed = local != base;
    let remote_changed = remote != base;
    match (local_changed, remote_changed) {
        (false, false) => Action::Nothing,
        (true, false) => Action::Push,
        (false, true) => Action::Pull,
        (true, true) if local == remote => Action::RecordBase,
        // Ties go to the platform: its copy is the one others already see.
        (true, true) if local_ms > remote_ms => Action::LocalWins,
        (true, true) => Action::RemoteWins,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_of_architecture_md() {
        let (b, x, y) = (Checksum::new("b"), Checksum::new("x"), Checksum::new("y"));
        let (b, x, y) = (Some(&b), Some(&x), Some(&y));
        assert_eq!(decide(b, b, b, 0, 0), Action::Nothing);
        assert_eq!(decide(b, x, b, 0, 0), Action::Push);
        assert_eq!(decide(b, b, x, 0, 0), Action::Pull);
        assert_eq!(decide(b, x, x, 0, 0), Action::RecordBase);
        assert_eq!(decide(b, x, y, 20, 10), Action::LocalWins);
        assert_eq!(decide(b, x, y, 10, 20), Action::RemoteWins);
        assert_eq!(decide(b, x, y, 10, 10), Action::RemoteWins);
        // Never synced: a local file and a platform node with different content.
        assert_eq!(decide(None, x, y, 5, 1), Action::LocalWins);
    }
}
