//! `gitops status`: what is applied, how the last pass ended, what is pending.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use time::OffsetDateTime;

use crate::exit::Exit;
use crate::pass::run::unfinished_error;
use crate::pass::state::{self, Layout, State};

mod log;
mod render;
mod suspended;
mod timer;

use log::print_log;
pub use render::{format_lines, summary, Line, Seen, Tone};
use render::{parse_time, short, span};
use timer::{ask_next_elapse, monotonic_now, systemctl_program};
pub use timer::{bounded_output, parse_next_elapse};

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
    /// Print the metrics instead of the summary: the Prometheus text --metrics-dir gets
    #[arg(long, conflicts_with = "json")]
    pub prometheus: bool,
    /// Print an apply's log as it is: the last apply's, or the newest for COMMIT (4 or more hex digits of it)
    #[arg(long, value_name = "COMMIT", num_args = 0..=1, conflicts_with_all = ["json", "prometheus"])]
    pub log: Option<Option<String>>,
    #[command(flatten)]
    pub trigger: crate::trigger::options::StatsDir,
    /// The systemctl program asked when gitops.timer runs next [default: systemctl, on a machine booted with systemd]
    #[arg(long, env = "GITOPS_SYSTEMCTL", value_name = "PROGRAM")]
    pub systemctl: Option<String>,
}

/// Print the status and return the exit code: 0 when healthy, 1 otherwise, so the command
/// serves as a health check. Reads only: it never creates or modifies anything.
pub fn run(state_dir: &Path, args: &Args, now: OffsetDateTime) -> Result<Exit> {
    let layout = Layout::new(state_dir);
    if let Some(commit) = &args.log {
        return print_log(&layout, commit.as_deref());
    }
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
    let suspension: suspended::Found =
        crate::pass::suspend::read(&layout).map_err(|e| crate::pass::one_line(&e));
    let outbox_events = crate::report::notify::outbox::len(&layout);
    let trigger = crate::trigger::record::read_for_report(&args.trigger.trigger_state_dir);
    let colour = colour_wanted();
    let Some(state) = recorded else {
        if args.json {
            out!("{}", json(&State::default(), &suspension, now)?);
        } else if args.prometheus {
            let text =
                crate::report::metrics::render(&State::default(), outbox_events, trigger.as_ref());
            print_raw((text + &crate::report::metrics::render_suspension(&layout, now)).as_bytes());
        } else {
            out!(
                "no pass has run yet: gitops sync has recorded nothing in {} (is --state-dir the one gitops.service uses?)",
                state_dir.display()
            );
            let lines: Vec<Line> = blocked
                .reasons()
                .into_iter()
                .map(|reason| Line::new("unhealthy", Tone::Bad, reason))
                .collect();
            let lines: Vec<Line> = suspended::lines(&suspension, now)
                .into_iter()
                .chain(lines)
                .collect();
            if !lines.is_empty() {
                out!("{}", format_lines(&lines, colour).trim_end());
            }
        }
        return Ok(Exit::ApplyFailed);
    };
    let (healthy, reasons) = health(&state, &running, &blocked, now, args.max_age);
    if args.json {
        out!("{}", json(&state, &suspension, now)?);
    } else if args.prometheus {
        let text = crate::report::metrics::render(&state, outbox_events, trigger.as_ref());
        print_raw((text + &crate::report::metrics::render_suspension(&layout, now)).as_bytes());
    } else {
        let seen = Seen {
            next_pass: systemctl_program(args.systemctl.as_deref())
                .and_then(|program| ask_next_elapse(&program))
                .and_then(|text| parse_next_elapse(&text, now, monotonic_now())),
            outbox_events,
            trigger,
        };
        // The suspension first: it explains the lines below it.
        let mut lines = suspended::lines(&suspension, now);
        lines.extend(summary(&state, running == Lock::Pass, now, &seen));
        lines.extend(
            reasons
                .into_iter()
                .map(|reason| Line::new("unhealthy", Tone::Bad, reason)),
        );
        out!("{}", format_lines(&lines, colour).trim_end());
    }
    Ok(if healthy { Exit::Ok } else { Exit::ApplyFailed })
}

/// state.json as it is, with the suspension beside its fields when there is one.
fn json(state: &State, suspension: &suspended::Found, now: OffsetDateTime) -> Result<String> {
    let mut value = serde_json::to_value(state)?;
    if let (Some(object), Some(suspension)) =
        (value.as_object_mut(), suspended::json(suspension, now))
    {
        object.insert("suspension".into(), suspension);
    }
    Ok(serde_json::to_string_pretty(&value)?)
}

/// Bytes to stdout as they are, a reader that went away ignored (`gitops status --log | head`).
fn print_raw(bytes: &[u8]) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

/// Colour only for a person at a terminal, and not when they asked for none (no-color.org: a
/// NO_COLOR set and not empty).
fn colour_wanted() -> bool {
    use std::io::IsTerminal as _;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
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
            Some(p) if !crate::pass::lock::pid_is_live_gitops(p.pid) => {
                Lock::Orphaned(layout.lock_holders())
            }
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
    if let Some(stale) = &state.stale {
        reasons.push(crate::pass::run::stale_error(stale, now));
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

#[cfg(test)]
mod tests {
    use super::render::render;
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
                signer: None,
                entrypoint: None,
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
                ..Default::default()
            }),
            consecutive_failures: 2,
            in_progress: None,
            ..State::default()
        };
        let now = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        let text = render(&state, false, now, &Seen::default());
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
                reverting_to: None,
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

    #[test]
    fn labels_share_one_column_and_colour_only_when_asked() {
        let lines = vec![
            Line::new("applied", Tone::Good, "abc".into()),
            Line::new("  error", Tone::Bad, "it broke".into()),
            Line::new("pending", Tone::Pending, "def".into()),
            Line::new("repository", Tone::Plain, "git://h/r".into()),
            Line::new("a label longer than the column", Tone::Plain, "x".into()),
        ];
        assert_eq!(
            format_lines(&lines, false),
            "applied:      abc\n  error:      it broke\npending:      def\nrepository:   git://h/r\na label longer than the column: x\n"
        );
        let coloured = format_lines(&lines, true);
        assert!(
            coloured.contains("applied:      \x1b[32mabc\x1b[0m\n"),
            "{coloured:?}"
        );
        assert!(
            coloured.contains("  error:      \x1b[31mit broke\x1b[0m\n"),
            "{coloured:?}"
        );
        assert!(
            coloured.contains("pending:      \x1b[33mdef\x1b[0m\n"),
            "{coloured:?}"
        );
        assert!(
            coloured.contains("repository:   git://h/r\n"),
            "{coloured:?}"
        );
    }

    #[test]
    fn notifications_are_shown_when_configured_or_waiting() {
        let now = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        let quiet = passed(Outcome::Applied, "2026-11-25T09:55:00Z");
        let lines = |state: &State, events| {
            let seen = Seen {
                next_pass: None,
                outbox_events: events,
                trigger: None,
            };
            render(state, false, now, &seen)
        };
        assert!(
            !lines(&quiet, 0).contains("notify:"),
            "{}",
            lines(&quiet, 0)
        );
        assert!(
            lines(&quiet, 3).contains("notify:       3 events waiting to be sent\n"),
            "{}",
            lines(&quiet, 3)
        );
        let failing = State {
            notify: Some(crate::pass::state::NotifyRecord {
                last_error: Some("https://discord.com/api/webhooks/***: 500".into()),
                last_error_at: Some("2026-11-25T09:50:00Z".into()),
                last_delivered_at: Some("2026-11-25T08:00:00Z".into()),
                ..Default::default()
            }),
            ..quiet.clone()
        };
        let text = lines(&failing, 1);
        assert!(
            text.contains("notify:       1 event waiting to be sent, last delivered 2h 0min ago (2026-11-25T08:00:00Z)\n  error:      https://discord.com/api/webhooks/***: 500, 10min ago (2026-11-25T09:50:00Z)\n"),
            "{text}"
        );
        let (healthy, _) = health(
            &failing,
            &Lock::Free,
            &Blocked::default(),
            now,
            Duration::ZERO,
        );
        assert!(
            healthy,
            "a failed notification never makes the machine unhealthy"
        );
    }

    #[test]
    fn the_trigger_s_last_request_and_counters_are_shown_once_it_ran() {
        use crate::trigger::record::{Last, Stats};
        let now = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        let state = passed(Outcome::Applied, "2026-11-25T09:55:00Z");
        let with = |trigger: Option<Stats>| {
            let seen = Seen {
                next_pass: None,
                outbox_events: 0,
                trigger,
            };
            render(&state, false, now, &seen)
        };
        assert!(!with(None).contains("trigger:"));
        let stats = Stats {
            accepted: 5,
            started: 3,
            coalesced: 1,
            ignored: 1,
            refused: [("signature".to_string(), 2), ("path".to_string(), 0)]
                .into_iter()
                .collect(),
            last: Some(Last {
                time: "2026-11-25T09:58:00Z".into(),
                source: "192.0.2.1".into(),
                forge: "github".into(),
                answer: "started".into(),
            }),
            last_start_unix: None,
            start_failed: 0,
        };
        let text = with(Some(stats));
        assert!(
            text.contains("trigger:      last github request from 192.0.2.1 2min ago (2026-11-25T09:58:00Z): started; 5 accepted, 3 started a pass, 1 coalesced, 1 ignored, 2 refused (signature 2)\n"),
            "{text}"
        );
        assert!(with(Some(Stats::default()))
            .contains("trigger:      no request accepted yet; 0 accepted"));
    }

    #[test]
    fn the_next_pass_is_shown_with_how_soon() {
        let now = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        let state = passed(Outcome::UpToDate, "2026-11-25T09:55:00Z");
        let seen = Seen {
            next_pass: Some(time::macros::datetime!(2026-11-25 10:03:10 UTC)),
            outbox_events: 0,
            trigger: None,
        };
        let text = render(&state, false, now, &seen);
        assert!(
            text.contains("next pass:    2026-11-25T10:03:10Z (in 3min)\n"),
            "{text}"
        );
    }
}
