//! What the kernel holds of each inode, kept in the inode's cell (`sync::cell::KernelView`) for
//! as long as the kernel holds it: the lookups it was given, the content it last opened (for
//! close-to-open caching) and the times a local disk keeps that the index does not (a folder's
//! modification time moves when a name is made, removed or renamed in it; any inode's
//! status-change time moves on chmod, utimens, truncate and those folder changes).
//!
//! Counted as libfuse's passthrough_ll and fuser's examples count: every entry reply (lookup,
//! create, mkdir, mknod, symlink, and each readdirplus entry but `.` and `..`) adds one before
//! the reply goes out, so a `forget` can never arrive for a lookup not yet counted; `forget`
//! takes back what the kernel names. At zero the view goes, and with it the cell if nothing
//! else keeps it: before, these two records were maps of their own that grew with every inode
//! the mount ever showed. A miscount costs only a cached page dropped or a time shown older,
//! never content.

use std::time::SystemTime;

use super::ops::MountFs;
use crate::protocol::Checksum;
use crate::sync::cell::KernelView;

impl MountFs {
    /// The kernel was given an entry for `ino` (call before the reply goes out).
    pub(super) fn kernel_took(&self, ino: u64) {
        let cell = self.engine.cells.get(ino);
        cell.state()
            .kernel
            .get_or_insert_with(KernelView::default)
            .lookups += 1;
    }

    /// The kernel dropped `lookups` of its entries for `ino` (`forget`).
    pub fn kernel_forgot(&self, ino: u64, lookups: u64) {
        let Some(cell) = self.engine.cells.existing(ino) else {
            return;
        };
        let mut state = cell.state();
        if let Some(view) = &mut state.kernel {
            view.lookups = view.lookups.saturating_sub(lookups);
            if view.lookups == 0 {
                state.kernel = None;
            }
        }
    }

    /// `ino` changed now (its status, or a folder's names).
    pub(super) fn touch(&self, ino: u64) {
        if let Some(cell) = self.engine.cells.existing(ino) {
            if let Some(view) = &mut cell.state().kernel {
                view.changed = Some(SystemTime::now());
            }
        }
    }

    /// When `ino` last changed through the mount, while the kernel holds it.
    pub(super) fn changed_at(&self, ino: u64) -> Option<SystemTime> {
        self.engine
            .cells
            .peek(ino, |s| s.kernel.as_ref().and_then(|v| v.changed))
            .flatten()
    }

    /// Records that the kernel opens `ino` with content `sum`; true when that is what it was
    /// shown last (its cached pages are still right).
    pub(super) fn kernel_opens(&self, ino: u64, sum: &Checksum) -> bool {
        let Some(cell) = self.engine.cells.existing(ino) else {
            return false;
        };
        let mut state = cell.state();
        let Some(view) = &mut state.kernel else {
            return false;
        };
        view.shown.replace(sum.clone()).as_ref() == Some(sum)
    }

    /// Inodes whose kernel view is kept now (for tests and the bound on memory).
    pub fn kernel_held(&self) -> usize {
        self.engine.cells.count(|s| s.kernel.is_some())
    }
}
