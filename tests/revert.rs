//! `--on-failure revert`: a commit whose entry point or health check fails takes the machine
//! back to the last applied commit in the same pass, is held back until the branch moves, and
//! a revert that fails too is said and never looped.

use crate::harness::{chmod, served, Machine};
use crate::receiver::Receiver;

/// An entry point that records each run as "<commit> <reason> <previous>".
const REASONS_RUN_SH: &str = "#!/bin/sh\necho \"$GITOPS_COMMIT $GITOPS_REASON $GITOPS_PREVIOUS_COMMIT\" >> \"$OUT/reasons\"\n";
/// A health check that fails while $OUT/broken exists: the machine's state, not the commit's.
const MACHINE_HEALTH: &str =
    "#!/bin/sh\n[ ! -e \"$OUT/broken\" ] || { echo \"machine broken\"; exit 1; }\n";

const REVERT: [&str; 2] = ["--on-failure", "revert"];

pub fn reasons(m: &Machine) -> Vec<String> {
    std::fs::read_to_string(m.out.join("reasons"))
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

pub fn linked_commit(m: &Machine) -> String {
    m.linked_tree()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_commit_whose_health_check_fails_is_reverted_and_held_back_until_a_fix() {
    let (up, _daemon, url) = served();
    let good = up.commit(&[("run.sh", REASONS_RUN_SH)], "good");
    let m = Machine::new();
    let hook = Receiver::start(vec![]);
    let file = m.dir.path().join("notify-url");
    std::fs::write(&file, hook.url("/hook") + "\n").unwrap();
    chmod(&file, 0o600);
    std::fs::write(
        &m.config,
        format!(
            "GITOPS_NOTIFY_URL_FILE={}\nGITOPS_NOTIFY_FORMAT=json\nGITOPS_ON_FAILURE=revert\n",
            file.display()
        ),
    )
    .unwrap();
    m.sync(&url, &[]).expect(0);
    assert_eq!(reasons(&m), [format!("{good} apply ")]);

    let bad = up.commit_file_mode(
        ".gitops/health",
        "#!/bin/sh\necho unhealthy\nexit 1\n",
        0o755,
        "breaks the machine",
    );
    let run = m.sync(&url, &[]).expect(1);
    // The bad commit ran, failed its check, and the good one ran again in the same pass.
    assert_eq!(
        reasons(&m),
        [
            format!("{good} apply "),
            format!("{bad} apply {good}"),
            format!("{good} revert {bad}"),
        ]
    );
    let line = run.error_line();
    assert!(
        line.contains(&format!(
            "{} failed and was reverted to {}",
            &bad[..12],
            &good[..12]
        )) && line.contains("health check .gitops/health failed"),
        "{line}"
    );
    assert_eq!(linked_commit(&m), good, "the link is back on the good tree");
    let state = m.state_json();
    assert_eq!(state["applied"]["commit"], good.as_str());
    assert_eq!(state["last_pass"]["outcome"], "reverted");
    assert_eq!(state["pending"]["commit"], bad.as_str());
    assert_eq!(state["pending"]["outcome"], "reverted");
    assert!(state["pending"]["reverted_at"].is_string(), "{state}");
    // The revert is in the failed apply's log, after the failure.
    let logs = m.logs();
    let bad_log = logs.iter().find(|l| l.contains(&bad)).unwrap();
    let log = std::fs::read_to_string(m.state.join("logs").join(bad_log)).unwrap();
    let (failed_at, reverted_at) = (
        log.find("unhealthy").unwrap(),
        log.find("reverted to").unwrap(),
    );
    assert!(failed_at < reverted_at, "{log}");
    // Status says it, and exits 1: the branch's tip does not apply.
    let status = m.run(&["status"]);
    assert_eq!(status.code, 1, "{}", status.stdout);
    assert!(
        status.stdout.contains("reverted")
            && status.stdout.contains("held back until the branch moves"),
        "{}",
        status.stdout
    );
    // The notification says what was reverted and why.
    let events: Vec<serde_json::Value> = hook
        .wait_for_requests(2, std::time::Duration::from_secs(10))
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let told = &events[1];
    assert_eq!(told["event"], "reverted", "{told}");
    assert_eq!(told["commit"], bad.as_str());
    assert_eq!(told["previous_commit"], good.as_str());
    assert!(
        told["error"].as_str().unwrap().contains("health check"),
        "{told}"
    );

    let metrics = m.run(&["status", "--prometheus"]).stdout;
    assert!(metrics.contains("\ngitops_held_back 1\n"), "{metrics}");

    // Held back: the next passes run nothing and tell nothing new.
    for _ in 0..3 {
        let run = m.sync(&url, &[]).expect(1);
        assert!(
            run.error_line()
                .contains("held back until the branch moves"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(reasons(&m).len(), 3, "{:?}", reasons(&m));
    assert_eq!(m.state_json()["last_pass"]["outcome"], "reverted");
    assert_eq!(hook.requests().len(), 2);

    // A fixing commit applies, as a new commit.
    let fixed = up.remove(".gitops/health", "fix");
    m.sync(&url, &[]).expect(0);
    assert_eq!(
        reasons(&m).last().unwrap(),
        &format!("{fixed} apply {good}")
    );
    let state = m.state_json();
    assert_eq!(state["applied"]["commit"], fixed.as_str());
    assert!(state["pending"].is_null(), "{state}");
    assert_eq!(linked_commit(&m), fixed);
    let metrics = m.run(&["status", "--prometheus"]).stdout;
    assert!(metrics.contains("\ngitops_held_back 0\n"), "{metrics}");
}

#[test]
fn a_failing_entry_point_is_reverted_and_retry_reverted_tries_it_again() {
    let (up, _daemon, url) = served();
    let good = up.commit(&[("run.sh", REASONS_RUN_SH)], "good");
    let m = Machine::new();
    m.sync(&url, &REVERT).expect(0);
    let failing = format!("{REASONS_RUN_SH}exit 4\n");
    let bad = up.commit(&[("run.sh", failing.as_str())], "entry point fails");
    m.sync(&url, &REVERT).expect(1);
    assert_eq!(
        reasons(&m)[1..],
        [
            format!("{bad} apply {good}"),
            format!("{good} revert {bad}")
        ]
    );
    // Within --retry-reverted: held back.
    m.sync(&url, &["--on-failure", "revert", "--retry-reverted", "1h"])
        .expect(1);
    assert_eq!(reasons(&m).len(), 3);
    // Past it: tried again (a retry), failing, and reverted again; once per pass.
    m.sync(&url, &["--on-failure", "revert", "--retry-reverted", "0s"])
        .expect(1);
    assert_eq!(
        reasons(&m)[3..],
        [
            format!("{bad} retry {good}"),
            format!("{good} revert {bad}")
        ]
    );
    let state = m.state_json();
    assert_eq!(state["pending"]["attempts"], 2);
    assert_eq!(state["pending"]["outcome"], "reverted");
    // Without --on-failure revert, a held-back commit stays held back: the record, not the
    // policy of the day, says it was reverted.
    m.sync(&url, &[]).expect(1);
    assert_eq!(reasons(&m).len(), 5);
}

#[test]
fn a_revert_that_fails_too_is_revert_failed_and_never_loops() {
    let (up, _daemon, url) = served();
    up.commit(&[("run.sh", REASONS_RUN_SH)], "records its runs");
    let m = Machine::new();
    let health = up.commit_file_mode(
        ".gitops/health",
        MACHINE_HEALTH,
        0o755,
        "checks the machine",
    );
    m.sync(&url, &REVERT).expect(0);
    assert_eq!(m.applied().as_deref(), Some(health.as_str()));
    // Something breaks the machine, then a commit arrives: it fails its check, and so does
    // the revert.
    std::fs::write(m.out.join("broken"), "").unwrap();
    let bad = up.commit(&[("motd", "hello\n")], "any change");
    let run = m.sync(&url, &REVERT).expect(1);
    let line = run.error_line();
    assert!(
        line.contains(&format!("reverting to {} failed too", &health[..12])),
        "{line}"
    );
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "revert-failed");
    assert_eq!(state["pending"]["outcome"], "revert-failed");
    assert_eq!(state["applied"]["commit"], health.as_str());
    let ran = reasons(&m).len();
    assert_eq!(
        reasons(&m)[ran - 2..],
        [
            format!("{bad} apply {health}"),
            format!("{health} revert {bad}")
        ]
    );
    // Five more passes: nothing runs, the outcome stays, the exit code stays 1.
    for _ in 0..5 {
        m.sync(&url, &REVERT).expect(1);
    }
    assert_eq!(reasons(&m).len(), ran, "no loop: {:?}", reasons(&m));
    assert_eq!(m.state_json()["last_pass"]["outcome"], "revert-failed");
    let status = m.run(&["status"]);
    assert!(status.stdout.contains("revert failed"), "{}", status.stdout);
}

#[test]
fn a_first_apply_that_fails_has_nothing_to_revert_to_and_is_retried() {
    let (up, _daemon, url) = served();
    up.commit(&[("run.sh", "#!/bin/sh\nexit 1\n")], "fails from the start");
    let m = Machine::new();
    let run = m.sync(&url, &REVERT).expect(1);
    assert!(!run.stderr.contains("reverting"), "{}", run.stderr);
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "apply-failed");
    assert!(state["pending"]["outcome"].is_null(), "{state}");
    m.sync(&url, &REVERT).expect(1);
    assert_eq!(m.state_json()["pending"]["attempts"], 2);
}

#[test]
fn the_entry_point_learns_why_it_runs() {
    let (up, _daemon, url) = served();
    let first = up.commit(&[("run.sh", REASONS_RUN_SH)], "first");
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    m.sync(&url, &["--apply", "always"]).expect(0);
    assert_eq!(
        reasons(&m),
        [format!("{first} apply "), format!("{first} always {first}")]
    );
}

#[test]
fn a_named_health_check_the_reverted_to_commit_predates_does_not_fail_the_revert() {
    let (up, _daemon, url) = served();
    let good = up.commit(&[("run.sh", REASONS_RUN_SH)], "before the check existed");
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    // The operator names a check that the next commit brings; that commit fails it.
    let bad = up.commit_file_mode(
        "checks/web.sh",
        "#!/bin/sh\nexit 1\n",
        0o755,
        "adds a failing check",
    );
    let named = ["--on-failure", "revert", "--health-check", "checks/web.sh"];
    let run = m.sync(&url, &named).expect(1);
    assert!(
        run.stderr.contains(&format!(
            "the health check checks/web.sh is not in {}",
            &good[..12]
        )),
        "{}",
        run.stderr
    );
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "reverted", "{state}");
    assert_eq!(state["pending"]["commit"], bad.as_str());
    assert_eq!(linked_commit(&m), good);
    assert_eq!(reasons(&m).last().unwrap(), &format!("{good} revert {bad}"));
}
