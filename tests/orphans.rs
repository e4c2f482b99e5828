//! No process of a pass outlives it unseen: an entry point left running by a killed gitops
//! keeps the lock, and no ssh of a fetch is left behind.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::Machine;
use crate::support::{Sshd, Upstream};

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
    // What the OOM killer, or a kill -9 outside any cgroup, does. Not reaped yet: the killed
    // pass is a zombie that still shows as gitops, as under an init that reaps late.
    first.kill().unwrap();

    // Without the lock held, this pass would start a second entry point: bounded, so that
    // shows as a failure rather than a hang.
    let run = m
        .sync(&url, &["--lock-timeout", "1s", "--apply-timeout", "2s"])
        .expect(75);
    let line = run.error_line();
    assert!(
        line.contains("a program other than a gitops pass, for instance the entry point of a pass that was killed")
            && line.contains("(run.sh)"),
        "the holder is named: {line}"
    );
    assert!(line.contains("--lock-timeout"), "{line}");
    assert_eq!(m.runs().len(), 1, "the entry point ran exactly once");
    first.wait().unwrap();

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
    // Both daemons, the first pass's and the second's.
    let second: i32 = std::fs::read_to_string(m.out.join("daemon"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for daemon in [pid, second] {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(daemon),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    run.expect(0);
    assert_eq!(m.runs().len(), 2);
}

/// Processes whose command line mentions `needle` (the test's own key path, so other tests'
/// ssh processes never count).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

/// Let the deploy key in with a forced `command` (sshd re-reads authorized_keys per login).
fn authorize(sshd: &Sshd, command: &str) {
    let authorized = sshd.key().with_file_name("authorized_keys");
    let public = std::fs::read_to_string(sshd.key().with_extension("pub")).unwrap();
    std::fs::write(&authorized, format!("command=\"{command}\" {public}")).unwrap();
}

#[test]
fn no_ssh_outlives_an_ssh_pass() {
    let up = Upstream::new();
    up.commit(&[("run.sh", crate::harness::RECORDING_RUN_SH)], "init");
    let sshd = Sshd::start();
    // A server slow to close the session after upload-pack is done: an ssh that nobody waits
    // for is then still running when the pass has ended.
    authorize(&sshd, "eval \\\"$SSH_ORIGINAL_COMMAND\\\"; sleep 2");
    let url = sshd.url(&up.bare());
    let key = sshd.key().display().to_string();
    let known = sshd.known_hosts().display().to_string();
    let m = Machine::new();
    for _ in 0..3 {
        m.sync(&url, &["--ssh-key", &key, "--known-hosts", &known])
            .expect(0);
        let left = processes_mentioning(&key);
        assert!(left.is_empty(), "ssh outlived the pass: {left:?}");
    }
    assert_eq!(m.runs().len(), 1);
}

#[test]
fn a_fetch_timeout_over_ssh_kills_ssh_and_exits_3() {
    let up = Upstream::new();
    up.commit(&[("run.sh", crate::harness::RECORDING_RUN_SH)], "init");
    let sshd = Sshd::start();
    // A server that accepts the key and then says nothing, as a wedged Git host does.
    authorize(&sshd, "sleep 10");
    let url = sshd.url(&up.bare());
    let key = sshd.key().display().to_string();
    let known = sshd.known_hosts().display().to_string();
    let m = Machine::new();
    let started = Instant::now();
    let run = m
        .sync(
            &url,
            &[
                "--ssh-key",
                &key,
                "--known-hosts",
                &known,
                "--fetch-timeout",
                "2s",
            ],
        )
        .expect(3);
    let took = started.elapsed();
    assert!(
        run.error_line().contains("--fetch-timeout"),
        "{}",
        run.stderr
    );
    assert!(took < Duration::from_secs(6), "the pass took {took:?}");
    let left = processes_mentioning(&key);
    assert!(left.is_empty(), "ssh outlived the pass: {left:?}");
}
