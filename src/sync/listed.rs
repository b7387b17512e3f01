//! Whether the account has been listed into the index at least once. A first mount over an
//! empty index must not present an empty folder as the account: until the first listing is in
//! (or it is known that it can't come now), the mount's lookups and listings wait, and the
//! mount command waits before it says "mounted". An index that has seen a listing is trusted at
//! once, as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// How long a first mount waits for the account's listing before it comes up on what the mirror
/// holds: long enough for a large account on a slow link, short enough that a boot or a script
/// is not held up by a platform that accepts connections and never answers.
pub const FIRST_LISTING_LIMIT: Duration = Duration::from_secs(30);

/// The index's note that a listing was taken in once (kept across restarts).
const LISTED_KEY: &str = "listed";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// Never listed, and still trying.
    Waiting,
    /// The index holds the account.
    Listed,
    /// Not listed yet, and not now: the reason, as a line ("the platform can't be reached").
    NotListed(String),
}

pub struct FirstListing {
    state: watch::Sender<Listing>,
    /// `state` is not `Waiting`: read on every lookup and listing, so an atomic, not the lock.
    settled: AtomicBool,
}

impl FirstListing {
    /// Starts listed when the index says it was, or holds platform nodes (an index from before
    /// the note existed).
    pub fn new(index: &crate::cache::Index) -> FirstListing {
        let listed = index.meta(LISTED_KEY).ok().flatten().is_some()
            || index.cursor().is_some()
            || index.has_platform_nodes();
        let state = if listed {
            Listing::Listed
        } else {
            Listing::Waiting
        };
        FirstListing {
            settled: AtomicBool::new(state != Listing::Waiting),
            state: watch::channel(state).0,
        }
    }

    pub fn now(&self) -> Listing {
        self.state.borrow().clone()
    }

    /// Lookups and listings may answer (listed, or known not to be listed for now).
    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    pub fn is_listed(&self) -> bool {
        *self.state.borrow() == Listing::Listed
    }

    /// The listing is in the index: noted there, so a remount is ready at once.
    pub fn listed(&self, index: &crate::cache::Index) {
        if self.is_listed() {
            return;
        }
        if let Err(e) = index.set_meta(LISTED_KEY, "yes") {
            tracing::warn!(error = %e, "could not note the first listing in the index");
        }
        self.state.send_replace(Listing::Listed);
        self.settled.store(true, Ordering::Release);
    }

    /// The listing can't come now (offline, signed out, sync off, too slow): waiters go on with
    /// what the mirror holds. Later news (a listing) still comes in.
    pub fn not_listed(&self, reason: &str) {
        self.state.send_if_modified(|s| match s {
            Listing::Listed => false,
            Listing::NotListed(r) if r == reason => false,
            _ => {
                *s = Listing::NotListed(reason.to_string());
                true
            }
        });
        self.settled.store(true, Ordering::Release);
    }

    /// Waits until settled.
    pub async fn settled(&self) -> Listing {
        let mut rx = self.state.subscribe();
        let state = rx.wait_for(|s| *s != Listing::Waiting).await;
        state.map(|s| s.clone()).unwrap_or(Listing::Listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> (tempfile::TempDir, crate::cache::Index) {
        let dir = tempfile::tempdir().unwrap();
        let index = crate::cache::Index::open(&dir.path().join("index.db")).unwrap();
        (dir, index)
    }

    #[tokio::test]
    async fn a_new_index_waits_until_listed_and_a_remount_does_not() {
        let (_dir, index) = index();
        let first = FirstListing::new(&index);
        assert_eq!(first.now(), Listing::Waiting);
        assert!(!first.is_settled());
        first.listed(&index);
        assert_eq!(first.settled().await, Listing::Listed);
        // The next mount over the same (still empty: an empty account) index is ready at once.
        assert!(FirstListing::new(&index).is_listed());
    }

    #[tokio::test]
    async fn not_listed_settles_and_a_later_listing_still_counts() {
        let (_dir, index) = index();
        let first = FirstListing::new(&index);
        first.not_listed("the platform can't be reached");
        assert_eq!(
            first.settled().await,
            Listing::NotListed("the platform can't be reached".into())
        );
        assert!(!FirstListing::new(&index).is_listed());
        first.listed(&index);
        first.not_listed("the platform can't be reached");
        assert!(
            first.is_listed(),
            "a listing is not undone by a later failure"
        );
    }
}
