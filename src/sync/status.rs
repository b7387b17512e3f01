//! What `hyperclay status` shows: whether sync is on, whether transfers run, and the one most
//! important problem, chosen by priority. Problems are recorded per file (or for the account)
//! and cleared when the file goes up, is renamed or deleted, or the condition ends.
//!
//! A conflict (both sides changed a file, last write wins, the loser kept) is a problem of its
//! own, one line per file: it is not cleared by the push that settles it, only when the user
//! saves the file again (they have seen it), renames or deletes it, or after
//! [`CONFLICT_SHOWN`] (docs/semantics.md, "Conflicts").

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How long a conflict stays in status when nothing else clears it.
pub const CONFLICT_SHOWN: Duration = Duration::from_secs(24 * 60 * 60);

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
    /// Both sides changed the file; the later change won and the loser is kept (the message says
    /// which side lost and where its copy is).
    Conflict,
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
    /// When each file's conflict was reported, for [`CONFLICT_SHOWN`].
    conflicts_at: Mutex<BTreeMap<String, SystemTime>>,
    /// How the account is kept here, when it is not the FUSE mount (the plain folder, and why).
    mode: Mutex<Option<String>>,
}

impl Status {
    /// Says how the account is kept here (status shows it).
    pub fn set_mode(&self, mode: String) {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner()) = Some(mode);
    }

    /// How the account is kept here; `None`: the FUSE mount.
    pub fn mode(&self) -> Option<String> {
        self.mode.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

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
    pub fn refuse_platform_node(
        &self,
        node_id: crate::protocol::NodeId,
        name: &str,
        reason: &str,
    ) -> bool {
        let key = (
            ProblemKind::PlatformName,
            format!("platform node {node_id}"),
        );
        let message = format!(
            "the platform sent a name that can't be a file here: {name:?} ({reason}); it is skipped, everything else syncs"
        );
        self.platform_problem_once(key, message)
    }

    /// Records a problem with what the platform sent (no path of its own) under `key`; false
    /// when the same words are there already (the caller logs only news).
    fn platform_problem_once(&self, key: (ProblemKind, String), message: String) -> bool {
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
        let message = format!(
            "{path} is a symlink in the mirror: the platform's folder {path} is not synced here (a symlink is never followed); everything else syncs. Move the link away to sync it."
        );
        self.platform_problem_once(key, message)
    }

    /// A listing held more nodes than one account may bring (`vet::MAX_LISTING_NODES`):
    /// `left_out` of them are not synced, in one line (none: the line goes). Answers whether
    /// this is news, for a log line once.
    pub fn listing_over_limit(&self, left_out: usize, kept: usize) -> bool {
        let key = (
            ProblemKind::PlatformName,
            "listing over the limit".to_string(),
        );
        if left_out == 0 {
            self.lock().remove(&key);
            return false;
        }
        let message = format!(
            "the platform listed {} nodes, more than one account may bring here: the first {kept} (the shallowest) sync, the other {left_out} are not synced",
            kept + left_out
        );
        self.platform_problem_once(key, message)
    }

    /// The folder's place is no longer a symlink.
    pub fn clear_symlinked_folder(&self, path: &str) {
        self.lock()
            .remove(&(ProblemKind::PlatformName, format!("symlink {path}")));
    }

    fn conflict_times(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SystemTime>> {
        self.conflicts_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Both sides changed `path` and one lost: one line for it, until the user saves it again,
    /// renames or deletes it, or [`CONFLICT_SHOWN`] passes.
    pub fn conflict(&self, path: &str, message: String) {
        self.conflict_at(path, message, SystemTime::now());
    }

    /// [`Status::conflict`] with the clock given (tests move it).
    pub fn conflict_at(&self, path: &str, message: String, at: SystemTime) {
        self.conflict_times().insert(path.to_string(), at);
        self.report(ProblemKind::Conflict, Some(path), message);
    }

    /// The user saved `path` again: they have seen its conflict.
    pub fn clear_conflict(&self, path: &str) {
        self.conflict_times().remove(path);
        self.lock()
            .remove(&(ProblemKind::Conflict, path.to_string()));
    }

    /// The file went up: its problems are over, but a conflict (the push may be what settled it;
    /// the user has still to see it).
    pub fn clear_path(&self, path: &str) {
        self.lock()
            .retain(|(k, p), _| p != path || *k == ProblemKind::Conflict);
    }

    /// `path` was renamed or deleted here: every problem of it, and of anything under it (a
    /// folder), is over; its new name reports its own.
    pub fn forget_path(&self, path: &str) {
        let under = format!("{path}/");
        let gone = |p: &str| p == path || p.starts_with(&under);
        self.lock().retain(|(_, p), _| !gone(p));
        self.conflict_times().retain(|p, _| !gone(p));
    }

    pub fn clear_kind(&self, kind: ProblemKind) {
        self.lock().retain(|(k, _), _| *k != kind);
    }

    /// Drops the conflicts reported longer than [`CONFLICT_SHOWN`] before `now`.
    fn expire(&self, now: SystemTime) {
        let mut times = self.conflict_times();
        let old: Vec<String> = times
            .iter()
            .filter(|(_, at)| now.duration_since(**at).unwrap_or_default() >= CONFLICT_SHOWN)
            .map(|(p, _)| p.clone())
            .collect();
        if old.is_empty() {
            return;
        }
        let mut problems = self.lock();
        for path in old {
            times.remove(&path);
            problems.remove(&(ProblemKind::Conflict, path));
        }
    }

    /// The most important problem.
    pub fn top(&self) -> Option<Problem> {
        self.top_at(SystemTime::now())
    }

    /// [`Status::top`] with the clock given.
    pub fn top_at(&self, now: SystemTime) -> Option<Problem> {
        self.expire(now);
        self.lock().values().next().cloned()
    }

    pub fn all(&self) -> Vec<Problem> {
        self.expire(SystemTime::now());
        self.lock().values().cloned().collect()
    }

    /// Every file's conflict still shown, by path.
    pub fn conflicts(&self) -> Vec<Problem> {
        self.expire(SystemTime::now());
        self.lock()
            .iter()
            .filter(|((k, _), _)| *k == ProblemKind::Conflict)
            .map(|(_, p)| p.clone())
            .collect()
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

    #[test]
    fn a_conflict_outlives_the_push_and_clears_on_a_save_a_rename_or_after_a_day() {
        let s = Status::default();
        let t0 = SystemTime::now();
        s.conflict_at("a.html", "a.html: lost here".into(), t0);
        s.report(ProblemKind::Unreachable, None, "down".into());
        assert_eq!(s.top_at(t0).unwrap().kind, ProblemKind::Conflict);
        // The push that settled it clears the file's other problems, not the conflict.
        s.report(ProblemKind::TooLarge, Some("a.html"), "big".into());
        s.clear_path("a.html");
        assert_eq!(s.conflicts().len(), 1);
        assert_eq!(s.top_at(t0).unwrap().kind, ProblemKind::Conflict);
        // A day later it is gone by itself.
        assert_eq!(
            s.top_at(t0 + CONFLICT_SHOWN).unwrap().kind,
            ProblemKind::Unreachable
        );
        assert!(s.conflicts().is_empty());
        // Saved again: gone.
        s.conflict_at("b.html", "b.html: lost here".into(), t0);
        s.clear_conflict("b.html");
        assert!(s.conflicts().is_empty());
        // A folder renamed: its files' problems go with its old name.
        s.conflict_at("dir/c.html", "c".into(), t0);
        s.report(
            ProblemKind::RefusedName,
            Some("dir/My Page.html"),
            "refused".into(),
        );
        s.report(ProblemKind::RefusedName, Some("dir2/x.html"), "kept".into());
        s.forget_path("dir");
        let left: Vec<Option<String>> = s.all().into_iter().map(|p| p.path).collect();
        assert_eq!(left, vec![Some("dir2/x.html".to_string()), None]);
    }
}
