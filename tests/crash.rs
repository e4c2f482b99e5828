//! Concurrency and crashes: the lock, and kill -9 at any moment of a pass.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{wait_for, Machine, RECORDING_RUN_SH};
use crate::support::{GitDaemon, Upstream};

fn spawn_sync(m: &Machine, url: &str, args: &[&str]) -> Child {
    let mut cmd = m.command();
    cmd.arg("sync")
        .arg("--repo-url")
        .arg(url)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().unwrap()
}

#[test]
fn two_passes_started_together_run_the_entry_point_once() {
    let up = Upstream::new();
    let slow = "#!/bin/sh\necho \"$GITOPS_COMMIT\" >> \"$OUT/runs\"\nsleep 1\n";
    up.commit(&[("run.sh", slow)], "init");
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    let url = daemon.url("config.git");
    let a = spawn_sync(&m, &url, &[]);
    let b = spawn_sync(&m, &url, &[]);
    for mut child in [a, b] {
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(m.runs().len(), 1);
}

/// A machine whose first pass holds the lock (its entry point waits) until `release`.
struct LockHeld {
    _up: Upstream,
    _daemon: GitDaemon,
    m: Machine,
    url: String,
    first: Child,
}

impl LockHeld {
    fn start() -> LockHeld {
        let up = Upstream::new();
        let blocking = "#!/bin/sh\ntouch \"$OUT/started\"\nwhile [ ! -e \"$OUT/release\" ]; do sleep 0.05; done\n";
        up.commit(&[("run.sh", blocking)], "init");
        let daemon = GitDaemon::serve(&up.srv());
        let m = Machine::new();
        let url = daemon.url("config.git");
        let first = spawn_sync(&m, &url, &[]);
        wait_for(&m.out.join("started"));
        LockHeld {
            _up: up,
            _daemon: daemon,
            m,
            url,
            first,
        }
    }

    /// Let the first pass finish: what it recorded is all there is.
    fn release(mut self) {
        std::fs::write(self.m.out.join("release"), "").unwrap();
        assert!(self.first.wait().unwrap().success());
        let state = self.m.state_json();
        assert_eq!(
            state["last_pass"]["outcome"], "applied",
            "the waiting pass recorded nothing"
        );
        assert_eq!(state["consecutive_failures"], 0);
    }
}

#[test]
fn a_pass_that_cannot_get_the_lock_exits_75() {
    let held = LockHeld::start();
    let run = held
        .m
        .sync(&held.url, &["--lock-timeout", "300ms"])
        .expect(75);
    assert!(run.error_line().contains("--lock-timeout"));
    held.release();
}

#[test]
fn sigterm_while_waiting_for_the_lock_ends_the_wait_and_records_nothing() {
    let held = LockHeld::start();
    let mut queued = held.m.command();
    queued
        .args(["sync", "--repo-url", &held.url, "--lock-timeout", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut queued = queued.spawn().unwrap();
    // Signal it only once it says it is waiting: its handlers are in place by then.
    let mut stderr = std::io::BufReader::new(queued.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("waiting up to 60s") {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(n > 0, "the queued pass ended before waiting: {said}");
        said.push_str(&line);
    }
    let asked = Instant::now();
    let pid = nix::unistd::Pid::from_raw(queued.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    std::io::Read::read_to_string(&mut stderr, &mut said).unwrap();
    let status = queued.wait().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the queued pass kept waiting for the lock after SIGTERM"
    );
    assert_eq!(status.code(), Some(75), "{said}");
    assert!(said.contains("SIGTERM"), "{said}");
    held.release();
}

/// Every file of the big commit, to check that a tree is complete.
fn big_tree(files: usize) -> Vec<(String, String)> {
    (0..files)
        .map(|i| {
            (
                format!("d{}/f{i}.txt", i % 17),
                format!("content {i}\n").repeat(20),
            )
        })
        .collect()
}

#[test]
fn kill_9_at_any_moment_then_a_normal_pass_is_consistent() {
    let up = Upstream::new();
    let first = up.commit(&[("run.sh", RECORDING_RUN_SH), ("version", "1")], "small");
    // Branch `one` stays at the small commit: each machine applies it first, so the killed pass
    // has a live tree and link to replace with the big one.
    up.push_branch("one");
    let files = big_tree(1500);
    let mut with_version: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    with_version.push(("version", "2"));
    let second = up.commit(&with_version, "big");
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");

    for delay_ms in [0u64, 5, 10, 20, 35, 50, 80, 120, 200] {
        let m = Machine::new();
        m.sync(&url, &["--branch", "one"]).expect(0);
        assert_eq!(m.applied().as_deref(), Some(first.as_str()));

        let mut child = spawn_sync(&m, &url, &["--branch", "main"]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();

        // Whatever the moment, the link resolves to a complete tree: the old one or the new.
        let target = std::fs::read_link(&m.checkout)
            .unwrap_or_else(|e| panic!("no checkout link after kill at {delay_ms} ms: {e}"));
        let version = std::fs::read_to_string(target.join("version")).unwrap_or_else(|e| {
            panic!(
                "the link points at {} without a version file after kill at {delay_ms} ms: {e}",
                target.display()
            )
        });
        match version.as_str() {
            "1" => assert!(target.join("run.sh").exists()),
            _ => assert_complete(&target, &files),
        }
        m.sync(&url, &["--branch", "main"]).expect(0);
        assert_eq!(
            m.applied().as_deref(),
            Some(second.as_str()),
            "after kill at {delay_ms} ms"
        );
        assert_complete(&m.checkout, &files);
        assert_eq!(
            m.trees(),
            [second.as_str()],
            "leftovers cleaned after kill at {delay_ms} ms"
        );
    }
}

fn assert_complete(dir: &std::path::Path, files: &[(String, String)]) {
    for (path, content) in files.iter().step_by(97) {
        assert_eq!(
            &std::fs::read_to_string(dir.join(path)).unwrap(),
            content,
            "{path} in {}",
            dir.display()
        );
    }
    assert_eq!(std::fs::read_to_string(dir.join("version")).unwrap(), "2");
}

#[test]
fn kill_9_during_the_apply_then_a_normal_pass_applies() {
    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);

    let hangs_once = "#!/bin/sh\nif [ ! -e \"$OUT/hung\" ]; then echo $$ > \"$OUT/pid\"; touch \"$OUT/hung\"; exec sleep 300; fi\necho \"$GITOPS_COMMIT\" >> \"$OUT/runs\"\n";
    let second = up.commit(&[("run.sh", hangs_once)], "hangs the first time");
    let mut child = spawn_sync(&m, &url, &[]);
    wait_for(&m.out.join("hung"));
    child.kill().unwrap();
    child.wait().unwrap();
    // The orphaned entry point is the operator's to clean up; here it is the test's.
    let pid: i32 = std::fs::read_to_string(m.out.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );

    assert_ne!(
        m.applied().as_deref(),
        Some(second.as_str()),
        "a killed apply is not applied"
    );
    m.sync(&url, &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(second.as_str()));
    assert!(m.checkout.join("run.sh").exists());
}

#[test]
fn sigterm_stops_the_entry_point_and_is_recorded() {
    let up = Upstream::new();
    let hangs = "#!/bin/sh\nsleep 300 &\necho $! > \"$OUT/child\"\ntouch \"$OUT/started\"\nwait\n";
    let commit = up.commit(&[("run.sh", hangs)], "hangs");
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    let m = Machine::new();
    let mut child = spawn_sync(&m, &url, &[]);
    wait_for(&m.out.join("started"));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "an interrupted apply is a failed apply"
    );
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "apply-failed");
    assert!(
        state["last_pass"]["error"]
            .as_str()
            .unwrap()
            .contains("SIGTERM"),
        "{state}"
    );
    assert_eq!(state["pending"]["commit"], commit.as_str());
    assert_eq!(state["pending"]["attempts"], 1);
    let grandchild: i32 = std::fs::read_to_string(m.out.join("child"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false);
    assert!(!alive, "the entry point's background child survived");
}
