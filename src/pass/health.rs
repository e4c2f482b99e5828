//! The health check: a program of the commit, run after its entry point exits 0, that says
//! whether the machine works; the commit counts as applied only when it passes.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::apply::{self, Role};
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
