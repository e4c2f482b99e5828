//! Suspend and resume attacked: what a pass still does while applies are suspended.

use std::os::unix::fs::PermissionsExt;

use time::OffsetDateTime;

use crate::harness::{served, Machine, Run};

/// `gitops ARGS` with the clock `offset` seconds ahead (the debug build's test seam).
fn later(m: &Machine, offset: i64, args: &[&str]) -> Run {
    let mut cmd = m.command();
    cmd.env("GITOPS_TEST_CLOCK_OFFSET", offset.to_string())
        .args(args);
    Run::of(&mut cmd)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The reboot command as a recorder (`$OUT/reboots`), and the guards a test machine cannot
/// meet deterministically turned off.
fn reboot_env(m: &Machine) -> String {
    let path = m.dir.path().join("reboot-recorder");
    std::fs::write(&path, "#!/bin/sh\necho reboot >> \"$OUT/reboots\"\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "GITOPS_REBOOT_COMMAND={}\nGITOPS_REBOOT_MIN_UPTIME=0\nGITOPS_REBOOT_REQUIRE_CLOCK_SYNC=false\n",
        path.display()
    )
}

fn reboots(m: &Machine) -> usize {
    std::fs::read_to_string(m.out.join("reboots"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_reboot_the_applied_commit_asks_for_waits_for_the_suspension_to_end() {
    let (up, _daemon, url) = served();
    let m = Machine::new();
    std::fs::write(&m.config, reboot_env(&m)).unwrap();
    // Due in an hour: scheduled when applied.
    let due = OffsetDateTime::now_utc() + time::Duration::hours(1);
    up.commit(
        &[(".gitops/reboot", &format!("after = {}\n", rfc3339(due)))],
        "Reboot into the new kernel in an hour",
    );
    m.sync(&url, &[]).expect(0);
    assert_eq!(m.state_json()["reboot"]["decision"], "scheduled");
    m.run(&["suspend", "--for", "2h", "--reason", "hands on the disks"])
        .expect(0);

    // 90 minutes on: the reboot is due, and the operator still has the machine.
    let sync = ["sync", "--repo-url", url.as_str()];
    later(&m, 90 * 60, &sync).expect(0);
    assert_eq!(reboots(&m), 0, "rebooted while suspended");
    let reboot = &m.state_json()["reboot"];
    assert_eq!(reboot["decision"], "blocked", "{reboot}");
    let reason = reboot["reason"].as_str().unwrap();
    assert!(
        reason.contains("applies are suspended by") && reason.contains("until"),
        "{reason}"
    );
    let plan = later(&m, 90 * 60, &["plan", "--repo-url", &url]).expect(0);
    assert!(
        plan.stdout.contains("reboot:      blocked until "),
        "{}",
        plan.stdout
    );

    // The first pass after its end reboots, once.
    for _ in 0..2 {
        later(&m, 3 * 3600, &sync).expect(0);
    }
    assert_eq!(reboots(&m), 1);
}

fn stamp(value: &serde_json::Value) -> OffsetDateTime {
    OffsetDateTime::parse(
        value.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

fn record(m: &Machine) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(m.state.join("suspended.json")).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

#[test]
fn a_suspension_recorded_to_last_for_centuries_ends_max_suspend_after_the_first_pass() {
    let (up, _daemon, m, url) = crate::harness::applied_machine();
    let first = m.applied().unwrap();
    // Written by hand, or by a `gitops suspend` whose clock was centuries ahead.
    let path = m.state.join("suspended.json");
    std::fs::write(
        &path,
        "{\"by\":\"alice\",\"at\":\"2026-01-01T00:00:00Z\",\"until\":\"2999-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    crate::harness::chmod(&path, 0o600);
    let second = up.commit(&[("a", "1\n")], "held back");
    let plan = m.run(&["plan", "--repo-url", &url]).expect(0);
    assert!(
        plan.stdout.contains(
            "more than --max-suspend 24h from now: the next pass shortens it to end 24h after that pass"
        ),
        "{}",
        plan.stdout
    );

    let run = m.sync(&url, &[]).expect(0);
    assert_eq!(m.state_json()["last_pass"]["outcome"], "suspended");
    assert!(
        run.stderr.contains(
            "was recorded to last until 2999-01-01T00:00:00Z, more than --max-suspend 24h from now"
        ),
        "{}",
        run.stderr
    );
    let until = stamp(&record(&m).unwrap()["until"]);
    let left = until - OffsetDateTime::now_utc();
    assert!(
        left <= time::Duration::hours(24) && left > time::Duration::hours(23),
        "{until}"
    );
    // Said once: the record now ends within the limit.
    let run = m.sync(&url, &[]).expect(0);
    assert!(!run.stderr.contains("recorded to last"), "{}", run.stderr);
    assert_eq!(m.applied().as_deref(), Some(first.as_str()));

    // A day later the suspension is over and the commit applies.
    later(&m, 24 * 3600 + 60, &["sync", "--repo-url", &url]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(second.as_str()));
    assert!(record(&m).is_none());
}
