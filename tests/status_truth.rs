//! `gitops status` never says healthy while passes fail: configuration errors and killed passes
//! are recorded, an old last pass is a dead timer, a fresh machine names where it looked.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{applied_machine, wait_for, Machine};

fn spawn_sync(m: &Machine, url: &str) -> Child {
    let mut cmd = m.command();
    cmd.args(["sync", "--repo-url", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().unwrap()
}

/// Wait until `pid` has exited (gone, or a zombie: its files, and the locks on them, closed),
/// failing the test after 10 s.
fn gone(pid: nix::unistd::Pid) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if matches!(state, None | Some("Z")) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "pid {pid} still runs");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn pid_in(path: &std::path::Path) -> nix::unistd::Pid {
    let pid: i32 = std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::unistd::Pid::from_raw(pid)
}

#[test]
fn a_configuration_error_is_recorded_and_status_fails() {
    let (_up, _daemon, m, url) = applied_machine();
    let applied = m.applied();
    let missing = m.dir.path().join("no_known_hosts");
    let run = m
        .sync(&url, &["--known-hosts", missing.to_str().unwrap()])
        .expect(2);
    let line = run.error_line();
    assert!(line.contains("known_hosts"), "{line}");

    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "config-error");
    assert_eq!(
        state["last_pass"]["error"].as_str(),
        line.strip_prefix("gitops: error: ")
    );
    assert_eq!(state["consecutive_failures"], 1);
    assert_eq!(m.applied(), applied, "what is applied stays applied");

    let status = m.run(&["status"]).expect(1);
    assert!(
        status.stdout.contains("last pass:    config-error"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("no_known_hosts"),
        "{}",
        status.stdout
    );

    // A deploy key others can read: the same, and the failures add up.
    let key = m.dir.path().join("deploy_key");
    std::fs::write(&key, "not really a key\n").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    m.sync(&url, &["--ssh-key", key.to_str().unwrap()])
        .expect(2);
    let state = m.state_json();
    assert!(
        state["last_pass"]["error"]
            .as_str()
            .unwrap()
            .contains("chmod 600"),
        "{state}"
    );
    assert_eq!(state["consecutive_failures"], 2);

    m.sync(&url, &[]).expect(0);
    m.run(&["status"]).expect(0);
    assert_eq!(m.state_json()["consecutive_failures"], 0);
}

#[test]
fn a_bad_value_in_the_env_file_is_recorded() {
    let (_up, _daemon, m, url) = applied_machine();
    std::fs::write(&m.config, "GITOPS_APPLY_TIMEOUT=soon\n").unwrap();
    let line = m.sync(&url, &[]).expect(2).error_line();
    assert!(line.contains("soon"), "{line}");
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "config-error");
    assert!(
        state["last_pass"]["error"]
            .as_str()
            .unwrap()
            .contains("soon"),
        "{state}"
    );
    // status reads only its own settings from the env file: it reports the failed pass.
    let status = m.run(&["status"]).expect(1);
    assert!(status.stdout.contains("config-error"), "{}", status.stdout);

    // The state directory the env file names is the one recorded into.
    let elsewhere = m.dir.path().join("other-state");
    // Only into a state directory that exists: a config error never creates one.
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&elsewhere)
        .unwrap();
    std::fs::write(
        &m.config,
        format!(
            "GITOPS_STATE_DIR={}\nGITOPS_APPLY_TIMEOUT=soon\n",
            elsewhere.display()
        ),
    )
    .unwrap();
    let mut cmd = m.command();
    cmd.env_remove("GITOPS_STATE_DIR")
        .args(["sync", "--repo-url", &url]);
    crate::harness::Run::of(&mut cmd).expect(2);
    let recorded = std::fs::read_to_string(elsewhere.join("state.json")).unwrap();
    assert!(recorded.contains("config-error"), "{recorded}");
}

#[test]
fn a_configuration_error_during_a_running_pass_waits_for_nothing_and_records_nothing() {
    let (up, _daemon, m, url) = applied_machine();
    let blocking =
        "#!/bin/sh\ntouch \"$OUT/started\"\nwhile [ ! -e \"$OUT/release\" ]; do sleep 0.05; done\n";
    let second = up.commit(&[("run.sh", blocking)], "blocks");
    let mut first = spawn_sync(&m, &url);
    wait_for(&m.out.join("started"));

    let during = m.run(&["status"]);
    assert!(
        during.stdout.contains(&format!(
            "running:      a pass is applying {}",
            &second[..12]
        )),
        "{}",
        during.stdout
    );
    assert!(
        !during.stdout.contains("did not finish"),
        "{}",
        during.stdout
    );
    during.expect(0);

    let before = m.state_bytes();
    let started = Instant::now();
    let missing = m.dir.path().join("no_known_hosts");
    m.sync(&url, &["--known-hosts", missing.to_str().unwrap()])
        .expect(2);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it waited for the lock"
    );
    assert_eq!(
        m.state_bytes(),
        before,
        "the running pass records; this one does not"
    );

    std::fs::write(m.out.join("release"), "").unwrap();
    assert!(first.wait().unwrap().success());
    assert_eq!(m.state_json()["last_pass"]["outcome"], "applied");
    assert!(m.state_json().get("in_progress").is_none());
}

#[test]
fn a_pass_killed_while_applying_is_reported_then_retried() {
    let (up, _daemon, m, url) = applied_machine();
    let dies_once = "#!/bin/sh\nif [ ! -e \"$OUT/killed-once\" ]; then touch \"$OUT/killed-once\"; echo $$ > \"$OUT/pid\"; touch \"$OUT/started\"; exec sleep 300; fi\necho \"$GITOPS_COMMIT\" >> \"$OUT/runs\"\n";
    let second = up.commit(&[("run.sh", dies_once)], "dies the first time");
    let mut gitops = spawn_sync(&m, &url);
    wait_for(&m.out.join("started"));
    let recorded = m.state_json();
    assert_eq!(recorded["in_progress"]["commit"], second.as_str());
    assert_eq!(recorded["in_progress"]["pid"], gitops.id());

    // kill -9 of gitops alone, as the OOM killer would; then the orphaned entry point too.
    gitops.kill().unwrap();
    gitops.wait().unwrap();
    let orphan = pid_in(&m.out.join("pid"));
    nix::sys::signal::kill(orphan, nix::sys::signal::Signal::SIGKILL).unwrap();
    // It holds the pass lock until the kernel has closed its files, which on a loaded machine
    // is not at once: status would rightly say it still holds it.
    gone(orphan);

    let status = m.run(&["status"]).expect(1);
    let expected = format!(
        "the pass applying {} started at {} did not finish: killed or crashed",
        &second[..12],
        recorded["in_progress"]["started_at"].as_str().unwrap()
    );
    assert!(status.stdout.contains(&expected), "{}", status.stdout);
    assert!(!status.stdout.contains("running:"), "{}", status.stdout);
    assert!(m
        .run(&["status", "--json"])
        .expect(1)
        .stdout
        .contains("in_progress"));

    // A pass that cannot even fetch still turns the unfinished one into a pending attempt.
    let unreachable = format!("git://127.0.0.1:{}/config.git", crate::support::free_port());
    m.sync(&unreachable, &[]).expect(3);
    let state = m.state_json();
    assert!(state.get("in_progress").is_none(), "{state}");
    assert_eq!(state["pending"]["commit"], second.as_str());
    assert_eq!(state["pending"]["attempts"], 1);
    assert_eq!(state["pending"]["last_error"], expected.as_str());
    let status = m.run(&["status"]).expect(1);
    assert!(status.stdout.contains(&expected), "{}", status.stdout);

    let retry = m.sync(&url, &[]).expect(0);
    assert!(
        retry.stderr.contains("retry, attempt 2"),
        "{}",
        retry.stderr
    );
    assert_eq!(m.applied().as_deref(), Some(second.as_str()));
    assert!(m.state_json().get("in_progress").is_none());
    m.run(&["status"]).expect(0);
}

#[test]
fn a_killed_pass_counts_as_a_failed_attempt_of_its_commit() {
    let (up, _daemon, m, url) = applied_machine();
    let fails = "#!/bin/sh\necho \"$GITOPS_COMMIT\" >> \"$OUT/runs\"\nexit 3\n";
    let second = up.commit(&[("run.sh", fails)], "fails");
    m.sync(&url, &[]).expect(1);
    // What a pass killed during its second attempt leaves behind.
    let path = m.state.join("state.json");
    let mut state = m.state_json();
    state["in_progress"] = serde_json::json!({
        "commit": second, "started_at": "2026-01-01T00:00:00Z", "pid": 1
    });
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();

    let run = m.sync(&url, &[]).expect(1);
    assert!(run.stderr.contains("attempt 3"), "{}", run.stderr);
    let state = m.state_json();
    assert_eq!(state["pending"]["attempts"], 3);
    assert_eq!(state["consecutive_failures"], 3);
}

#[test]
fn status_fails_when_the_last_pass_is_older_than_max_age() {
    let (_up, _daemon, m, _url) = applied_machine();
    m.run(&["status"]).expect(0);
    let path = m.state.join("state.json");
    let mut state = m.state_json();
    let three_hours_ago = time::OffsetDateTime::now_utc() - time::Duration::minutes(185);
    let stamp = three_hours_ago
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    state["last_pass"]["finished_at"] = stamp.into();
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();

    let old = m.run(&["status"]).expect(1);
    assert!(
        old.stdout
            .contains("unhealthy:    no pass for 3h 5min: is gitops.timer running?"),
        "{}",
        old.stdout
    );
    m.run(&["status", "--max-age", "4h"]).expect(0);
    m.run(&["status", "--max-age", "0"]).expect(0);
    let mut cmd = m.command();
    cmd.env("GITOPS_STATUS_MAX_AGE", "0").arg("status");
    crate::harness::Run::of(&mut cmd).expect(0);
    let mut cmd = m.command();
    cmd.env("GITOPS_STATUS_MAX_AGE", "2h").arg("status");
    crate::harness::Run::of(&mut cmd).expect(1);
    let line = m
        .run(&["status", "--max-age", "soon"])
        .expect(2)
        .error_line();
    assert!(line.contains("--max-age"), "{line}");
}

#[test]
fn status_with_nothing_recorded_names_the_state_directory() {
    let m = Machine::new();
    let run = m.run(&["status"]).expect(1);
    assert!(
        run.stdout.contains(m.state.to_str().unwrap()),
        "{}",
        run.stdout
    );
    assert!(!m.state.exists(), "status created nothing");
}

#[test]
fn status_shows_the_pending_subject_and_its_error_once() {
    let (up, _daemon, m, url) = applied_machine();
    let fails = "#!/bin/sh\nexit 3\n";
    let second = up.commit(&[("run.sh", fails)], "Break the motd");
    m.sync(&url, &[]).expect(1);
    assert_eq!(m.state_json()["pending"]["subject"], "Break the motd");
    let status = m.run(&["status"]).expect(1);
    assert!(
        status.stdout.contains(&format!(
            "pending:      {} \"Break the motd\" after 1 failed attempt",
            &second[..12]
        )),
        "{}",
        status.stdout
    );
    let error = m.state_json()["pending"]["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        status.stdout.matches(&error).count(),
        1,
        "{}",
        status.stdout
    );
}
