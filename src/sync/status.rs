//! What `hyperclay status` shows: whether sync is on, whether transfers run, and the one most
//! important problem, chosen by priority. Problems are recorded per file (or for the account)
//! and cleared when the file goes up or the condition ends.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Kinds of problem, most important first (the order decides which one status shows).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    SignedOut,
    PaymentRequired,
    OutOfSites,
    RefusedName,
    /// The platform sent a node whose name or place can't be a file here.
    PlatformName,
    /// The platform sent an answer over its limit (or otherwise refused): dropped.
    BadAnswer,
    TooLarge,
    Unreachable,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The file it concerns, if any.
    pub path: Option<String>,
    /// One line: what happened and what to do.
    pub message: String,
}

/// What status says when the platform refuses the credentials, unless the mount knows better.
pub const CREDENTIALS_REFUSED: &str =
    "The platform refused the credentials: sign in again with `hyperclay login`.";

#[derive(Default)]
pub struct Status {
    problems: Mutex<BTreeMap<(ProblemKind, String), Problem>>,
    /// Replaces [`CREDENTIALS_REFUSED`]: set by the mount, which knows where the credentials
    /// came from (a key in `HYPERCLAY_API_KEY` is fixed there, not by `hyperclay login`).
    refused_advice: Mutex<Option<String>>,
}

impl Status {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(ProblemKind, String), Problem>> {
        self.problems.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn report(&self, kind: ProblemKind, path: Option<&str>, message: String) {
        let key = (kind, path.unwrap_or_default().to_string());
        self.lock().insert(
            key,
            Problem {
                kind,
                path: path.map(str::to_string),
                message,
            },
        );
    }

    /// What to say when the platform refuses the credentials.
    pub fn credentials_refused(&self) -> String {
        let advice = self
            .refused_advice
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        advice
            .clone()
            .unwrap_or_else(|| CREDENTIALS_REFUSED.to_string())
    }

    pub fn set_credentials_refused(&self, message: String) {
        *self
            .refused_advice
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(message);
    }

    /// Records a node the platform sent that is skipped; answers whether this is news (so the
    /// log gets one line per refusal, not one per listing).
    pub fn refuse_platform_node(&self, node_id: u64, name: &str, reason: &str) -> bool {
        let key = (
            ProblemKind::PlatformName,
            format!("platform node {node_id}"),
        );
        let message = format!(
            "the platform sent a name that can't be a file here: {name:?} ({reason}); it is skipped, everything else syncs"
        );
        let mut problems = self.lock();
        if problems.get(&key).is_some_and(|p| p.message == message) {
            return false;
        }
        problems.insert(
            key,
            Problem {
                kind: ProblemKind::PlatformName,
                path: None,
                message,
            },
        );
        true
    }

    /// A platform folder whose place in the mirror is a symlink: not synced (one line per
    /// folder); answers whether this is news, for a log line once.
    pub fn refuse_symlinked_folder(&self, path: &str) -> bool {
        let key = (ProblemKind::PlatformName, format!("symlink {path}"));
        let mut problems = self.lock();
        if problems.contains_key(&key) {
            return false;
        }
        let message = format!(
            "{path} is a symlink in the mirror: the platform's folder {path} is not synced here (a symlink is never followed); everything else syncs. Move the link away to sync it."
        );
        problems.insert(
            key,
            Problem {
                kind: ProblemKind::PlatformName,
                path: None,
                message,
            },
        );
        true
    }

    /// A listing held more nodes than one account may bring (`vet::MAX_LISTING_NODES`):
    /// `left_out` of them are not synced, in one line (none: the line goes). Answers whether
    /// this is news, for a log line once.
    pub fn listing_over_limit(&self, left_out: usize, kept: usize) -> bool {
        let key = (
            ProblemKind::PlatformName,
            "listing over the limit".to_string(),
        );
        let mut problems = self.lock();
        if left_out == 0 {
            problems.remove(&key);
            return false;
        }
        let message = format!(
            "the platform listed {} nodes, more than one account may bring here: the first {kept} (the shallowest) sync, the other {left_out} are not synced",
            kept + left_out
        );
        if problems.get(&key).is_some_and(|p| p.message == message) {
            return false;
        }
        problems.insert(
            key,
            Problem {
                kind: ProblemKind::PlatformName,
                path: None,
                message,
            },
        );
        true
    }

    /// The folder's place is no longer a symlink.
    pub fn clear_symlinked_folder(&self, path: &str) {
        self.lock()
            .remove(&(ProblemKind::PlatformName, format!("symlink {path}")));
    }

    /// The file went up (or was removed): its problems are over.
    pub fn clear_path(&self, path: &str) {
        self.lock().retain(|(_, p), _| p != path);
    }

    pub fn clear_kind(&self, kind: ProblemKind) {
        self.lock().retain(|(k, _), _| *k != kind);
    }

    /// The most important problem.
    pub fn top(&self) -> Option<Problem> {
        self.lock().values().next().cloned()
    }

    pub fn all(&self) -> Vec<Problem> {
        self.lock().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_important_problem_comes_first_and_clears() {
        let s = Status::default();
        s.report(ProblemKind::Unreachable, None, "down".into());
        s.report(ProblemKind::TooLarge, Some("big.bin"), "too large".into());
        s.report(ProblemKind::RefusedName, Some("Bad.html"), "refused".into());
        assert_eq!(s.top().unwrap().kind, ProblemKind::RefusedName);
        s.report(
            ProblemKind::OutOfSites,
            Some("new.html"),
            "out of sites".into(),
        );
        s.report(ProblemKind::PaymentRequired, None, "pay".into());
        assert_eq!(s.top().unwrap().kind, ProblemKind::PaymentRequired);
        s.report(ProblemKind::SignedOut, None, "sign in".into());
        assert_eq!(s.top().unwrap().message, "sign in");
        s.clear_kind(ProblemKind::SignedOut);
        s.clear_kind(ProblemKind::PaymentRequired);
        s.clear_path("new.html");
        s.clear_path("Bad.html");
        assert_eq!(s.top().unwrap().kind, ProblemKind::TooLarge);
        assert_eq!(s.all().len(), 2);
    }
}
