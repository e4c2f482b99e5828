//! What `gitops status` shows beside the passes: an apply's log (`--log [COMMIT]`), the timer's
//! next run (asked of systemctl, bounded), the notifications' outbox and last error, and colour
//! only for a terminal.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::harness::{Machine, Run};
use crate::support::{GitDaemon, Upstream};

fn two_applies() -> (Upstream, GitDaemon, Machine, String, String, String) {
    let up = Upstream::new();
    let first = up.commit(&[("run.sh", "#!/bin/sh\necho 'first says hello'\n")], "One");
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    let second = up.commit(
        &[("run.sh", "#!/bin/sh\necho 'second is broken'\nexit 3\n")],
        "Two",
    );
    m.sync(&url, &[]).expect(1);
    (up, daemon, m, url, first, second)
}

#[test]
fn status_log_prints_the_last_apply_s_log_or_a_commit_s() {
    let (_up, _daemon, m, _url, first, second) = two_applies();
    let last = m.run(&["status", "--log"]).expect(0);
    assert!(last.stdout.contains("second is broken"), "{}", last.stdout);
    assert!(!last.stdout.contains("first says hello"), "{}", last.stdout);
    let pending_log = m.state_json()["pending"]["log"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        last.stdout.as_bytes(),
        std::fs::read(&pending_log).unwrap(),
        "printed raw"
    );

    let one = m.run(&["status", "--log", &first[..7]]).expect(0);
    assert!(one.stdout.contains("first says hello"), "{}", one.stdout);
    let two = m
        .run(&["status", "--log", &second[..4].to_uppercase()])
        .expect(0);
    assert!(two.stdout.contains("second is broken"), "{}", two.stdout);

    let unknown = m.run(&["status", "--log", "0000000"]).expect(1);
    let line = unknown.error_line();
    assert!(
        line.contains("no apply log for a commit starting 0000000"),
        "{line}"
    );
    assert!(unknown.stdout.is_empty());
    for bad in [
        "abc",
        "not-hex",
        "12345678901234567890123456789012345678901234567890123456789012345",
    ] {
        let line = m.run(&["status", "--log", bad]).expect(2).error_line();
        assert!(line.contains("is not a commit"), "{line}");
    }
}

#[test]
fn status_log_never_follows_a_link_out_of_logs() {
    let (_up, _daemon, m, _url, first, _second) = two_applies();
    let outside = m.dir.path().join("outside");
    std::fs::write(&outside, "SECRET OUTSIDE THE LOGS\n").unwrap();
    // Newer than every real log, for the first commit, and named as the pending log.
    let logs = m.state.join("logs");
    std::os::unix::fs::symlink(&outside, logs.join(format!("29991231T000000Z-{first}.log")))
        .unwrap();
    let pending_log = m.state_json()["pending"]["log"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(&pending_log).unwrap();
    std::os::unix::fs::symlink(&outside, &pending_log).unwrap();
    for args in [
        &["status", "--log"][..],
        &["status", "--log", &first[..8]][..],
    ] {
        let run = m.run(args);
        assert!(
            !run.stdout.contains("SECRET OUTSIDE"),
            "{args:?}: {}",
            run.stdout
        );
    }
    assert!(m
        .run(&["status", "--log", &first[..8]])
        .expect(0)
        .stdout
        .contains("first says hello"));
}

/// A fake systemctl that answers only the question status asks, in UTC as asked.
fn fake_systemctl(m: &Machine, body: &str) -> std::path::PathBuf {
    let path = m.dir.path().join("systemctl");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n[ \"$*\" = 'show gitops.timer -p NextElapseUSecRealtime -p NextElapseUSecMonotonic' ] || exit 9\n[ \"$TZ\" = UTC ] || exit 8\n{body}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn status_with(m: &Machine, systemctl: &std::path::Path) -> Run {
    let mut cmd = m.command();
    cmd.env("GITOPS_SYSTEMCTL", systemctl).arg("status");
    Run::of(&mut cmd)
}

#[test]
fn status_shows_when_the_timer_runs_next() {
    let (_up, _daemon, m, _url) = crate::harness::applied_machine();
    let next = time::OffsetDateTime::now_utc() + time::Duration::seconds(200);
    let next = next.replace_nanosecond(0).unwrap();
    let shown = next
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let printed = next
        .format(time::macros::format_description!(
            "[weekday repr:short] [year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap();
    // A calendar timer's time, in both forms systemctl prints.
    for answer in [printed, format!("@{}", next.unix_timestamp())] {
        let answer = format!("NextElapseUSecRealtime={answer}\nNextElapseUSecMonotonic=infinity");
        let systemctl = fake_systemctl(&m, &format!("echo '{answer}'"));
        let run = status_with(&m, &systemctl).expect(0);
        assert!(
            run.stdout
                .contains(&format!("next pass:    {shown} (in 3min)\n")),
            "{answer}: {}",
            run.stdout
        );
    }

    // A timer with no next run, a systemctl that fails or hangs: no line, and status is quick.
    // gitops.timer's: monotonic, since boot (this test's "boot" is the monotonic clock's zero).
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let systemctl = fake_systemctl(
        &m,
        &format!(
            "echo 'NextElapseUSecRealtime='; echo 'NextElapseUSecMonotonic={}s'",
            uptime as u64 + 1_000_000 + 200
        ),
    );
    let run = status_with(&m, &systemctl).expect(0);
    assert!(run.stdout.contains("next pass:    "), "{}", run.stdout);
    for body in [
        "echo ''",
        "echo n/a",
        "echo NextElapseUSecMonotonic=infinity",
        "exit 1",
        "exec sleep 30",
    ] {
        let systemctl = fake_systemctl(&m, body);
        let started = Instant::now();
        let run = status_with(&m, &systemctl).expect(0);
        assert!(!run.stdout.contains("next pass"), "{body}: {}", run.stdout);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{body}: status waited {:?}",
            started.elapsed()
        );
    }
    let run = status_with(&m, &m.dir.path().join("no-such-systemctl")).expect(0);
    assert!(!run.stdout.contains("next pass"), "{}", run.stdout);
}

#[test]
fn status_shows_the_outbox_and_the_last_notify_error_without_turning_unhealthy() {
    let (_up, _daemon, m, _url) = crate::harness::applied_machine();
    let quiet = m.run(&["status"]).expect(0);
    assert!(!quiet.stdout.contains("notify:"), "{}", quiet.stdout);

    let mut state = m.state_json();
    state["notify"] = serde_json::json!({
        "last_error": "https://hooks.example/***: answered 500",
        "last_error_at": "2026-11-25T09:50:00Z",
    });
    std::fs::write(m.state.join("state.json"), state.to_string()).unwrap();
    let outbox = m.state.join("outbox");
    std::fs::create_dir(&outbox).unwrap();
    std::fs::write(outbox.join("a.json"), "{}").unwrap();
    std::fs::write(outbox.join("b.json"), "{}").unwrap();
    let run = m.run(&["status"]).expect(0);
    assert!(
        run.stdout
            .contains("notify:       2 events waiting to be sent\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("  error:      https://hooks.example/***: answered 500, "),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("unhealthy"), "{}", run.stdout);
}

#[test]
fn status_colours_only_a_terminal_and_respects_no_color() {
    let (_up, _daemon, m, url) = crate::harness::applied_machine();
    // Piped: never an escape code, healthy or not.
    assert!(!m.run(&["status"]).expect(0).stdout.contains('\x1b'));
    let missing = m.dir.path().join("no_known_hosts");
    m.sync(&url, &["--known-hosts", missing.to_str().unwrap()])
        .expect(2);
    let piped = m.run(&["status"]).expect(1);
    assert!(!piped.stdout.contains('\x1b'), "{:?}", piped.stdout);

    // On a terminal (script(1) gives it one): coloured, unless NO_COLOR says otherwise.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped the terminal half: no script(1)");
        return;
    }
    let on_tty = |no_color: Option<&str>| {
        let mut cmd = m.command();
        let line = format!("{} status", env!("CARGO_BIN_EXE_gitops"));
        cmd.env_remove("NO_COLOR");
        if let Some(value) = no_color {
            cmd.env("NO_COLOR", value);
        }
        let mut script = std::process::Command::new("script");
        script.args(["-qec", &line, "/dev/null"]);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => script.env(k, v),
                None => script.env_remove(k),
            };
        }
        script.stdin(std::process::Stdio::null());
        Run::of(&mut script)
    };
    let coloured = on_tty(None);
    assert!(
        coloured.stdout.contains("\x1b[31mconfig-error"),
        "{:?}",
        coloured.stdout
    );
    assert!(
        coloured.stdout.contains("\x1b[32m"),
        "{:?}",
        coloured.stdout
    );
    assert!(
        on_tty(Some("")).stdout.contains('\x1b'),
        "an empty NO_COLOR is unset"
    );
    let plain = on_tty(Some("1"));
    assert!(!plain.stdout.contains('\x1b'), "{:?}", plain.stdout);
    assert!(plain.stdout.contains("config-error"), "{:?}", plain.stdout);
}
