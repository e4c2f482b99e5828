//! `gitops status`: what is applied, how the last pass ended, what is pending.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use time::OffsetDateTime;

use crate::exit::Exit;
use crate::pass::run::unfinished_error;
use crate::pass::state::{self, Layout, State};

/// The options of `gitops status`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub state: crate::config::StateDir,
    /// Print state.json as it is instead of the summary
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when the last pass finished longer ago than this (a stopped timer); 0 turns it off
    #[arg(
        long,
        env = "GITOPS_STATUS_MAX_AGE",
        value_name = "DURATION",
        default_value = "1h",
        value_parser = crate::config::parse_duration
    )]
    pub max_age: Duration,
}

/// Print the status and return the exit code: 0 when healthy, 1 otherwise, so the command
/// serves as a health check. Reads only: it never creates or modifies anything.
pub fn run(state_dir: &Path, args: &Args, now: OffsetDateTime) -> Result<Exit> {
    let layout = Layout::new(state_dir);
    // What would stop every sync before it records anything: the last recorded pass may look
    // fine while every pass since was refused.
    let blocked = Blocked {
        refused: crate::pass::guard::private_problem_for(&layout, "status"),
        lock: layout.lock_problem(),
    };
    // A health check reads exit 1 as "not healthy"; an unreadable state is not healthy either.
    let recorded = state::read(&layout).map_err(|e| {
        crate::exit::fail(
            Exit::ApplyFailed,
            unreadable(&e, blocked.refused.as_deref()),
        )
    })?;
    let running = Lock::found(&layout, recorded.as_ref());
    let Some(state) = recorded else {
        if args.json {
            out!("{}", serde_json::to_string_pretty(&State::default())?);
        } else {
            out!(
                "no pass has run yet: gitops sync has recorded nothing in {} (is --state-dir the one gitops.service uses?)",
                state_dir.display()
            );
            for reason in blocked.reasons() {
                out!("unhealthy:    {reason}");
            }
        }
        return Ok(Exit::ApplyFailed);
    };
    let (healthy, reasons) = health(&state, &running, &blocked, now, args.max_age);
    if args.json {
        out!("{}", serde_json::to_string_pretty(&state)?);
    } else {
        out!("{}", render(&state, running == Lock::Pass, now).trim_end());
        for reason in reasons {
            out!("unhealthy:    {reason}");
        }
    }
    Ok(if healthy { Exit::Ok } else { Exit::ApplyFailed })
}

/// Why `state.json` could not be read, with the fix: a state directory that is root's, read by
/// another user, is for root to look at, never to be handed to that user.
fn unreadable(e: &anyhow::Error, refused: Option<&str>) -> String {
    let denied = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    });
    let line = crate::pass::one_line(e);
    match refused {
        Some(refused) if denied => format!("{line}; {refused}"),
        _ if denied && !nix::unistd::geteuid().is_root() => {
            format!("{line}; run gitops as root (sudo gitops status)")
        }
        _ => line,
    }
}

/// What stops every `gitops sync` before it can record anything, found by looking at the state
/// directory.
#[derive(Debug, Default)]
pub struct Blocked {
    /// Why sync refuses the state directory (its sentence, with the fix).
    pub refused: Option<String>,
    /// Why sync cannot take the lock (something other than a file is there).
    pub lock: Option<String>,
}

impl Blocked {
    fn reasons(&self) -> Vec<String> {
        self.refused
            .iter()
            .chain(self.lock.iter())
            .cloned()
            .collect()
    }
}

/// Who holds the pass lock, as far as status can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    /// Nobody: no pass is running.
    Free,
    /// A pass: applying (the pid recorded in `in_progress` is a live gitops), or fetching, or
    /// another program (no `in_progress`), which status cannot tell apart.
    Pass,
    /// The pass recorded in `in_progress` is dead, yet the lock is held: processes its entry
    /// point started (named, when /proc tells) keep it, and every sync waits for them.
    Orphaned(Option<String>),
}

impl Lock {
    fn found(layout: &Layout, state: Option<&State>) -> Lock {
        if !layout.pass_running() {
            return Lock::Free;
        }
        match state.and_then(|s| s.in_progress.as_ref()) {
            Some(p) if !state::pid_is_live_gitops(p.pid) => Lock::Orphaned(layout.lock_holders()),
            _ => Lock::Pass,
        }
    }
}

/// How far in the future the last pass may seem to have finished before the clock is suspect:
/// room for a little skew between the machine's clock and an NTP step.
const FUTURE_SLACK_SECS: i64 = 300;

/// Whether the machine is healthy, and why not: no sync is blocked before it can record, the
/// last pass succeeded, no pass died while applying, and the last pass is recent enough
/// (`max_age` zero: any age) and not in the future.
pub fn health(
    state: &State,
    lock: &Lock,
    blocked: &Blocked,
    now: OffsetDateTime,
    max_age: Duration,
) -> (bool, Vec<String>) {
    let mut reasons = blocked.reasons();
    if let Some(unfinished) = &state.in_progress {
        match lock {
            Lock::Free => reasons.push(unfinished_error(unfinished)),
            Lock::Pass => {}
            Lock::Orphaned(holders) => reasons.push(format!(
                "the pass applying {} (pid {}) was killed; processes it started still hold the lock, so every sync waits for them: let them finish, or stop them{}",
                short(&unfinished.commit),
                unfinished.pid,
                holders
                    .as_deref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default()
            )),
        }
    }
    match &state.last_pass {
        None => reasons.push("no pass has finished yet".to_string()),
        Some(pass) => {
            if !pass.outcome.is_success() {
                reasons.push(format!("the last pass ended {}", pass.outcome.as_str()));
            }
            let ahead = parse_time(&pass.finished_at).map(|then| (then - now).whole_seconds());
            if let Some(ahead) = ahead.filter(|&a| a > FUTURE_SLACK_SECS) {
                reasons.push(format!(
                    "the last pass finished at {}, {} from now: is the clock right? (timedatectl)",
                    pass.finished_at,
                    span(ahead)
                ));
            }
            if !max_age.is_zero() {
                match parse_time(&pass.finished_at) {
                    Some(then) => {
                        let secs = (now - then).whole_seconds().max(0);
                        if u64::try_from(secs).unwrap_or(0) > max_age.as_secs() {
                            reasons.push(format!(
                                "no pass for {}: is gitops.timer running?",
                                span(secs)
                            ));
                        }
                    }
                    None => reasons.push(format!(
                        "the last pass's time {:?} is unreadable",
                        pass.finished_at
                    )),
                }
            }
        }
    }
    (reasons.is_empty(), reasons)
}

/// The human summary.
pub fn render(state: &State, pass_running: bool, now: OffsetDateTime) -> String {
    let mut out = String::new();
    if let (Some(p), true) = (&state.in_progress, pass_running) {
        let _ = writeln!(
            out,
            "running:      a pass is applying {} (pid {}), started {}",
            short(&p.commit),
            p.pid,
            age(&p.started_at, now)
        );
    }
    let Some(pass) = &state.last_pass else {
        out.push_str("no pass has finished yet\n");
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
        let subject = p
            .subject
            .as_deref()
            .map(|s| format!(" {s:?}"))
            .unwrap_or_default();
        let attempts = format!(
            "{} failed attempt{}",
            p.attempts,
            if p.attempts == 1 { "" } else { "s" }
        );
        // The usual case: the last pass was this commit's failed attempt, whose error is shown
        // just above.
        if pass.error.as_deref() == Some(p.last_error.as_str()) {
            let _ = writeln!(
                out,
                "pending:      {}{subject} after {attempts}",
                short(&p.commit)
            );
        } else {
            let _ = writeln!(
                out,
                "pending:      {}{subject} after {attempts}: {}",
                short(&p.commit),
                p.last_error
            );
        }
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

fn parse_time(stamp: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()
}

/// "3h 5min".
fn span(secs: i64) -> String {
    match secs {
        ..60 => format!("{secs}s"),
        60..3600 => format!("{}min", secs / 60),
        3600..86400 => format!("{}h {}min", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// "3h 5min ago (2026-11-25T10:00:00Z)".
fn age(stamp: &str, now: OffsetDateTime) -> String {
    let Some(then) = parse_time(stamp) else {
        return stamp.to_string();
    };
    let secs = (now - then).whole_seconds().max(0);
    format!("{} ago ({stamp})", span(secs))
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
                committed_at: None,
            }),
            last_pass: Some(LastPass {
                started_at: "2026-11-25T09:59:58Z".into(),
                finished_at: "2026-11-25T09:59:59Z".into(),
                outcome: Outcome::ApplyFailed,
                remote_commit: Some("b".repeat(40)),
                error: Some("run.sh exited with status 3".into()),
                duration_ms: None,
            }),
            pending: Some(Pending {
                commit: "b".repeat(40),
                attempts: 2,
                last_error: "run.sh exited with status 3".into(),
                log: Some("/var/lib/gitops/logs/x.log".into()),
                subject: Some("Break the motd".into()),
            }),
            consecutive_failures: 2,
            in_progress: None,
            ..State::default()
        };
        let now = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        let text = render(&state, false, now);
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
                "pending:      bbbbbbbbbbbb \"Break the motd\" after 2 failed attempts\n"
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("run.sh exited with status 3").count(),
            1,
            "one error, under one heading: {text}"
        );
        assert!(text.contains("failures:     2 consecutive"), "{text}");
    }

    fn passed(outcome: Outcome, finished_at: &str) -> State {
        State {
            last_pass: Some(LastPass {
                started_at: finished_at.into(),
                finished_at: finished_at.into(),
                outcome,
                remote_commit: None,
                error: None,
                duration_ms: None,
            }),
            ..State::default()
        }
    }

    #[test]
    fn health_is_a_recent_successful_pass_that_no_crash_followed() {
        let now = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        let hour = Duration::from_secs(3600);
        let off = Duration::ZERO;
        let recent = "2026-11-25T09:55:00Z";
        let old = "2026-11-25T06:55:00Z";
        let killed = |mut s: State| {
            s.in_progress = Some(crate::pass::state::InProgress {
                commit: "c".repeat(40),
                started_at: "2026-11-25T09:58:00Z".into(),
                pid: 42,
                log: None,
            });
            s
        };
        let table: Vec<(State, Lock, Duration, bool, &[&str])> = vec![
            (passed(Outcome::Applied, recent), Lock::Free, hour, true, &[]),
            (passed(Outcome::UpToDate, recent), Lock::Free, hour, true, &[]),
            (
                passed(Outcome::ApplyFailed, recent), Lock::Free,
                hour,
                false,
                &["the last pass ended apply-failed"],
            ),
            (
                passed(Outcome::ConfigError, recent), Lock::Free,
                hour,
                false,
                &["the last pass ended config-error"],
            ),
            (
                passed(Outcome::Applied, old), Lock::Free,
                hour,
                false,
                &["no pass for 3h 5min: is gitops.timer running?"],
            ),
            (passed(Outcome::Applied, old), Lock::Free, off, true, &[]),
            (
                killed(passed(Outcome::Applied, recent)), Lock::Free,
                hour,
                false,
                &["the pass applying cccccccccccc started at 2026-11-25T09:58:00Z did not finish: killed or crashed"],
            ),
            // Still running: the lock says so, and the last finished pass decides.
            (killed(passed(Outcome::Applied, recent)), Lock::Pass, hour, true, &[]),
            // The recorded pass is dead but the lock is held: its processes keep every sync out.
            (
                killed(passed(Outcome::Applied, recent)),
                Lock::Orphaned(Some("process pid 303 (sleep)".into())),
                hour,
                false,
                &["the pass applying cccccccccccc (pid 42) was killed; processes it started still hold the lock, so every sync waits for them: let them finish, or stop them (process pid 303 (sleep))"],
            ),
            (
                killed(passed(Outcome::Applied, recent)),
                Lock::Orphaned(None),
                hour,
                false,
                &["the pass applying cccccccccccc (pid 42) was killed; processes it started still hold the lock, so every sync waits for them: let them finish, or stop them"],
            ),
            // Held with nothing in progress: a pass fetching, or another program; as before.
            (passed(Outcome::Applied, recent), Lock::Pass, hour, true, &[]),
            (
                killed(State::default()),
                Lock::Pass,
                hour,
                false,
                &["no pass has finished yet"],
            ),
            (
                passed(Outcome::Applied, "yesterday"), Lock::Free,
                hour,
                false,
                &["the last pass's time \"yesterday\" is unreadable"],
            ),
        ];
        for (state, running, max_age, healthy, reasons) in table {
            let (got_healthy, got_reasons) =
                health(&state, &running, &Blocked::default(), now, max_age);
            assert_eq!(
                (got_healthy, got_reasons.as_slice()),
                (
                    healthy,
                    reasons
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .as_slice()
                ),
                "{state:?} running={running:?} max_age={max_age:?}"
            );
        }
    }

    #[test]
    fn a_blocked_sync_or_a_pass_from_the_future_is_unhealthy() {
        let now = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        let hour = Duration::from_secs(3600);
        let off = Duration::ZERO;
        let fine = Blocked::default();
        let refused = Blocked {
            refused: Some("the state directory /s is open to others (mode 0755), who could make gitops run any code; run chmod 700 /s".into()),
            lock: None,
        };
        let fifo = Blocked {
            refused: None,
            lock: Some("the lock file /s/lock is a FIFO, not a file".into()),
        };
        let recent = "2026-11-25T09:55:00Z";
        let table: Vec<(State, &Blocked, Duration, &[&str])> = vec![
            (passed(Outcome::Applied, recent), &fine, hour, &[]),
            (
                passed(Outcome::Applied, recent),
                &refused,
                hour,
                &["the state directory /s is open to others (mode 0755), who could make gitops run any code; run chmod 700 /s"],
            ),
            (
                passed(Outcome::Applied, recent),
                &fifo,
                hour,
                &["the lock file /s/lock is a FIFO, not a file"],
            ),
            (
                State::default(),
                &fifo,
                hour,
                &[
                    "the lock file /s/lock is a FIFO, not a file",
                    "no pass has finished yet",
                ],
            ),
            // A little skew is not a broken clock.
            (passed(Outcome::Applied, "2026-11-25T10:05:00Z"), &fine, hour, &[]),
            (
                passed(Outcome::Applied, "2026-11-25T10:05:01Z"),
                &fine,
                hour,
                &["the last pass finished at 2026-11-25T10:05:01Z, 5min from now: is the clock right? (timedatectl)"],
            ),
            // --max-age 0 turns off the age check, not the clock check.
            (
                passed(Outcome::Applied, "2031-01-01T00:00:00Z"),
                &fine,
                off,
                &["the last pass finished at 2031-01-01T00:00:00Z, 1497d 14h from now: is the clock right? (timedatectl)"],
            ),
        ];
        for (state, blocked, max_age, reasons) in table {
            let (healthy, got) = health(&state, &Lock::Free, blocked, now, max_age);
            let want: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
            assert_eq!(
                (healthy, got),
                (want.is_empty(), want),
                "{state:?} {blocked:?}"
            );
        }
    }
}
