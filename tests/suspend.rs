//! Suspend and resume: a suspension holds applies back until its expiry or `gitops resume`,
//! while passes still fetch and report; status, the metrics and the notifications say who,
//! until when and why; a record that is not what `gitops suspend` writes never holds a machine
//! back and never hangs or crashes anything.

use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;

use crate::harness::{applied_machine, served, wait_for, Machine, Run, RECORDING_RUN_SH};
use crate::receiver::Receiver;
use crate::support::Upstream;

/// `gitops ARGS` as `user` behind sudo.
fn as_user(m: &Machine, user: &str, args: &[&str]) -> Run {
    let mut cmd = m.command();
    cmd.env("SUDO_USER", user).args(args);
    Run::of(&mut cmd)
}

/// `gitops ARGS` with the clock `offset` seconds ahead (the debug build's test seam).
fn later(m: &Machine, offset: i64, args: &[&str]) -> Run {
    let mut cmd = m.command();
    cmd.env("GITOPS_TEST_CLOCK_OFFSET", offset.to_string())
        .args(args);
    Run::of(&mut cmd)
}

fn record_path(m: &Machine) -> std::path::PathBuf {
    m.state.join("suspended.json")
}

fn record(m: &Machine) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(record_path(m)).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

fn stamp(value: &serde_json::Value) -> OffsetDateTime {
    OffsetDateTime::parse(
        value.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

/// A new commit of the recording entry point.
fn bump(up: &Upstream, n: u32) -> String {
    up.commit(
        &[("run.sh", &format!("{RECORDING_RUN_SH}# {n}\n"))],
        &format!("change {n}"),
    )
}

fn outcome(m: &Machine) -> String {
    m.state_json()["last_pass"]["outcome"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_suspension_of_two_seconds_holds_a_new_commit_back_then_the_first_pass_after_it_applies() {
    let (up, _daemon, m, url) = applied_machine();
    let first = m.applied().unwrap();
    let second = bump(&up, 2);
    let run = as_user(
        &m,
        "alice",
        &["suspend", "--for", "2s", "--reason", "db migration"],
    )
    .expect(0);
    assert!(
        run.stdout
            .contains("applies suspended by alice for 2s, until"),
        "{}",
        run.stdout
    );
    let held = m.sync(&url, &[]).expect(0);
    assert_eq!(outcome(&m), "suspended");
    assert_eq!(
        m.state_json()["last_pass"]["remote_commit"],
        second.as_str()
    );
    assert_eq!(m.applied().as_deref(), Some(first.as_str()));
    assert_eq!(m.runs().len(), 1, "the entry point did not run");
    assert!(m.linked_tree().ends_with(&first), "the link did not move");
    assert!(
        !m.trees().contains(&second),
        "nothing of it was written out"
    );
    let said: Vec<&str> = held
        .stderr
        .lines()
        .filter(|l| l.contains("suspended"))
        .collect();
    assert_eq!(said.len(), 1, "{}", held.stderr);
    for part in ["alice until ", "db migration", &second[..12], "new commit"] {
        assert!(said[0].contains(part), "{part} in {}", said[0]);
    }

    let status = m.run(&["status"]).expect(0);
    for line in [
        "suspended:    applies held back by alice, since ",
        "  reason:     db migration\n",
        &format!("  held back:  {} \"change 2\"\n", &second[..12]),
        "last pass:    suspended, ",
    ] {
        assert!(status.stdout.contains(line), "{line} in\n{}", status.stdout);
    }
    assert!(
        status.stdout.starts_with("suspended:"),
        "shown first: {}",
        status.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&m.run(&["status", "--json"]).expect(0).stdout).unwrap();
    assert_eq!(json["suspension"]["by"], "alice");
    assert_eq!(json["suspension"]["active"], true);
    assert_eq!(json["suspension"]["held"]["commit"], second.as_str());

    // The first pass after the expiry ends it and applies.
    let until = stamp(&record(&m).unwrap()["until"]);
    let left = until - OffsetDateTime::now_utc();
    if left.is_positive() {
        std::thread::sleep(Duration::try_from(left).unwrap() + Duration::from_millis(50));
    }
    let run = m.sync(&url, &[]).expect(0);
    assert!(
        run.stderr.contains("the suspension by alice ended at"),
        "{}",
        run.stderr
    );
    assert_eq!(m.applied().as_deref(), Some(second.as_str()));
    assert_eq!(m.runs().len(), 2);
    assert!(record(&m).is_none(), "the expired record is removed");
    let status = m.run(&["status"]).expect(0);
    assert!(!status.stdout.contains("suspended"), "{}", status.stdout);
}

#[test]
fn a_suspension_without_for_ends_at_max_suspend() {
    let (up, _daemon, m, url) = applied_machine();
    m.run(&["suspend"]).expect(0);
    let r = record(&m).unwrap();
    assert_eq!(
        (stamp(&r["until"]) - stamp(&r["at"])).whole_seconds(),
        24 * 3600,
        "{r}"
    );
    let second = bump(&up, 2);
    let day = 24 * 3600;
    later(&m, day - 60, &["sync", "--repo-url", &url]).expect(0);
    assert_eq!(outcome(&m), "suspended");
    assert_eq!(m.runs().len(), 1);
    let run = later(&m, day + 1, &["sync", "--repo-url", &url]).expect(0);
    assert!(run.stderr.contains("ended at"), "{}", run.stderr);
    assert_eq!(m.applied().as_deref(), Some(second.as_str()));
    assert!(record(&m).is_none());

    // --max-suspend from the env file: the default length and the longest --for.
    std::fs::write(&m.config, "GITOPS_MAX_SUSPEND=1h\n").unwrap();
    m.run(&["suspend"]).expect(0);
    let r = record(&m).unwrap();
    assert_eq!((stamp(&r["until"]) - stamp(&r["at"])).whole_seconds(), 3600);
    let run = m.run(&["suspend", "--for", "2h"]).expect(2);
    assert!(
        run.error_line()
            .contains("--for 2h is longer than --max-suspend 60min"),
        "{}",
        run.stderr
    );
    assert_eq!(record(&m).unwrap(), r, "the suspension in force stays");
}

#[test]
fn resume_ends_a_suspension_at_once_and_nothing_new_stays_up_to_date() {
    let (up, _daemon, m, url) = applied_machine();
    let first = m.applied().unwrap();
    as_user(&m, "alice", &["suspend", "--for", "1h"]).expect(0);
    // Nothing to apply: the pass goes on as ever.
    m.sync(&url, &[]).expect(0);
    assert_eq!(outcome(&m), "up-to-date");
    // --apply always runs nothing either while suspended.
    m.sync(&url, &["--apply", "always"]).expect(0);
    assert_eq!(outcome(&m), "suspended");
    assert_eq!(m.runs().len(), 1);
    let second = bump(&up, 2);
    m.sync(&url, &[]).expect(0);
    assert_eq!(outcome(&m), "suspended");
    assert_eq!(m.applied().as_deref(), Some(first.as_str()));

    // Suspending again replaces the record, and says so.
    let run = as_user(&m, "carol", &["suspend", "--for", "2h"]).expect(0);
    assert!(
        run.stdout
            .contains("it replaces the suspension by alice until"),
        "{}",
        run.stdout
    );
    assert_eq!(record(&m).unwrap()["by"], "carol");

    let run = as_user(&m, "bob", &["resume"]).expect(0);
    assert!(
        run.stdout
            .contains("applies resumed by bob: the suspension by carol until"),
        "{}",
        run.stdout
    );
    assert!(record(&m).is_none());
    m.sync(&url, &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(second.as_str()));
    let run = m.run(&["resume"]).expect(0);
    assert!(
        run.stdout
            .contains("applies are not suspended: nothing to resume"),
        "{}",
        run.stdout
    );
    // On a machine where no pass ever ran, resume creates nothing.
    let fresh = Machine::new();
    fresh.run(&["resume"]).expect(0);
    assert!(!fresh.state.exists());
}

/// A served repository and a machine that tells `hook` of everything, in json.
fn notifying(hook: &str) -> (Upstream, crate::support::GitDaemon, Machine, String) {
    let (up, daemon, url) = served();
    let m = Machine::new();
    let file = m.dir.path().join("notify-url");
    std::fs::write(&file, format!("{hook}\n")).unwrap();
    crate::harness::chmod(&file, 0o600);
    std::fs::write(
        &m.config,
        format!(
            "GITOPS_NOTIFY_URL_FILE={}\nGITOPS_NOTIFY_FORMAT=json\n",
            file.display()
        ),
    )
    .unwrap();
    (up, daemon, m, url)
}

fn events(r: &Receiver) -> Vec<serde_json::Value> {
    r.requests()
        .iter()
        .map(|req| serde_json::from_slice(&req.body).unwrap())
        .collect()
}

#[test]
fn a_suspension_is_told_when_it_starts_blocks_a_commit_once_and_ends() {
    let r = Receiver::start(vec![]);
    let (up, _daemon, m, url) = notifying(&r.url("/hook"));
    m.sync(&url, &[]).expect(0);
    assert_eq!(events(&r).len(), 1);

    // Told by the command itself, at once.
    as_user(
        &m,
        "alice",
        &["suspend", "--for", "1h", "--reason", "change freeze"],
    )
    .expect(0);
    let got = events(&r);
    assert_eq!(got.len(), 2, "{got:?}");
    let until = record(&m).unwrap()["until"].as_str().unwrap().to_string();
    assert_eq!(got[1]["event"], "suspended");
    assert_eq!(got[1]["outcome"], "suspended");
    let said = got[1]["error"].as_str().unwrap();
    for part in ["alice", &until, "change freeze"] {
        assert!(said.contains(part), "{part} in {said}");
    }

    // A new commit: told once, however many passes hold it back.
    let second = bump(&up, 2);
    for _ in 0..3 {
        m.sync(&url, &[]).expect(0);
    }
    let got = events(&r);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[2]["event"], "suspend-blocked");
    assert_eq!(got[2]["commit"], second.as_str());
    assert_eq!(got[2]["subject"], "change 2");
    let said = got[2]["error"].as_str().unwrap();
    for part in ["alice", &until, "change freeze", &second[..12]] {
        assert!(said.contains(part), "{part} in {said}");
    }
    // Another one is news again.
    let third = bump(&up, 3);
    m.sync(&url, &[]).expect(0);
    m.sync(&url, &[]).expect(0);
    let got = events(&r);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[3]["event"], "suspend-blocked");
    assert_eq!(got[3]["commit"], third.as_str());

    // Its end, by resume, told by the command; then the apply, by the pass.
    as_user(&m, "bob", &["resume"]).expect(0);
    let got = events(&r);
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[4]["event"], "resumed");
    let said = got[4]["error"].as_str().unwrap();
    assert!(said.contains("bob") && said.contains("alice"), "{said}");
    m.sync(&url, &[]).expect(0);
    let got = events(&r);
    assert_eq!(got.len(), 6);
    assert_eq!(got[5]["event"], "applied");
    assert_eq!(got[5]["commit"], third.as_str());

    // Its end by expiry, told by the pass that found it, before that pass's apply.
    m.run(&["suspend", "--for", "1h"]).expect(0);
    let fourth = bump(&up, 4);
    m.sync(&url, &[]).expect(0);
    later(&m, 3601, &["sync", "--repo-url", &url]).expect(0);
    let got = events(&r);
    let kinds: Vec<&str> = got.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds[6..],
        ["suspended", "suspend-blocked", "resumed", "applied"],
        "{got:?}"
    );
    assert!(got[8]["error"].as_str().unwrap().contains("ended at"));
    assert_eq!(got[9]["commit"], fourth.as_str());
    assert!(crate::harness::names(&m.state.join("outbox")).is_empty());
}

#[test]
fn a_suspension_the_command_could_not_tell_waits_in_the_outbox_for_the_next_pass() {
    use crate::receiver::Reply;
    let r = Receiver::start(vec![Reply::status(204), Reply::status(503)]);
    let (_up, _daemon, m, url) = notifying(&r.url("/hook"));
    m.sync(&url, &[]).expect(0);
    as_user(&m, "alice", &["suspend", "--for", "1h"]).expect(0);
    let got = events(&r);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["event"], "suspended");
    let outbox = m.state.join("outbox");
    assert_eq!(crate::harness::names(&outbox).len(), 1, "it waits");
    m.sync(&url, &[]).expect(0);
    let got = events(&r);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[2]["event"], "suspended");
    assert_eq!(got[2]["id"], got[1]["id"], "the same event, sent again");
    assert!(crate::harness::names(&outbox).is_empty());
}

#[test]
fn the_metrics_say_whether_applies_are_suspended_and_until_when() {
    let (up, _daemon, m, url) = applied_machine();
    let dir = m.dir.path().join("metrics");
    std::fs::create_dir(&dir).unwrap();
    let metrics = || std::fs::read_to_string(dir.join("gitops.prom")).unwrap();
    let dir_arg = dir.to_str().unwrap();
    m.sync(&url, &["--metrics-dir", dir_arg]).expect(0);
    assert!(
        metrics().contains("\ngitops_suspended 0\n"),
        "{}",
        metrics()
    );
    assert!(!metrics().contains("gitops_suspended_until"));

    m.run(&["suspend", "--for", "1h"]).expect(0);
    bump(&up, 2);
    m.sync(&url, &["--metrics-dir", dir_arg]).expect(0);
    let until = stamp(&record(&m).unwrap()["until"]).unix_timestamp();
    let text = metrics();
    assert!(text.contains("\ngitops_suspended 1\n"), "{text}");
    assert!(
        text.contains(&format!(
            "\ngitops_suspended_until_timestamp_seconds {until}\n"
        )),
        "{text}"
    );
    assert!(text.contains("gitops_passes_total{outcome=\"suspended\"} 1"));
    let printed = m.run(&["status", "--prometheus"]).expect(0);
    assert_eq!(printed.stdout, text, "status --prometheus prints the same");

    m.run(&["resume"]).expect(0);
    m.sync(&url, &["--metrics-dir", dir_arg]).expect(0);
    assert!(metrics().contains("\ngitops_suspended 0\n"));
    assert!(!metrics().contains("gitops_suspended_until"));
}

#[test]
fn suspend_waits_for_a_running_pass_up_to_the_lock_timeout() {
    let up = Upstream::new();
    up.commit(
        &[("run.sh", "#!/bin/sh\ntouch \"$OUT/started\"\nsleep 3\n")],
        "slow",
    );
    let daemon = crate::support::GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    let m = Machine::new();
    let pass = m.spawn(&["sync", "--repo-url", &url]);
    wait_for(&m.out.join("started"));
    let run = m.run(&["suspend", "--lock-timeout", "1s"]).expect(75);
    let line = run.error_line();
    assert!(
        line.contains("applies are not suspended") && line.contains("--lock-timeout"),
        "{line}"
    );
    assert!(record(&m).is_none());
    m.run(&["suspend", "--lock-timeout", "30s"]).expect(0);
    Run::within(pass, Duration::from_secs(30)).expect(0);
    assert!(record(&m).is_some());
}

/// Put something other than a record where suspended.json belongs.
fn plant(m: &Machine, kind: &str) {
    let path = record_path(m);
    match kind {
        "garbage" => std::fs::write(&path, "{\"by\": \"mallory\", \"until\": tru").unwrap(),
        "huge" => std::fs::write(&path, vec![b' '; 200_000]).unwrap(),
        // A valid record elsewhere: never followed, so never in force, never written through.
        "symlink" => {
            let target = m.dir.path().join("elsewhere.json");
            std::fs::write(
                &target,
                "{\"by\":\"mallory\",\"at\":\"2026-01-01T00:00:00Z\",\"until\":\"2999-01-01T00:00:00Z\"}",
            )
            .unwrap();
            std::os::unix::fs::symlink(&target, &path).unwrap();
        }
        "fifo" => {
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap()
        }
        "directory" => {
            std::fs::create_dir(&path).unwrap();
            std::fs::write(path.join("x"), "").unwrap();
        }
        _ => unreachable!(),
    }
}

fn symlink_target_intact(m: &Machine) {
    let target = m.dir.path().join("elsewhere.json");
    if target.exists() {
        let text = std::fs::read_to_string(&target).unwrap();
        assert!(text.contains("mallory"), "{text}");
    }
}

fn gone(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_err()
}

#[test]
fn a_record_that_is_not_one_never_holds_a_machine_back_nor_hangs_anything() {
    for kind in ["garbage", "huge", "symlink", "fifo", "directory"] {
        let (up, _daemon, m, url) = applied_machine();
        plant(&m, kind);
        // status: at once, one line, healthy still.
        let status = Run::within(m.spawn(&["status"]), Duration::from_secs(20)).expect(0);
        let lines: Vec<&str> = status
            .stdout
            .lines()
            .filter(|l| l.contains("suspended.json"))
            .collect();
        assert_eq!(lines.len(), 1, "{kind}: {}", status.stdout);
        assert!(lines[0].contains("not in effect"), "{kind}: {}", lines[0]);
        let json = Run::within(m.spawn(&["status", "--json"]), Duration::from_secs(20)).expect(0);
        let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert!(json["suspension"]["error"].is_string(), "{kind}: {json}");
        let printed = m.run(&["status", "--prometheus"]).expect(0);
        assert!(printed.stdout.contains("\ngitops_suspended 0\n"), "{kind}");

        // A pass: one warning, and the commit applies.
        let second = bump(&up, 2);
        let run = Run::within(
            m.spawn(&["sync", "--repo-url", &url]),
            Duration::from_secs(60),
        )
        .expect(0);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        let warned: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains("suspended.json"))
            .collect();
        assert_eq!(warned.len(), 1, "{kind}: {}", run.stderr);
        assert!(warned[0].starts_with("gitops: warning: "), "{}", warned[0]);
        assert!(
            warned[0].contains("applies are not suspended"),
            "{}",
            warned[0]
        );
        assert_eq!(m.applied().as_deref(), Some(second.as_str()), "{kind}");
        symlink_target_intact(&m);
        if kind == "directory" {
            // Not ours to empty: the pass says so every time, and applies.
            assert!(!gone(&record_path(&m)));
            let run = m.run(&["resume"]).expect(2);
            assert!(run.error_line().contains("rm -r"), "{}", run.stderr);
            let run = m.run(&["suspend"]).expect(2);
            assert!(run.error_line().contains("rm -r"), "{}", run.stderr);
            continue;
        }
        assert!(gone(&record_path(&m)), "{kind}: removed by the pass");

        // resume removes it; suspend replaces it with a record of its own.
        plant(&m, kind);
        let run = Run::within(m.spawn(&["resume"]), Duration::from_secs(20)).expect(0);
        assert!(run.stdout.contains("removed it"), "{kind}: {}", run.stdout);
        assert!(gone(&record_path(&m)), "{kind}");
        plant(&m, kind);
        let run = Run::within(
            m.spawn(&["suspend", "--for", "1h"]),
            Duration::from_secs(20),
        )
        .expect(0);
        assert!(
            run.stdout
                .contains("it replaces a record that could not be read"),
            "{kind}: {}",
            run.stdout
        );
        assert!(std::fs::symlink_metadata(record_path(&m))
            .unwrap()
            .is_file());
        assert_ne!(record(&m).unwrap()["by"], "mallory");
        symlink_target_intact(&m);
    }
}

#[test]
fn suspend_options_that_make_no_sense_are_usage_errors() {
    let (_up, _daemon, m, _url) = applied_machine();
    let huge = "x".repeat(100_000);
    for (args, says) in [
        (
            &["suspend", "--reason", huge.as_str()][..],
            "--reason is 100000 characters long; keep it to 500",
        ),
        (
            &["suspend", "--for", "0"],
            "--for 0s would end the suspension as it begins",
        ),
        (
            &["suspend", "--for", "500ms"],
            "--for 500ms would end the suspension as it begins",
        ),
        (
            &["suspend", "--for", "25h"],
            "--for 25h is longer than --max-suspend 24h",
        ),
        (&["suspend", "--for", "soon"], "--for"),
        (
            &["suspend", "--max-suspend", "0"],
            "--max-suspend 0s is shorter than a second",
        ),
    ] {
        let run = m.run(args).expect(2);
        let line = run.error_line();
        assert!(line.contains(says), "{says} in {line}");
        assert!(line.len() < 600, "{line}");
        assert!(record(&m).is_none());
    }
    // Control characters in a reason are written out wherever it shows.
    m.run(&["suspend", "--reason", "ok\x1b[2J\rnot ok"])
        .expect(0);
    let status = m.run(&["status"]).expect(0);
    assert!(!status.stdout.contains('\x1b'), "{:?}", status.stdout);
    assert!(
        status.stdout.contains("ok\\x1b[2J\\x0dnot ok"),
        "{}",
        status.stdout
    );
}

#[test]
fn suspend_and_resume_take_their_own_options_and_the_pass_s_state_lock_and_notifications() {
    let m = Machine::new();
    let options = |sub: &str| -> Vec<String> {
        let help = m.run(&[sub, "--help"]).expect(0).stdout;
        help.lines()
            .filter(|l| l.trim_start().starts_with("--"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    let shared = [
        "--config",
        "--state-dir",
        "--lock-timeout",
        "--notify-url",
        "--notify-url-file",
        "--notify-format",
        "--notify-secret-file",
    ];
    let suspend = options("suspend");
    for option in shared.iter().chain(&["--for", "--reason", "--max-suspend"]) {
        assert!(suspend.iter().any(|o| o == option), "{option}: {suspend:?}");
    }
    let resume = options("resume");
    for option in shared {
        assert!(resume.iter().any(|o| o == option), "{option}: {resume:?}");
    }
    assert!(
        !resume.iter().any(|o| o == "--for" || o == "--repo-url"),
        "{resume:?}"
    );
}
