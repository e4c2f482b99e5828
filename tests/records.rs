//! What a pass records when the trouble is not the commit: an unusable checkout path, a state
//! directory whose disk is full.

use std::process::Command;

use crate::harness::{is_root, Machine, Tmpfs, RECORDING_RUN_SH};
use crate::support::{GitDaemon, Upstream};

#[test]
fn an_unusable_checkout_path_is_a_configuration_error_with_a_log() {
    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    // Passes every check made before the pass (root owns /proc/1), fails when the link's
    // directory is created.
    let run = m
        .sync(
            &daemon.url("config.git"),
            &["--checkout", "/proc/1/nope/co"],
        )
        .expect(2);
    let line = run.error_line();
    assert!(
        line.contains("/proc/1/nope/co cannot be used") && line.contains("--checkout"),
        "{line}"
    );
    assert!(m.runs().is_empty());
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "config-error");
    let log = state["pending"]["log"].as_str().unwrap();
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("cannot be used"), "{text}");
    m.run(&["status"]).expect(1);
}

#[test]
fn a_full_disk_when_recording_says_so_and_keeps_the_old_record() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    std::fs::create_dir(&m.state).unwrap();
    let Some(_disk) = Tmpfs::mount(&m.state, "2m") else {
        return;
    };
    let url = daemon.url("config.git");
    m.sync(&url, &[]).expect(0);
    let before = m.state_bytes();
    // Fill what is left of the disk.
    let filler = m.state.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    let run = m.sync(&url, &[]).expect(70);
    let line = run.error_line();
    assert!(
        line.contains("disk holding the state directory") && line.contains("free space"),
        "{line}"
    );
    assert_eq!(m.state_bytes(), before, "the last record stays whole");
}

#[test]
fn an_applied_tree_that_is_not_ours_is_written_again_before_the_checkout_shows_it() {
    if !is_root() {
        eprintln!("skipped: giving a directory to another user needs root");
        return;
    }
    let up = Upstream::new();
    let commit = up.commit(
        &[("run.sh", RECORDING_RUN_SH), ("app.conf", "good\n")],
        "init",
    );
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    let url = daemon.url("config.git");
    m.sync(&url, &[]).expect(0);
    // What another user could have left while the state directory was open: their own
    // directory in place of the applied tree.
    let tree = m.state.join("trees").join(&commit);
    std::fs::remove_dir_all(&tree).unwrap();
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("app.conf"), "EVIL\n").unwrap();
    let nobody = Some(nix::unistd::Uid::from_raw(65534));
    nix::unistd::chown(&tree, nobody, None).unwrap();
    let run = m.sync(&url, &[]).expect(0);
    assert!(run.stderr.contains("wrote it again"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(m.checkout.join("app.conf")).unwrap(),
        "good\n"
    );
    assert_eq!(m.runs().len(), 1, "nothing runs again");
    // Gone altogether (trees/ removed by hand, as the advice says): written again too.
    std::fs::remove_dir_all(m.state.join("trees")).unwrap();
    std::fs::create_dir(m.state.join("trees")).unwrap();
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &m.state.join("trees"),
        nix::sys::stat::Mode::from_bits_truncate(0o700),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .unwrap();
    m.sync(&url, &[]).expect(0);
    assert_eq!(
        std::fs::read_to_string(m.checkout.join("app.conf")).unwrap(),
        "good\n"
    );
}

#[test]
fn a_mistyped_command_that_mentions_sync_records_nothing() {
    let m = Machine::new();
    std::fs::create_dir(&m.state).unwrap();
    crate::harness::chmod(&m.state, 0o700);
    for args in [
        &["status", "--json", "sync"][..],
        &["help", "sync", "--bogus"][..],
        &["status", "--max-age", "bogus", "sync"][..],
    ] {
        m.run(args).expect(2);
        assert_eq!(m.state_bytes(), None, "{args:?} recorded something");
    }
}
