//! Bad input: one line naming cause and fix, the documented exit code, state as it was.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::harness::{Machine, RECORDING_RUN_SH};
use crate::support::{free_port, GitDaemon, Upstream};

/// Run a sync that must fail with `code`. A usage error leaves what is applied and pending as it
/// was, and records only that the pass stopped on a configuration error, with its line.
#[track_caller]
fn fails_cleanly(m: &Machine, url: Option<&str>, args: &[&str], code: i32) -> String {
    let before = m.state_bytes();
    let mut full = vec!["sync"];
    if let Some(url) = url {
        full.extend(["--repo-url", url]);
    }
    full.extend(args);
    let run = m.run(&full).expect(code);
    if code == 2 {
        if let Some(before) = before {
            let before: serde_json::Value = serde_json::from_slice(&before).unwrap();
            let after = m.state_json();
            for kept in ["applied", "pending", "repo_url", "branch"] {
                assert_eq!(
                    after[kept], before[kept],
                    "a usage error leaves {kept} alone"
                );
            }
            // A command line that does not parse names no state directory to record into.
            if after["last_pass"] != before["last_pass"] {
                assert_eq!(after["last_pass"]["outcome"], "config-error");
                let line = run.error_line();
                assert_eq!(
                    Some(line.strip_prefix("gitops: error: ").unwrap()),
                    after["last_pass"]["error"].as_str()
                );
            }
        }
    }
    run.error_line()
}

/// A machine that already applied something, so "state unchanged" means something.
fn applied_machine() -> (Upstream, GitDaemon, Machine, String) {
    let up = Upstream::new();
    let commit = up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    m.sync(&daemon.url("config.git"), &[]).expect(0);
    (up, daemon, m, commit)
}

#[test]
fn usage_errors_exit_2() {
    let (_up, _daemon, m, _) = applied_machine();
    let line = fails_cleanly(&m, None, &[], 2);
    assert!(
        line.contains("--repo-url") && line.contains("GITOPS_REPO_URL"),
        "{line}"
    );
    for url in [
        "ftp://host/repo",
        "git://",
        "https://host-only",
        "relative/path/but/not/dotted:x",
    ] {
        let line = fails_cleanly(&m, Some(url), &[], 2);
        assert!(line.contains("not a usable Git URL"), "{url}: {line}");
    }
    let line = fails_cleanly(
        &m,
        Some("git://127.0.0.1/x"),
        &["--apply-timeout", "soon"],
        2,
    );
    assert!(line.contains("30s"), "{line}");
    let line = fails_cleanly(&m, Some("git://127.0.0.1/x"), &["--branch", "bad..name"], 2);
    assert!(line.contains("branch"), "{line}");
    let line = fails_cleanly(
        &m,
        Some("git://127.0.0.1/x"),
        &["--entrypoint", "../escape.sh"],
        2,
    );
    assert!(line.contains("inside the repository"), "{line}");
}

#[test]
fn clap_errors_are_usage_errors_without_backtrace() {
    let m = Machine::new();
    let run = m.run(&["sync", "--no-such-flag"]).expect(2);
    assert!(!run.stderr.contains("panicked") && !run.stderr.contains("Backtrace"));
    m.run(&["frobnicate"]).expect(2);
}

#[test]
fn an_unwritable_state_dir_exits_2() {
    let m = Machine::new();
    let file = m.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let state = file.join("state");
    let line = fails_cleanly(
        &m,
        Some("git://127.0.0.1/x"),
        &["--state-dir", state.to_str().unwrap()],
        2,
    );
    assert!(line.contains("--state-dir"), "{line}");
}

#[test]
fn unreachable_missing_and_empty_remotes_exit_3() {
    let (_up, daemon, m, commit) = applied_machine();
    let port = free_port();
    let line = fails_cleanly(
        &m,
        Some(&format!("git://127.0.0.1:{port}/config.git")),
        &[],
        3,
    );
    assert!(line.contains("could not connect"), "{line}");
    assert!(line.contains("check the host and port"), "{line}");

    let line = fails_cleanly(&m, Some(&daemon.url("missing.git")), &[], 3);
    assert!(line.contains("could not fetch"), "{line}");
    assert!(line.contains("check the repository path"), "{line}");

    let line = fails_cleanly(
        &m,
        Some(&daemon.url("config.git")),
        &["--branch", "nope"],
        3,
    );
    assert!(
        line.contains("no branch \"nope\"")
            && line.contains("main")
            && !line.contains("check --repo-url"),
        "{line}"
    );

    let empty = Upstream::empty();
    let empty_daemon = GitDaemon::serve(&empty.srv());
    let line = fails_cleanly(&m, Some(&empty_daemon.url("config.git")), &[], 3);
    assert!(
        line.contains("empty") && !line.contains("check --repo-url"),
        "{line}"
    );

    let state = m.state_json();
    assert_eq!(
        state["applied"]["commit"],
        commit.as_str(),
        "a failed fetch never touches what is applied"
    );
    assert_eq!(state["last_pass"]["outcome"], "fetch-failed");
    assert!(state["last_pass"]["error"]
        .as_str()
        .unwrap()
        .contains("empty"));
    assert_eq!(state["consecutive_failures"], 4);
    assert!(m.checkout.join("run.sh").exists());
    m.run(&["status"]).expect(1);
}

/// A server on 127.0.0.1 that accepts connections, reads the request, and then either never
/// answers or trickles one byte a second forever.
fn stalling_server(trickle: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                // Bounded, so the thread ends by itself after the test.
                for _ in 0..30 {
                    std::thread::sleep(Duration::from_secs(1));
                    if trickle && stream.write_all(b"0").is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_server_that_stalls_hits_the_fetch_timeout() {
    let cases = [
        ("git", false, "never answers"),
        ("git", true, "trickles"),
        ("http", false, "never answers (fetch on its thread)"),
    ];
    for (scheme, trickle, what) in cases {
        let port = stalling_server(trickle);
        let m = Machine::new();
        let started = Instant::now();
        let url = format!("{scheme}://127.0.0.1:{port}/config.git");
        let line = fails_cleanly(&m, Some(&url), &["--fetch-timeout", "2s"], 3);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(8),
            "{scheme} server that {what}: took {took:?}"
        );
        assert!(line.contains("--fetch-timeout"), "{what}: {line}");
        assert_eq!(m.state_json()["last_pass"]["outcome"], "fetch-failed");
    }
}

#[test]
fn the_checkout_path_must_not_be_a_plain_directory() {
    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    // A config error is recorded only into a state directory that exists.
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&m.state)
        .unwrap();
    std::fs::create_dir(&m.checkout).unwrap();
    std::fs::write(m.checkout.join("precious"), "data").unwrap();
    let run = m.sync(&daemon.url("config.git"), &[]).expect(2);
    assert!(run.error_line().contains("is not a symlink"));
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "config-error");
    assert!(
        state["applied"].is_null(),
        "refused before anything was fetched"
    );
    assert_eq!(
        std::fs::read_to_string(m.checkout.join("precious")).unwrap(),
        "data"
    );
    assert!(m.runs().is_empty());
}
