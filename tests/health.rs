//! The health check: run after the entry point exits 0; the commit is applied only when it
//! passes, within its retries and its timeout.

use crate::harness::{served, Machine};

/// A health check that fails until its `pass_on`-th attempt, counting attempts in $OUT.
fn flaky_health(pass_on: u32) -> String {
    format!(
        "#!/bin/sh\nn=$(cat \"$OUT/health-attempts\" 2>/dev/null || echo 0)\nn=$((n + 1))\necho $n > \"$OUT/health-attempts\"\necho \"health $GITOPS_COMMIT in $(pwd) attempt $n\"\n[ $n -ge {pass_on} ]\n"
    )
}

fn attempts(m: &Machine) -> u32 {
    std::fs::read_to_string(m.out.join("health-attempts"))
        .map(|t| t.trim().parse().unwrap())
        .unwrap_or(0)
}

#[test]
fn a_health_check_that_passes_on_its_third_try_within_the_retries_applies() {
    let (up, _daemon, url) = served();
    let commit = up.commit_file_mode(".gitops/health", &flaky_health(3), 0o755, "health");
    let m = Machine::new();
    let run = m
        .sync(
            &url,
            &["--health-retries", "2", "--health-interval", "100ms"],
        )
        .expect(0);
    assert_eq!(attempts(&m), 3);
    assert_eq!(m.applied().as_deref(), Some(commit.as_str()));
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("health check attempt 2 of 3 failed"),
        "{said}"
    );
    // Its output and the attempts are in the apply's log; it ran in the commit's tree, with
    // the entry point's environment.
    let log = std::fs::read_to_string(m.state.join("logs").join(&m.logs()[0])).unwrap();
    let tree = std::fs::canonicalize(&m.checkout).unwrap();
    assert!(
        log.contains(&format!("health {commit} in {}", tree.display())),
        "{log}"
    );
    assert!(log.contains("attempt 1 of 3 failed"), "{log}");
}

#[test]
fn a_failing_health_check_leaves_the_commit_pending_and_it_is_retried() {
    let (up, _daemon, url) = served();
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    let good = m.applied().unwrap();
    let bad = up.commit_file_mode(".gitops/health", &flaky_health(99), 0o755, "breaks");
    let run = m
        .sync(
            &url,
            &["--health-retries", "1", "--health-interval", "50ms"],
        )
        .expect(1);
    assert!(
        run.error_line()
            .contains("health check .gitops/health failed 2 times"),
        "{}",
        run.stderr
    );
    assert_eq!(attempts(&m), 2);
    assert_eq!(m.applied().as_deref(), Some(good.as_str()), "not applied");
    let state = m.state_json();
    assert_eq!(state["pending"]["commit"], bad.as_str());
    assert_eq!(state["last_pass"]["outcome"], "apply-failed");
    // Retried on the next pass, like any failed apply.
    m.sync(&url, &[]).expect(1);
    assert_eq!(m.state_json()["pending"]["attempts"], 2);
    assert_eq!(attempts(&m), 3);
    // Without the check (or once it passes) the commit applies.
    let fixed = up.commit_file_mode(".gitops/health", "#!/bin/sh\ntrue\n", 0o755, "fixed");
    m.sync(&url, &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(fixed.as_str()));
}

#[test]
fn a_named_health_check_replaces_the_default_and_a_missing_one_fails_the_apply() {
    let (up, _daemon, url) = served();
    up.commit_file_mode(
        ".gitops/health",
        "#!/bin/sh\nexit 1\n",
        0o755,
        "failing default",
    );
    let commit = up.commit_file_mode("checks/ok", &flaky_health(1), 0o755, "named check");
    let m = Machine::new();
    m.sync(&url, &["--health-check", "checks/ok"]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(commit.as_str()));
    assert_eq!(attempts(&m), 1);

    let other = Machine::new();
    let run = other
        .sync(&url, &["--health-check", "checks/missing"])
        .expect(1);
    let line = run.error_line();
    assert!(
        line.contains("health check") && line.contains("--health-check"),
        "{line}"
    );
    assert_eq!(other.applied(), None);
}

#[test]
fn a_health_check_past_its_timeout_is_killed_and_named() {
    let (up, _daemon, url) = served();
    up.commit_file_mode(".gitops/health", "#!/bin/sh\nsleep 30\n", 0o755, "hangs");
    let m = Machine::new();
    let started = std::time::Instant::now();
    let run = m.sync(&url, &["--health-timeout", "1s"]).expect(1);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(
        run.error_line().contains("--health-timeout"),
        "{}",
        run.stderr
    );
    assert_eq!(m.applied(), None);
}

#[test]
fn health_options_that_make_no_sense_are_usage_errors() {
    let m = Machine::new();
    for bad in [
        "--health-retries=-1",
        "--health-retries=101",
        "--health-timeout=soon",
        "--health-interval=1 fortnight",
    ] {
        let run = m.sync("git://127.0.0.1:9/config.git", &[bad]).expect(2);
        let flag = bad.split('=').next().unwrap();
        assert!(run.stderr.contains(flag), "{bad}: {}", run.stderr);
    }
}
