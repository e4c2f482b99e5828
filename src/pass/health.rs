//! The health check: a program of the commit, run after its entry point exits 0, that says
//! whether the machine works; the commit counts as applied only when it passes.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::apply::{self, Role};
use super::state::{Outcome, Pending};
use crate::config::parse_duration;

/// Where a commit keeps its health check when no --health-check names one.
pub const DEFAULT_CHECK: &str = ".gitops/health";

/// The health check's part in the pass, for its messages.
pub const HEALTH_CHECK: Role = Role {
    name: "health check",
    set_by: "--health-check",
    timeout_flag: "--health-timeout",
};

/// The options of the health check.
#[derive(clap::Args, Debug, Clone)]
pub struct HealthOptions {
    /// Health check to run after the entry point exits 0, relative to the repository root; the commit is applied only when it exits 0 too. Default: .gitops/health when the commit has one
    #[arg(long, env = "GITOPS_HEALTH_CHECK", value_name = "FILE")]
    pub health_check: Option<String>,

    /// Kill the health check's process group after this long (one attempt)
    #[arg(long, env = "GITOPS_HEALTH_TIMEOUT", value_name = "DURATION", default_value = "2min", value_parser = parse_duration)]
    pub health_timeout: Duration,

    /// Run a failing health check again this many times, --health-interval apart, for services that take a moment to come up
    #[arg(long, env = "GITOPS_HEALTH_RETRIES", value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub health_retries: u32,

    /// How long to wait between two attempts of the health check
    #[arg(long, env = "GITOPS_HEALTH_INTERVAL", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub health_interval: Duration,

    /// What a failed entry point or health check leaves: stay on the failed commit and retry it every pass, or revert to the last applied commit in the same pass and hold the failed one back
    #[arg(long, env = "GITOPS_ON_FAILURE", value_enum, default_value_t = OnFailure::Stay)]
    pub on_failure: OnFailure,

    /// With --on-failure revert: try a reverted commit again after this long (never: only once the branch moves)
    #[arg(long, env = "GITOPS_RETRY_REVERTED", value_name = "DURATION|never", default_value = "never", value_parser = parse_retry_reverted)]
    pub retry_reverted: RetryReverted,
}

/// What a failed commit leaves on the machine.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// The failed commit stays checked out and is retried every pass.
    Stay,
    /// The last applied commit is applied again in the same pass.
    Revert,
}

/// When a reverted commit is tried again while the branch has not moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReverted {
    Never,
    After(Duration),
}

fn parse_retry_reverted(text: &str) -> std::result::Result<RetryReverted, String> {
    match text.trim() {
        "never" => Ok(RetryReverted::Never),
        other => parse_duration(other)
            .map(RetryReverted::After)
            .map_err(|e| format!("{e}, or never")),
    }
}

/// Which health check a commit gets: the one named, else the commit's own when it has one.
/// None: this commit has none, and its entry point's exit status alone decides.
pub fn chosen<'a>(options: &'a HealthOptions, tree: &Path) -> Option<&'a str> {
    match options.health_check.as_deref() {
        Some(named) => Some(named),
        None => std::fs::symlink_metadata(tree.join(DEFAULT_CHECK))
            .is_ok()
            .then_some(DEFAULT_CHECK),
    }
}

/// Run the health check until it passes or its attempts are spent. `run` is the entry point's
/// own run, whose program is replaced by the check: same tree, environment, log and lock.
/// Ok(Err(why)) when it failed, with the last attempt's reason.
pub fn check(
    options: &HealthOptions,
    program: &str,
    run: &apply::Run<'_>,
) -> Result<apply::RunResult> {
    let attempts = options.health_retries.saturating_add(1);
    let spec = apply::Run {
        entrypoint: program,
        timeout: options.health_timeout,
        role: HEALTH_CHECK,
        env: run.env.clone(),
        ..*run
    };
    let mut last = String::new();
    for attempt in 1..=attempts {
        match apply::run(&spec)? {
            Ok(()) => return Ok(Ok(())),
            Err(why) => last = why,
        }
        if attempt == attempts || crate::signals::received().is_some() {
            break;
        }
        let line = format!(
            "health check attempt {attempt} of {attempts} failed ({last}); trying again in {}",
            crate::config::format_duration(options.health_interval)
        );
        say!("gitops: {line}");
        apply::note_in_log(run.log, &line);
        if !pause(options.health_interval) {
            break;
        }
    }
    Ok(Err(if attempts > 1 {
        format!("health check {program} failed {attempts} times, last: {last}")
    } else {
        format!("health check {program} failed: {last}")
    }))
}

/// The commit to go back to after `tip` failed, if the pass is to revert at all: only with
/// `--on-failure revert`, only once the failed commit reached the machine (the link was
/// switched to it), only to another commit that applied before, and never once the pass was
/// told to stop (systemd is stopping it: a revert would start a new program).
pub fn revert_to<'a>(
    policy: OnFailure,
    switched: bool,
    applied: Option<&'a str>,
    tip: &str,
    stopped: bool,
) -> Option<&'a str> {
    match policy {
        OnFailure::Revert if switched && !stopped => applied.filter(|a| *a != tip),
        _ => None,
    }
}

/// Whether the pending commit was reverted and is still held back at `now`: with
/// `--retry-reverted never`, until the branch moves; else until that long after the revert. A
/// revert time that cannot be read, or lies ahead (a clock set back), lets it be tried again:
/// a record must not hold a machine back forever.
pub fn held_back(pending: Option<&Pending>, retry: RetryReverted, now: OffsetDateTime) -> bool {
    let Some(pending) = pending else {
        return false;
    };
    if !matches!(
        pending.outcome,
        Some(Outcome::Reverted | Outcome::RevertFailed)
    ) {
        return false;
    }
    match retry {
        RetryReverted::Never => true,
        RetryReverted::After(wait) => pending
            .reverted_at
            .as_deref()
            .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
            .is_some_and(|at| at <= now && now < at + wait),
    }
}

/// How long a commit reverted at `reverted_at` is held back, as the journal and the error say
/// it: "until the branch moves", and with `--retry-reverted` the time it is tried again, so
/// that nobody pushes a fix in a hurry for a commit that retries itself within the hour.
pub fn held_until(retry: RetryReverted, reverted_at: Option<&str>) -> String {
    let RetryReverted::After(wait) = retry else {
        return "until the branch moves".into();
    };
    let shown = crate::config::format_duration(wait);
    let again = reverted_at
        .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
        .zip(time::Duration::try_from(wait).ok())
        // A time hand-written near the end of the calendar must not overflow.
        .and_then(|(at, wait)| at.checked_add(wait));
    match again {
        Some(again) => format!(
            "until the branch moves or {} (--retry-reverted {shown})",
            crate::report::text::rfc3339(again)
        ),
        None => format!("until the branch moves or --retry-reverted {shown} has passed"),
    }
}

/// Wait, in slices so that a SIGTERM ends the wait at once. False when a signal came.
fn pause(total: Duration) -> bool {
    let until = std::time::Instant::now() + total;
    loop {
        if crate::signals::received().is_some() {
            return false;
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OnFailure::{Revert, Stay};

    const TIP: &str = "1111111111111111111111111111111111111111";
    const APPLIED: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn a_failed_commit_is_reverted_only_when_it_reached_the_machine_and_there_is_a_commit_to_go_back_to(
    ) {
        type Row<'a> = (OnFailure, bool, Option<&'a str>, bool, Option<&'a str>);
        #[rustfmt::skip]
        let table: &[Row] = &[
            // policy switched applied        stopped  revert to
            (Revert, true,  Some(APPLIED),   false,   Some(APPLIED)),
            (Stay,   true,  Some(APPLIED),   false,   None),
            (Revert, false, Some(APPLIED),   false,   None), // the tree was never linked
            (Revert, true,  None,            false,   None), // the first apply: nothing before it
            (Revert, true,  Some(TIP),       false,   None), // --apply always on the applied commit
            (Revert, true,  Some(APPLIED),   true,    None), // SIGTERM: stop, start nothing
        ];
        for (policy, switched, applied, stopped, want) in table {
            assert_eq!(
                revert_to(*policy, *switched, *applied, TIP, *stopped),
                *want,
                "{policy:?} switched={switched} {applied:?} stopped={stopped}"
            );
        }
    }

    #[test]
    fn a_reverted_commit_is_held_back_until_retry_reverted_has_passed() {
        let now = time::macros::datetime!(2026-12-03 12:00 UTC);
        let pending = |outcome, at: Option<&str>| Pending {
            commit: TIP.into(),
            attempts: 1,
            outcome,
            reverted_at: at.map(String::from),
            ..Default::default()
        };
        let hour = RetryReverted::After(Duration::from_secs(3600));
        let reverted = Some(Outcome::Reverted);
        #[rustfmt::skip]
        let table: &[(Option<Outcome>, Option<&str>, RetryReverted, bool)] = &[
            // pending outcome          reverted at               retry                  held
            (None,                      None,                     RetryReverted::Never,  false), // a plain failure is retried
            (reverted,                  Some("2026-12-03T11:00:00Z"), RetryReverted::Never, true),
            (Some(Outcome::RevertFailed), Some("2026-12-01T11:00:00Z"), RetryReverted::Never, true),
            (reverted,                  Some("2026-12-03T11:30:00Z"), hour,              true),
            (reverted,                  Some("2026-12-03T11:00:00Z"), hour,              false), // exactly an hour
            (reverted,                  Some("2026-12-03T13:00:00Z"), hour,              false), // clock set back
            (reverted,                  Some("yesterday"),        hour,                  false),
            (reverted,                  None,                     hour,                  false),
            (reverted,                  None,                     RetryReverted::Never,  true),
        ];
        for (outcome, at, retry, want) in table {
            let p = pending(*outcome, *at);
            assert_eq!(
                held_back(Some(&p), *retry, now),
                *want,
                "{outcome:?} {at:?} {retry:?}"
            );
        }
        assert!(!held_back(None, RetryReverted::Never, now));
    }

    #[test]
    fn the_hold_says_when_the_commit_is_tried_again() {
        let hour = RetryReverted::After(Duration::from_secs(3600));
        #[rustfmt::skip]
        let table: &[(RetryReverted, Option<&str>, &str)] = &[
            (RetryReverted::Never, Some("2026-12-03T11:00:00Z"), "until the branch moves"),
            (hour, Some("2026-12-03T11:00:00Z"), "until the branch moves or 2026-12-03T12:00:00Z (--retry-reverted 60min)"),
            (hour, None, "until the branch moves or --retry-reverted 60min has passed"),
            (hour, Some("9999-12-31T23:30:00Z"), "until the branch moves or --retry-reverted 60min has passed"),
        ];
        for (retry, at, want) in table {
            assert_eq!(held_until(*retry, *at), *want, "{retry:?} {at:?}");
        }
    }

    #[test]
    fn retry_reverted_takes_a_duration_or_never() {
        assert_eq!(parse_retry_reverted("never"), Ok(RetryReverted::Never));
        assert_eq!(
            parse_retry_reverted("2h"),
            Ok(RetryReverted::After(Duration::from_secs(7200)))
        );
        assert!(parse_retry_reverted("soon")
            .unwrap_err()
            .ends_with("or never"));
    }
}
