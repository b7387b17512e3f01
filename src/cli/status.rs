//! `hyperclay status` and `hyperclay sync on|off`: ask the running mounts over their control
//! sockets and print one plain answer (or JSON for scripts).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use hyperclay::control::{self, Request, StatusReport};
use hyperclay::sync::status::ProblemKind;

fn sockets(mountpoint: Option<&Path>) -> Vec<PathBuf> {
    match mountpoint {
        Some(m) => vec![control::socket_for(&super::mount_path(m))],
        None => control::all_sockets(),
    }
}

/// No mount answers at `mountpoint`: says so, naming the mounts that do run.
async fn none_at(mountpoint: &Path, doing: &str) -> anyhow::Error {
    let running: Vec<String> = ask_all(None, Request::Status)
        .await
        .into_iter()
        .map(|r| r.mountpoint)
        .collect();
    let others = match running.as_slice() {
        [] => String::new(),
        [one] => format!(" (the one running is at {one})"),
        many => format!(" (running: {})", many.join(", ")),
    };
    anyhow::anyhow!(
        "no mount is running at {}{others}{doing}",
        super::mount_path(mountpoint).display()
    )
}

async fn ask_all(mountpoint: Option<&Path>, request: Request) -> Vec<StatusReport> {
    let mut reports = Vec::new();
    for socket in sockets(mountpoint) {
        match control::ask(&socket, &request).await {
            Ok(r) => reports.push(r),
            // A socket left by a killed mount: nobody answers; forget it.
            Err(_) if mountpoint.is_none() => {
                let _ = std::fs::remove_file(&socket);
            }
            Err(_) => {}
        }
    }
    reports
}

pub fn render(r: &StatusReport) -> String {
    use hyperclay::protocol::printable;
    // The account's name and the problem's text may come from the platform: no terminal escapes.
    let account = r
        .account
        .as_deref()
        .map(|a| printable(a, 100))
        .unwrap_or_else(|| "(account not known yet)".into());
    let platform = match r.platform_source.is_empty() {
        true => r.platform.clone(),
        false => format!("{} ({})", r.platform, r.platform_source),
    };
    // Refused by the platform (the sign-in, the plan): nothing is being listed, whatever else.
    let refused = r.problem.as_ref().is_some_and(|p| {
        matches!(
            p.kind,
            ProblemKind::SignedOut | ProblemKind::PaymentRequired
        )
    });
    let state = match (r.sync_on, r.online, r.syncing) {
        (true, _, _) if refused => "on, but the platform refuses it (see the problem)".to_string(),
        (true, true, _) if r.not_listed.is_some() => "on, listing the account".to_string(),
        (false, _, _) => {
            "off (the mount works on the mirror; `hyperclay sync on` resumes)".to_string()
        }
        (true, false, _) => {
            "on, offline (changes are kept and go up when the platform is back)".to_string()
        }
        (true, true, true) => "on, syncing".to_string(),
        (true, true, false) if r.waiting > 0 => "on, files wait to go up".to_string(),
        (true, true, false) => "on, up to date".to_string(),
    };
    let place = match &r.mode {
        Some(mode) => format!("  folder:   {} ({})", r.mountpoint, printable(mode, 200)),
        None => format!("  mount:    {} (mirror {})", r.mountpoint, r.mirror),
    };
    let mut out = format!(
        "hyperclay: {account} at {}\n{place}\n  sync:     {state}\n  last sync: {}\n  waiting to go up: {} file{}\n",
        platform,
        r.last_sync.as_deref().unwrap_or("not yet"),
        r.waiting,
        if r.waiting == 1 { "" } else { "s" }
    );
    if let Some(why) = &r.not_listed {
        // The problem below says it already, with what to do.
        let why = match &r.problem {
            Some(p) if p.message == *why => "see the problem below".to_string(),
            _ => printable(why.trim_end_matches('.'), 400),
        };
        out.push_str(&format!(
            "  not listed yet: {why}; the mount shows what the mirror holds\n"
        ));
    }
    if !r.stays_local.is_empty() {
        let total: usize = r.stays_local.values().sum();
        let reasons: Vec<String> = r
            .stays_local
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        out.push_str(&format!(
            "  stays local: {total} file{} ({}; see the log)\n",
            if total == 1 { "" } else { "s" },
            reasons.join(", ")
        ));
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    if !r.removed_here.is_empty() {
        let n = r.removed_here.len();
        out.push_str(&format!(
            "  removed here, still on the platform: {n} (never deleted across; `hyperclay status --json` lists them)\n"
        ));
    }
    if !r.deleted_there.is_empty() {
        let n = r.deleted_there.len();
        let first = printable(&r.deleted_there[0], 200);
        let more = match n {
            1 => String::new(),
            _ => format!(" and {} more", n - 1),
        };
        out.push_str(&format!(
            "  deleted on the platform, kept here: {n} file{} ({first}{more}; it goes up again only if you edit it)\n",
            plural(n)
        ));
    }
    match &r.problem {
        // The conflicts have their own lines below.
        Some(p) if p.kind != ProblemKind::Conflict => {
            out.push_str(&format!("  problem:  {}\n", printable(&p.message, 400)))
        }
        Some(_) => {}
        None => out.push_str("  problem:  none\n"),
    }
    const SHOWN: usize = 10;
    for c in r.conflicts.iter().take(SHOWN) {
        out.push_str(&format!("  conflict: {}\n", printable(&c.message, 400)));
    }
    if r.conflicts.len() > SHOWN {
        out.push_str(&format!(
            "  conflict: and {} more (`hyperclay status --json` lists them)\n",
            r.conflicts.len() - SHOWN
        ));
    }
    out.push_str(&format!("  log:      {}\n", r.log));
    out
}

pub async fn status(mountpoint: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let reports = ask_all(mountpoint.as_deref(), Request::Status).await;
    if let (Some(m), true, false) = (&mountpoint, reports.is_empty(), json) {
        return Err(none_at(m, "").await);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "mounts": reports }))?
        );
        return Ok(());
    }
    if reports.is_empty() {
        println!("hyperclay: no mount is running (start one with `hyperclay mount ~/Hyperclay`)");
        println!("  log: {}", hyperclay::config::log_path().display());
        return Ok(());
    }
    for r in &reports {
        print!("{}", render(r));
    }
    Ok(())
}

pub async fn sync(on: bool, mountpoint: Option<PathBuf>) -> anyhow::Result<()> {
    let reports = ask_all(mountpoint.as_deref(), Request::Sync { on }).await;
    let doing = if on {
        ": nothing to turn on"
    } else {
        ": nothing to turn off"
    };
    if let (Some(m), true) = (&mountpoint, reports.is_empty()) {
        return Err(none_at(m, doing).await);
    }
    if reports.is_empty() {
        bail!(
            "no mount is running: nothing to turn {}",
            if on { "on" } else { "off" }
        );
    }
    for r in &reports {
        println!(
            "hyperclay: sync is {} for {}",
            if r.sync_on { "on" } else { "off" },
            r.mountpoint
        );
    }
    Ok(())
}

pub fn parse_switch(word: &str) -> anyhow::Result<bool> {
    match word {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(anyhow::anyhow!("`hyperclay sync {other}`: say on or off"))
            .context("hyperclay sync on|off"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperclay::sync::status::Problem;

    fn report() -> StatusReport {
        StatusReport {
            account: Some("dev".into()),
            platform: "http://127.0.0.1:1".into(),
            platform_source: String::new(),
            mountpoint: "/mnt".into(),
            mirror: "/mirror".into(),
            mode: None,
            sync_on: true,
            online: true,
            syncing: false,
            last_sync: None,
            waiting: 0,
            stays_local: Default::default(),
            not_listed: None,
            problem: None,
            conflicts: Vec::new(),
            removed_here: Vec::new(),
            deleted_there: Vec::new(),
            log: "/log".into(),
        }
    }

    #[test]
    fn conflicts_and_what_each_side_keeps_have_their_lines() {
        let conflict = |path: &str| {
            Problem {
            kind: ProblemKind::Conflict,
            path: Some(path.into()),
            message: format!("{path}: changed here and on the platform; the platform's later change won, your copy is kept in sites-versions/x"),
        }
        };
        let mut r = report();
        assert!(render(&r).contains("  problem:  none\n"));
        r.conflicts = vec![conflict("a.html"), conflict("b.html")];
        r.problem = Some(conflict("a.html"));
        r.removed_here = vec!["old.html".into(), "gone.txt".into()];
        r.deleted_there = vec!["kept.html".into()];
        let text = render(&r);
        assert!(
            !text.contains("problem:"),
            "the conflicts are the lines: {text}"
        );
        for line in [
            "  conflict: a.html: changed here and on the platform; the platform's later change won, your copy is kept in sites-versions/x\n",
            "  conflict: b.html: changed here",
            "  removed here, still on the platform: 2 (never deleted across; `hyperclay status --json` lists them)\n",
            "  deleted on the platform, kept here: 1 file (kept.html; it goes up again only if you edit it)\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
        // Another problem still comes first, the conflicts after it.
        r.problem = Some(Problem {
            kind: ProblemKind::Unreachable,
            path: None,
            message: "down".into(),
        });
        let text = render(&r);
        assert!(text.find("problem:  down").unwrap() < text.find("conflict: a.html").unwrap());
    }
}
