//! Whether a write destroyed a page's data, as Hyperclay Local's guard judges it (local-host.md
//! §4), on the values the rules read: a meaningful value now empty or gone, list items removed,
//! values reset to a placeholder. Whether that fires depends on who wrote: a background save or
//! an outside write that destroyed anything fires; any write fires when it is a big clobber.

use serde_json::Value;

/// Who made the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provenance {
    /// A save with `Save-Trigger: user`.
    UiGestured,
    /// A save with `Save-Trigger: auto`.
    UiBackground,
    /// A save that said neither.
    UiUnknown,
    /// A write through the mount, or a platform change pulled down.
    External,
}

impl Provenance {
    pub fn of_trigger(trigger: Option<&str>) -> Provenance {
        match trigger {
            Some("user") => Provenance::UiGestured,
            Some("auto") => Provenance::UiBackground,
            _ => Provenance::UiUnknown,
        }
    }
}

/// What a write did to the data.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Loss {
    /// Values that were meaningful and are now empty or gone.
    pub destroyed_atoms: usize,
    /// List items gone (matched by `id`, `_id`, `key`, `uid`, `slug`, else by equal content).
    pub removed_items: usize,
    /// Values changed to another real value (edits).
    pub modified_atoms: usize,
    /// Values reset to a placeholder ("untitled", "todo", "lorem ipsum"...).
    pub placeholder_resets: usize,
    /// The meaningful values the baseline had.
    pub baseline_atoms: usize,
    /// Where the losses are (`todos.1.text`).
    pub paths: Vec<String>,
}

impl Loss {
    fn destroyed_anything(&self) -> bool {
        self.destroyed_atoms > 0 || self.removed_items > 0 || self.placeholder_resets > 0
    }

    /// A loss big enough to fire whoever made it.
    fn is_big_clobber(&self) -> bool {
        let share = |n: usize| self.baseline_atoms > 0 && n * 10 >= self.baseline_atoms * 3;
        self.removed_items >= 2
            || (self.destroyed_atoms >= 3 && share(self.destroyed_atoms))
            || (self.placeholder_resets >= 3 && share(self.placeholder_resets))
            || (self.baseline_atoms > 0
                && self.baseline_atoms <= 3
                && self.destroyed_atoms == self.baseline_atoms)
    }
}

/// Whether a write from `by` that turned `baseline` into `now` (None: the page lost its rules
/// tag) fires the guard, and what it destroyed.
pub fn judge(baseline: &Value, now: Option<&Value>, by: Provenance) -> Option<Loss> {
    let mut loss = Loss {
        baseline_atoms: atoms(baseline),
        ..Loss::default()
    };
    if loss.baseline_atoms == 0 {
        return None;
    }
    let Some(now) = now else {
        loss.destroyed_atoms = loss.baseline_atoms;
        loss.paths.push("(the data's rules tag is gone)".into());
        return Some(loss);
    };
    compare(baseline, now, "", &mut loss);
    let fires = match by {
        Provenance::UiBackground | Provenance::External => loss.destroyed_anything(),
        Provenance::UiGestured | Provenance::UiUnknown => loss.is_big_clobber(),
    };
    fires.then_some(loss)
}

/// Whether `now` holds every meaningful value of `pinned` (an incident undone by hand).
pub fn holds_all(pinned: &Value, now: &Value) -> bool {
    let mut loss = Loss::default();
    compare(pinned, now, "", &mut loss);
    !loss.destroyed_anything()
}

const PLACEHOLDERS: &[&str] = &[
    "untitled",
    "todo",
    "tbd",
    "placeholder",
    "new item",
    "lorem ipsum",
];

fn meaningful(s: &str) -> bool {
    !s.trim().is_empty()
}

fn is_placeholder(s: &str) -> bool {
    let s = s.trim().to_lowercase();
    PLACEHOLDERS
        .iter()
        .any(|p| s == *p || (p.len() > 5 && s.starts_with(p)))
}

/// The meaningful values under `v`.
pub fn atoms(v: &Value) -> usize {
    match v {
        Value::String(s) => usize::from(meaningful(s)),
        Value::Number(_) | Value::Bool(true) => 1,
        Value::Array(items) => items.iter().map(atoms).sum(),
        Value::Object(fields) => fields.values().map(atoms).sum(),
        _ => 0,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn compare(old: &Value, new: &Value, path: &str, loss: &mut Loss) {
    match (old, new) {
        (Value::Object(o), _) => {
            for (key, sub) in o {
                let next = new.get(key).unwrap_or(&Value::Null);
                compare(sub, next, &join(path, key), loss);
            }
        }
        (Value::Array(o), Value::Array(n)) => compare_lists(o, n, path, loss),
        (Value::Array(o), _) => {
            let gone = o.iter().filter(|i| atoms(i) > 0).count();
            loss.removed_items += gone;
            if gone > 0 {
                loss.paths.push(path.to_string());
            }
        }
        (Value::String(o), _) if !meaningful(o) => {}
        (Value::String(o), Value::String(n)) if meaningful(n) => {
            if o != n {
                if is_placeholder(n) && !is_placeholder(o) {
                    loss.placeholder_resets += 1;
                    loss.paths.push(path.to_string());
                } else {
                    loss.modified_atoms += 1;
                }
            }
        }
        (Value::Null | Value::Bool(false), _) => {}
        (o, n) if o == n => {}
        (_, Value::Null) | (_, Value::String(_)) => {
            loss.destroyed_atoms += 1;
            loss.paths.push(path.to_string());
        }
        _ => loss.modified_atoms += 1,
    }
}

/// The key a list item is known by, when it has one.
fn item_key(v: &Value) -> Option<String> {
    ["id", "_id", "key", "uid", "slug"]
        .iter()
        .find_map(|k| v.get(k).filter(|k| !k.is_null()).map(|k| k.to_string()))
}

fn compare_lists(old: &[Value], new: &[Value], path: &str, loss: &mut Loss) {
    let mut taken = vec![false; new.len()];
    for (i, item) in old.iter().enumerate() {
        if atoms(item) == 0 {
            continue;
        }
        // Matched by key, else by equal content, else by position.
        let matched = item_key(item)
            .and_then(|k| {
                new.iter()
                    .enumerate()
                    .position(|(j, n)| !taken[j] && item_key(n).as_deref() == Some(&k))
            })
            .or_else(|| (0..new.len()).find(|&j| !taken[j] && new[j] == *item))
            .or_else(|| (item_key(item).is_none() && i < new.len() && !taken[i]).then_some(i));
        match matched {
            Some(j) => {
                taken[j] = true;
                compare(item, &new[j], &join(path, &i.to_string()), loss);
            }
            None => {
                loss.removed_items += 1;
                loss.paths.push(join(path, &i.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_fires_depends_on_the_loss_and_who_made_it() {
        let base = json!({"title": "Groceries", "todos": [{"id": "1", "t": "milk"}, {"id": "2", "t": "eggs"}, {"id": "3", "t": "jam"}]});
        let wiped = json!({"title": "Groceries", "todos": []});
        let one_less = json!({"title": "Groceries", "todos": [{"id": "1", "t": "milk"}, {"id": "3", "t": "jam"}]});
        let edited = json!({"title": "Shopping", "todos": [{"id": "1", "t": "oat milk"}, {"id": "2", "t": "eggs"}, {"id": "3", "t": "jam"}]});
        let big = judge(&base, Some(&wiped), Provenance::UiGestured).expect("3 items gone fires");
        assert_eq!(big.removed_items, 3);
        assert!(
            judge(&base, Some(&one_less), Provenance::UiGestured).is_none(),
            "a deliberate delete"
        );
        assert!(
            judge(&base, Some(&one_less), Provenance::UiBackground).is_some(),
            "a background save may not delete"
        );
        assert!(judge(&base, Some(&one_less), Provenance::External).is_some());
        assert!(
            judge(&base, Some(&edited), Provenance::UiBackground).is_none(),
            "edits are not loss"
        );
        assert!(
            judge(&base, None, Provenance::UiGestured).is_some(),
            "the rules tag went"
        );
        assert!(
            judge(&json!({}), Some(&wiped), Provenance::External).is_none(),
            "no data, nothing to lose"
        );
        let reset = json!({"title": "Untitled", "todos": base["todos"].clone()});
        assert_eq!(
            judge(&base, Some(&reset), Provenance::UiBackground)
                .unwrap()
                .placeholder_resets,
            1
        );
        assert!(holds_all(&base, &edited) && !holds_all(&base, &one_less));
    }
}
