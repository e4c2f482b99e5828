//! `gitops status`: what is applied, how the last pass ended, what is pending.

use std::fmt::Write as _;

use anyhow::Result;
use time::OffsetDateTime;

use crate::exit::Exit;
use crate::pass::state::{self, Layout, State};

/// Print the status and return the exit code: 0 when the last pass succeeded, 1 otherwise, so
/// the command serves as a health check.
pub fn run(state_dir: &std::path::Path, json: bool, now: OffsetDateTime) -> Result<Exit> {
    // A health check reads exit 1 as "not healthy"; an unreadable state is not healthy either.
    let recorded = state::read(&Layout::new(state_dir))
        .map_err(|e| crate::exit::fail(Exit::ApplyFailed, crate::pass::one_line(&e)))?;
    let healthy = recorded
        .as_ref()
        .and_then(|s| s.last_pass.as_ref())
        .is_some_and(|p| p.outcome.is_success());
    let state = recorded.unwrap_or_default();
    if json {
        out!("{}", serde_json::to_string_pretty(&state)?);
    } else {
        out!("{}", render(&state, now).trim_end());
    }
    Ok(if healthy { Exit::Ok } else { Exit::ApplyFailed })
}

/// The human summary.
pub fn render(state: &State, now: OffsetDateTime) -> String {
    let mut out = String::new();
    let Some(pass) = &state.last_pass else {
        out.push_str(
            "no pass has run yet: gitops sync has not recorded anything in this state directory\n",
        );
        return out;
    };
    let _ = writeln!(
        out,
        "repository:   {} (branch {})",
        state.repo_url.as_deref().unwrap_or("?"),
        state.branch.as_deref().unwrap_or("?")
    );
    match &state.applied {
        Some(a) => {
            let _ = writeln!(
                out,
                "applied:      {} {:?}, {}",
                short(&a.commit),
                a.subject.as_deref().unwrap_or(""),
                age(&a.applied_at, now)
            );
        }
        None => out.push_str("applied:      nothing yet\n"),
    }
    let _ = writeln!(
        out,
        "last pass:    {}, {}",
        pass.outcome.as_str(),
        age(&pass.finished_at, now)
    );
    if let Some(error) = &pass.error {
        let _ = writeln!(out, "  error:      {error}");
    }
    if let Some(p) = &state.pending {
        let _ = writeln!(
            out,
            "pending:      {} after {} failed attempt{}: {}",
            short(&p.commit),
            p.attempts,
            if p.attempts == 1 { "" } else { "s" },
            p.last_error
        );
        if let Some(log) = &p.log {
            let _ = writeln!(out, "  log:        {log}");
        }
    }
    if state.consecutive_failures > 0 {
        let _ = writeln!(
            out,
            "failures:     {} consecutive",
            state.consecutive_failures
        );
    }
    out
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// "3h 5min ago (2026-11-25T10:00:00Z)".
fn age(stamp: &str, now: OffsetDateTime) -> String {
    let Ok(then) = OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
    else {
        return stamp.to_string();
    };
    let secs = (now - then).whole_seconds().max(0);
    let ago = match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}min", secs / 60),
        3600..86400 => format!("{}h {}min", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    };
    format!("{ago} ago ({stamp})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pass::state::{Applied, LastPass, Outcome, Pending};

    #[test]
    fn summary_names_applied_last_pass_and_pending() {
        let state = State {
            repo_url: Some("git://h/r".into()),
            branch: Some("main".into()),
            applied: Some(Applied {
                commit: "a".repeat(40),
                applied_at: "2026-11-25T08:00:00Z".into(),
                log: None,
                subject: Some("Set the motd".into()),
            }),
            last_pass: Some(LastPass {
                started_at: "2026-11-25T09:59:58Z".into(),
                finished_at: "2026-11-25T09:59:59Z".into(),
                outcome: Outcome::ApplyFailed,
                remote_commit: Some("b".repeat(40)),
                error: Some("run.sh exited with status 3".into()),
            }),
            pending: Some(Pending {
                commit: "b".repeat(40),
                attempts: 2,
                last_error: "run.sh exited with status 3".into(),
                log: Some("/var/lib/gitops/logs/x.log".into()),
            }),
            consecutive_failures: 2,
        };
        let now = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        let text = render(&state, now);
        assert!(
            text.contains("applied:      aaaaaaaaaaaa \"Set the motd\", 2h 0min ago"),
            "{text}"
        );
        assert!(
            text.contains("last pass:    apply-failed, 1s ago"),
            "{text}"
        );
        assert!(
            text.contains(
                "pending:      bbbbbbbbbbbb after 2 failed attempts: run.sh exited with status 3"
            ),
            "{text}"
        );
        assert!(text.contains("failures:     2 consecutive"), "{text}");
    }
}
