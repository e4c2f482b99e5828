//! A state directory nobody else can write: refused when others could, and nothing in it is
//! followed through a planted link or blocked on by a planted FIFO.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::harness::{applied_machine, chmod, Machine, Run, RECORDING_RUN_SH};
use crate::support::{GitDaemon, Upstream};

#[test]
fn a_state_directory_others_can_write_is_refused() {
    let (up, _daemon, m, url) = applied_machine();
    // A second apply, so that the tree linked before is kept as the spare.
    up.commit(&[("second", "2")], "second");
    m.sync(&url, &[]).expect(0);
    assert!(m.state.join("spare").is_dir());
    let before = m.state_bytes();
    for dir in ["", "repo.git", "trees", "logs", "spare"] {
        let path = m.state.join(dir);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // The state directory itself grants others nothing at all (then nothing
        // below it needs checking); the directories below are not writable by others.
        let (looser, fix) = if dir.is_empty() {
            (
                vec![mode | 0o020, mode | 0o002, mode | 0o050, mode | 0o001],
                "chmod 700",
            )
        } else if dir == "repo.git" || dir == "trees" || dir == "spare" {
            // It may hold others' objects or files already: removed and written again, not
            // chmod-ed.
            (vec![mode | 0o020, mode | 0o002], "rm -rf")
        } else {
            (vec![mode | 0o020, mode | 0o002], "chmod go-w")
        };
        for loose in looser {
            chmod(&path, loose);
            let run = m.sync(&url, &[]).expect(2);
            let line = run.error_line();
            let path = path.display().to_string();
            let fix = format!("{fix} {}", path.trim_end_matches('/'));
            assert!(line.contains(&fix), "{line}");
            assert_eq!(
                m.state_bytes(),
                before,
                "nothing recorded in a loose directory"
            );

            // status still reports, and is unhealthy: every sync stops there.
            let status = m.run(&["status"]).expect(1);
            assert!(
                status
                    .stdout
                    .lines()
                    .any(|l| l.starts_with("unhealthy: ") && l.contains(&fix)),
                "{}",
                status.stdout
            );
            assert!(
                status.stdout.contains("last pass:    applied"),
                "{}",
                status.stdout
            );
        }
        chmod(&path, mode);
    }
    m.sync(&url, &[]).expect(0);
}

#[test]
fn a_state_directory_owned_by_another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: giving a directory to another user needs root");
        return;
    }
    let (_up, _daemon, m, url) = applied_machine();
    let nobody = Some(nix::unistd::Uid::from_raw(65534));
    for dir in ["", "trees"] {
        let path = m.state.join(dir);
        nix::unistd::chown(&path, nobody, None).unwrap();
        let line = m.sync(&url, &[]).expect(2).error_line();
        assert!(line.contains("uid 65534"), "{line}");
        let fix = match dir {
            "" => format!("chown -R root {}", m.state.display()),
            _ => format!("rm -rf {}", path.display()),
        };
        assert!(line.contains(&fix), "{line}");
        let status = m.run(&["status"]).expect(1);
        assert!(
            status.stdout.contains("unhealthy:") && status.stdout.contains(&fix),
            "{}",
            status.stdout
        );
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    }
    m.sync(&url, &[]).expect(0);
}

#[test]
fn a_symlink_in_place_of_a_state_subdirectory_is_refused() {
    let (_up, _daemon, m, url) = applied_machine();
    let elsewhere = m.dir.path().join("elsewhere");
    std::fs::rename(m.state.join("trees"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, m.state.join("trees")).unwrap();
    let line = m.sync(&url, &[]).expect(2).error_line();
    assert!(line.contains("is a symlink"), "{line}");
    assert!(line.contains("trees"), "{line}");
}

#[test]
fn a_fifo_at_state_json_neither_hangs_status_nor_sync() {
    let (_up, _daemon, m, url) = applied_machine();
    let state_file = m.state.join("state.json");
    std::fs::remove_file(&state_file).unwrap();
    nix::unistd::mkfifo(&state_file, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

    let status = Run::within(m.spawn(&["status"]), Duration::from_secs(10)).expect(1);
    let line = status.error_line();
    assert!(line.contains("is a FIFO, not a file"), "{line}");
    let kind = std::fs::symlink_metadata(&state_file).unwrap().file_type();
    assert!(
        std::os::unix::fs::FileTypeExt::is_fifo(&kind),
        "status left it as it was"
    );

    let sync = Run::within(
        m.spawn(&["sync", "--repo-url", &url]),
        Duration::from_secs(30),
    )
    .expect(0);
    assert!(
        sync.stderr.contains("is a FIFO, not a file; moved it to"),
        "{}",
        sync.stderr
    );
    assert!(std::fs::symlink_metadata(&state_file).unwrap().is_file());
    assert_eq!(m.state_json()["last_pass"]["outcome"], "applied");
    let aside: Vec<String> = crate::harness::names(&m.state)
        .into_iter()
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
}

#[test]
fn a_symlink_at_state_json_is_moved_aside_not_followed() {
    let (_up, _daemon, m, url) = applied_machine();
    let victim = m.dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let state_file = m.state.join("state.json");
    std::fs::remove_file(&state_file).unwrap();
    std::os::unix::fs::symlink(&victim, &state_file).unwrap();

    let line = m.run(&["status"]).expect(1).error_line();
    assert!(line.contains("is a symlink"), "{line}");
    let sync = m.sync(&url, &[]).expect(0);
    assert!(
        sync.stderr.contains("is a symlink, not a file"),
        "{}",
        sync.stderr
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(std::fs::symlink_metadata(&state_file).unwrap().is_file());
}

#[test]
fn a_link_or_fifo_at_the_lock_is_refused_and_never_followed() {
    let (_up, _daemon, m, url) = applied_machine();
    let victim = m.dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    chmod(&victim, 0o644);
    let lock = m.state.join("lock");
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    let line = m.sync(&url, &[]).expect(2).error_line();
    assert!(line.contains("is a symlink, not a file"), "{line}");
    assert!(line.contains("remove it"), "{line}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    std::fs::remove_file(&lock).unwrap();
    nix::unistd::mkfifo(&lock, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let run = Run::within(
        m.spawn(&["sync", "--repo-url", &url]),
        Duration::from_secs(10),
    )
    .expect(2);
    assert!(
        run.error_line().contains("is a FIFO, not a file"),
        "{}",
        run.stderr
    );
    // status probes the lock without blocking on it either, and calls it unhealthy.
    let status = Run::within(m.spawn(&["status"]), Duration::from_secs(10)).expect(1);
    assert!(
        status.stdout.lines().any(|l| l.starts_with("unhealthy:")
            && l.contains("is a FIFO, not a file")
            && l.contains("rm ")),
        "{}",
        status.stdout
    );

    std::fs::remove_file(&lock).unwrap();
    m.sync(&url, &[]).expect(0);
}

#[test]
fn an_apply_log_name_taken_by_a_link_is_never_written_through() {
    let up = Upstream::new();
    let commit = up.commit(&[("run.sh", "#!/bin/sh\necho written-by-run-sh\n")], "init");
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    let victim = m.dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    // The log's name is the time and the commit: plant a link under every name of the next
    // ten seconds, as an attacker who can write the logs directory could (fewer than the logs
    // a pass keeps, so that pruning does not remove our own).
    let logs = m.state.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    chmod(&m.state, 0o700);
    let now = time::OffsetDateTime::now_utc();
    for s in 0..10 {
        let stamp = (now + time::Duration::seconds(s))
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap();
        std::os::unix::fs::symlink(&victim, logs.join(format!("{stamp}-{commit}.log"))).unwrap();
    }
    m.sync(&daemon.url("config.git"), &[]).expect(0);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let log = m.state_json()["applied"]["log"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("written-by-run-sh"));
}

#[test]
fn only_the_newest_three_corrupt_state_files_are_kept() {
    let (_up, _daemon, m, url) = applied_machine();
    let base = std::time::SystemTime::now() - Duration::from_secs(3600);
    for i in 0..5u64 {
        let path = m.state.join(format!("state.json.corrupt-{i}"));
        let file = std::fs::File::create(&path).unwrap();
        file.set_modified(base + Duration::from_secs(i * 60))
            .unwrap();
    }
    m.sync(&url, &[]).expect(0);
    let left: Vec<String> = crate::harness::names(&m.state)
        .into_iter()
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(
        left,
        [
            "state.json.corrupt-2",
            "state.json.corrupt-3",
            "state.json.corrupt-4"
        ]
    );
}

#[test]
fn a_checkout_inside_the_state_directory_is_refused() {
    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    let url = daemon.url("config.git");
    let state = m.state.display().to_string();
    for checkout in [
        state.clone(),
        format!("{state}/"),
        format!("{state}/trees/current"),
        format!("{state}/../state/./gitops"),
    ] {
        let line = m
            .sync(&url, &["--checkout", &checkout])
            .expect(2)
            .error_line();
        assert!(
            line.contains("is inside the state directory"),
            "{checkout}: {line}"
        );
        assert!(m.runs().is_empty());
    }
    // Beside it is fine.
    let beside = format!("{state}-checkout");
    m.sync(&url, &["--checkout", &beside]).expect(0);
}

#[test]
fn nothing_is_left_behind_under_a_temporary_name() {
    let (up, _daemon, m, url) = applied_machine();
    // What a pass killed between creating its temporary link and renaming it leaves.
    let parent = m.checkout.parent().unwrap();
    let stale = parent.join(".gitops.gitops-new-0123456789abcdef");
    std::os::unix::fs::symlink(m.state.join("trees"), &stale).unwrap();
    up.commit(&[("motd", "hello\n")], "second");
    m.sync(&url, &[]).expect(0);
    let stray: Vec<String> = crate::harness::names(&m.state)
        .into_iter()
        .chain(crate::harness::names(m.checkout.parent().unwrap()))
        .filter(|n| n.contains(".tmp-") || n.contains("gitops-new"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
