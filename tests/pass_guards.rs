//! What a pass trusts once its state directory has been open, a path reached through another
//! user's symlink, and what status says when a killed pass's processes keep the lock.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{applied_machine, chmod, is_root, Machine};
use crate::support::Upstream;

const NOBODY: u32 = 65534;

/// `chmod -R` as a shell would do it, files and directories alike.
fn chmod_recursive(dir: &Path, mode: impl Fn(u32) -> u32 + Copy) {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    chmod(dir, mode(meta.permissions().mode() & 0o7777));
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            chmod_recursive(&entry.path(), mode);
        }
    }
}

#[test]
fn an_object_store_that_was_open_is_refused_until_it_is_removed() {
    let (up, _daemon, m, url) = applied_machine();
    let before = m.state_bytes();
    // The state directory left open for a while.
    chmod_recursive(&m.state, |_| 0o777);
    let objects = m.state.join("repo.git/objects");
    let planted = objects.join("ab");
    if is_root() {
        // What another user writes meanwhile: an object under an id the next fetch trusts.
        std::fs::create_dir_all(&planted).unwrap();
        std::fs::write(planted.join("cdef"), "planted").unwrap();
        std::os::unix::fs::chown(&planted, Some(NOBODY), None).unwrap();
        std::os::unix::fs::chown(planted.join("cdef"), Some(NOBODY), None).unwrap();
    }
    up.commit(&[("second", "")], "second");
    // The operator follows every piece of advice gitops gives; none may lead to a run.
    let mut line = String::new();
    for _ in 0..10 {
        line = m.sync(&url, &[]).expect(2).error_line();
        let Some(fix) = line.split("run chmod ").nth(1) else {
            break;
        };
        let mut words = fix.split([' ', ';', ',']);
        let (how, path) = (words.next().unwrap(), words.next().unwrap());
        let path = Path::new(path);
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        chmod(path, if how == "700" { 0o700 } else { mode & !0o022 });
    }
    assert!(
        line.contains("the object store may have been changed while the state directory was open")
            && line.contains(&format!("rm -rf {}", m.state.join("repo.git").display())),
        "{line}"
    );
    assert_eq!(m.runs().len(), 1, "nothing ran from the opened store");
    assert_eq!(m.state_bytes(), before, "the refusal changed state.json");
    let status = m.run(&["status"]).expect(1);
    assert!(
        status
            .stdout
            .contains("the object store may have been changed"),
        "{}",
        status.stdout
    );

    if is_root() {
        // Every mode put back: the planted object is still another user's.
        chmod_recursive(&m.state, |mode| mode & !0o077);
        let line = m.sync(&url, &[]).expect(2).error_line();
        assert!(
            line.contains(&planted.display().to_string()) && line.contains("(uid 65534)"),
            "{line}"
        );
        assert!(
            line.contains("the object store may have been changed"),
            "{line}"
        );
    }

    // A symlink in the store is refused even when it is ours.
    chmod_recursive(&m.state, |mode| mode & !0o077);
    if !is_root() {
        let link = objects.join("info/planted");
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        let line = m.sync(&url, &[]).expect(2).error_line();
        assert!(line.contains("is a symlink"), "{line}");
    }

    std::fs::remove_dir_all(m.state.join("repo.git")).unwrap();
    m.sync(&url, &[]).expect(0);
    assert_eq!(
        m.runs().len(),
        2,
        "the new commit, fetched afresh, ran once"
    );
}

/// How long the check of a healthy state directory takes on a no-op pass, for the record.
#[test]
fn a_no_op_pass_with_a_walked_store_stays_quick() {
    let (up, _daemon, m, url) = applied_machine();
    for i in 0..20 {
        up.commit(&[(&format!("f{i}"), "x")], &format!("c{i}"));
        m.sync(&url, &[]).expect(0);
    }
    let mut entries = 0;
    let mut pending = vec![m.state.join("repo.git")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            entries += 1;
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            }
        }
    }
    let started = Instant::now();
    for _ in 0..5 {
        m.sync(&url, &[]).expect(0);
    }
    let took = started.elapsed() / 5;
    eprintln!("no-op pass over a store of {entries} entries: {took:?}");
    assert!(entries < 200, "gix writes packs: {entries} entries");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_path_through_another_user_s_symlink_is_refused() {
    if !is_root() {
        eprintln!("skipped: only root can plant a link owned by another user");
        return;
    }
    let up = Upstream::new();
    up.commit(&[("run.sh", crate::harness::RECORDING_RUN_SH)], "init");
    let url = up.file_url();
    let m = Machine::new();
    // Like /tmp: anybody may add an entry, nobody may rename another's.
    let public = m.out.parent().unwrap().join("pub");
    std::fs::create_dir(&public).unwrap();
    chmod(&public, 0o1777);
    let real = public.join("real");
    std::fs::create_dir(&real).unwrap();
    chmod(&real, 0o755);
    let theirs = public.join("lnk");
    std::os::unix::fs::symlink("real", &theirs).unwrap();
    std::os::unix::fs::lchown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();

    let state = theirs.join("st").display().to_string();
    let line = m
        .sync(&url, &["--state-dir", &state])
        .expect(2)
        .error_line();
    assert!(
        line.contains(&format!("the symlink {}", theirs.display()))
            && line.contains("(uid 65534)")
            && line.contains(&real.display().to_string()),
        "names the link, its owner and the real path: {line}"
    );
    assert!(
        !real.join("st").exists(),
        "nothing created through the link"
    );

    let checkout = theirs.join("co").display().to_string();
    let line = m
        .sync(&url, &["--checkout", &checkout])
        .expect(2)
        .error_line();
    assert!(
        line.contains(&format!("the symlink {}", theirs.display()))
            && line.contains("the checkout link"),
        "{line}"
    );
    assert!(m.runs().is_empty());

    // The same link, root's own, is fine: only its owner could repoint it.
    let ours = public.join("ours");
    std::os::unix::fs::symlink("real", &ours).unwrap();
    let state = ours.join("st").display().to_string();
    m.sync(&url, &["--state-dir", &state]).expect(0);
}

#[test]
fn the_wording_for_root_names_root_once() {
    if !is_root() {
        eprintln!("skipped: the wording is root's");
        return;
    }
    let up = Upstream::new();
    up.commit(&[("run.sh", crate::harness::RECORDING_RUN_SH)], "init");
    let m = Machine::new();
    let theirs = m.out.parent().unwrap().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    let state = theirs.join("st").display().to_string();
    let line = m
        .sync(&up.file_url(), &["--state-dir", &state])
        .expect(2)
        .error_line();
    assert!(
        line.contains("choose a path that only root controls"),
        "{line}"
    );
    assert!(!line.contains("root and root"), "{line}");
}

/// An entry point that waits for `$OUT/release` (or for the test's directory to go away: a
/// failed test must not leave it running).
const WAITING_RUN_SH: &str = "#!/bin/sh\necho \"$GITOPS_COMMIT\" >> \"$OUT/runs\"\nwhile [ ! -e \"$OUT/release\" ] && [ -d \"$OUT\" ]; do sleep 0.05; done\n";

#[test]
fn status_says_a_killed_pass_s_processes_hold_the_lock() {
    let up = Upstream::new();
    let head = up.commit(&[("run.sh", WAITING_RUN_SH)], "init");
    let m = Machine::new();
    let url = up.file_url();
    let mut first = m.command();
    first
        .args(["sync", "--repo-url", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut first = first.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.runs().is_empty() || !m.state.join("state.json").exists() {
        assert!(Instant::now() < deadline, "the entry point never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    while m.state_json()["in_progress"].is_null() {
        assert!(Instant::now() < deadline, "in_progress never recorded");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Unhealthy only because no pass has finished yet: the live one is shown as running.
    let alive = m.run(&["status"]).expect(1);
    assert!(
        alive.stdout.contains("running:      a pass is applying"),
        "{}",
        alive.stdout
    );

    let pid = first.id();
    first.kill().unwrap();
    let killed = |status: &str| {
        status.contains(&format!(
            "unhealthy:    the pass applying {} (pid {pid}) was killed; processes it started still hold the lock, so every sync waits for them: let them finish, or stop them (",
            &head[..12]
        )) && status.contains("(run.sh)")
            && !status.contains("running:")
    };
    // Killed, not yet reaped: a zombie still named gitops.
    while !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z ")) {
        assert!(Instant::now() < deadline, "the pass never died");
        std::thread::sleep(Duration::from_millis(10));
    }
    let zombie = m.run(&["status"]).expect(1);
    assert!(killed(&zombie.stdout), "{}", zombie.stdout);
    first.wait().unwrap();
    let dead = m.run(&["status"]).expect(1);
    assert!(killed(&dead.stdout), "{}", dead.stdout);

    std::fs::write(m.out.join("release"), "").unwrap();
    m.sync(&url, &["--lock-timeout", "10s"]).expect(0);
    m.run(&["status"]).expect(0);
}
