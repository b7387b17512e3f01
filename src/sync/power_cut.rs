//! The power-cut rule (docs/semantics.md, "Crash safety"). A close saves as a local disk keeps a
//! closed file, without an fsync of its own, so a power cut can take the last saves off the disk
//! while the index (or the platform) recorded them. A power cut is an unclean stop in an earlier
//! boot: in the same boot (`kill -9`, a crash of the program) the kernel's cache kept every save,
//! and whatever differs was changed since. At the first comparison after one, a mirror copy whose content differs from the index's record and that last changed no
//! later than that record was made is the older copy a lost write left behind: it never goes
//! up. The platform's copy (which holds the save: it went up within milliseconds) comes back
//! down, and the odd copy is kept in `sites-versions/`. A copy changed after the record is an
//! edit made while nothing ran, and goes up as before. Used by both front doors' start-up
//! comparisons (the mount's `reconcile.rs`, the folder's `observe.rs`); never by a live look,
//! where a changed file is always a save.

use super::{Engine, Result};
use crate::cache::{Entry, Index, RelPath, Stat};
use crate::protocol::Checksum;

/// Whether the run before this one may have ended in a power cut: it did not reach its clean end
/// (`clean`: it did) and it started in another boot than this one. Where the system has no boot
/// id (macOS, Windows), every unclean stop counts. Records this run's boot for the next start.
pub(super) fn after_power_cut(index: &Index, clean: bool) -> bool {
    let previous = index.meta("boot").ok().flatten();
    match super::clock::boot_id() {
        Some(now) => {
            let _ = index.set_meta("boot", &now);
            !clean && previous.as_deref() != Some(now.as_str())
        }
        None => !clean,
    }
}

impl Engine {
    /// Whether the previous run ended in what may have been a power cut (`after_power_cut`):
    /// the start-up comparison applies the rule.
    pub fn after_power_cut(&self) -> bool {
        self.after_power_cut
    }

    /// When the index's record of `e`'s mirror copy was made, on this machine's wall clock: the
    /// save's (or the fetch's) time kept with it on the platform's clock, brought back by the
    /// offset; an index from before that time was kept has the copy's modification time.
    fn recorded_at_ms(&self, e: &Entry) -> i64 {
        match e.edited_ms {
            Some(edited) => edited - self.clock_offset_ms(),
            None => e.mtime_ms,
        }
    }

    /// Whether a disk copy of `e` whose content differs from the record is older than the
    /// record: the write that made the recorded content was lost (the rule above).
    pub(super) fn is_lost_write(&self, e: &Entry, stat: &Stat) -> bool {
        stat.changed_ms <= self.recorded_at_ms(e)
    }

    /// Settles a lost write found on `rel` (the disk holds `sum`, `size`): the odd copy is kept in
    /// `sites-versions/`, then recorded as if both sides had held it, so the platform's copy,
    /// when it differs, comes down as a platform change (`fetch.rs`) and nothing goes up. A file
    /// the platform never had (new here, never pushed) keeps what the disk holds and goes up as
    /// new: there is nothing newer to protect. A copy that can't be kept is left as it is and
    /// not recorded (it is neither sent nor replaced by this rule).
    pub(super) fn settle_lost_write(
        &self,
        e: &Entry,
        rel: &RelPath,
        sum: Checksum,
        size: u64,
        stat: &Stat,
    ) -> Result<()> {
        let on_platform = e.node_id.is_some() || e.base.is_some();
        if on_platform {
            if let Some(bytes) = self.mirror.read(rel) {
                if let Err(err) = crate::cache::save::back_up(&self.mirror, rel, e.kind, &bytes) {
                    tracing::error!(path = %rel, error = %err, "a copy older than its last save (lost in a power cut?) could not be kept in sites-versions: left as it is, not sent");
                    return Ok(());
                }
            }
        }
        match on_platform {
            true => {
                tracing::warn!(path = %rel, "the mirror copy is older than its last recorded save (lost in a power cut): not sent; the platform's copy comes back, the odd copy is kept in sites-versions")
            }
            false => {
                tracing::warn!(path = %rel, "the mirror copy is older than its last recorded save (lost in a power cut); the platform never had the file: what the disk holds goes up")
            }
        }
        self.index.modify(e.ino, |e| {
            e.local = Some(sum.clone());
            if on_platform {
                e.base = Some(sum.clone());
            }
            e.size = size;
            e.mtime_ms = stat.mtime_ms;
        })?;
        Ok(())
    }
}
