//! No process of a pass outlives it unseen: an entry point left running by a killed gitops
//! keeps the lock, and no ssh of a fetch is left behind.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::Machine;
use crate::support::Upstream;

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An entry point that counts its runs, then waits for `$OUT/release` (or for the test's
/// directory to go away: a failed test must not leave it running).
const WAITING_RUN_SH: &str = "#!/bin/sh\necho \"$GITOPS_COMMIT\" >> \"$OUT/runs\"\nwhile [ ! -e \"$OUT/release\" ] && [ -d \"$OUT\" ]; do sleep 0.05; done\n";

#[test]
fn an_entry_point_left_running_by_a_killed_pass_keeps_the_next_pass_out() {
    let up = Upstream::new();
    up.commit(&[("run.sh", WAITING_RUN_SH)], "init");
    let m = Machine::new();
    let url = up.file_url();
    let mut first = m.command();
    first
        .args(["sync", "--repo-url", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut first = first.spawn().unwrap();
    wait_until("the entry point starts", || m.runs().len() == 1);
    // What the OOM killer, or a kill -9 outside any cgroup, does.
    first.kill().unwrap();
    first.wait().unwrap();

    // Without the lock held, this pass would start a second entry point: bounded, so that
    // shows as a failure rather than a hang.
    let run = m
        .sync(&url, &["--lock-timeout", "1s", "--apply-timeout", "2s"])
        .expect(75);
    let line = run.error_line();
    assert!(
        line.contains("left running by a gitops pass that was killed") && line.contains("(run.sh)"),
        "the holder is named: {line}"
    );
    assert!(line.contains("--lock-timeout"), "{line}");
    assert_eq!(m.runs().len(), 1, "the entry point ran exactly once");

    std::fs::write(m.out.join("release"), "").unwrap();
    // The orphan sees the release within 50 ms; the waiting pass then gets the lock.
    m.sync(&url, &["--lock-timeout", "10s"]).expect(0);
    assert_eq!(
        m.runs().len(),
        2,
        "the interrupted apply was run again, after the first"
    );
}

#[test]
fn a_daemon_the_entry_point_leaves_behind_does_not_hold_the_lock() {
    let up = Upstream::new();
    let daemon = "#!/bin/sh\necho run >> \"$OUT/runs\"\nsleep 60 >/dev/null 2>&1 &\necho $! > \"$OUT/daemon\"\n";
    up.commit(&[("run.sh", daemon)], "init");
    let m = Machine::new();
    let url = up.file_url();
    m.sync(&url, &[]).expect(0);
    let pid: i32 = std::fs::read_to_string(m.out.join("daemon"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the daemon runs"
    );
    up.commit(&[("second", "")], "second");
    let run = m.sync(&url, &["--lock-timeout", "1s"]);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    run.expect(0);
    assert_eq!(m.runs().len(), 2);
}
