//! What a local user who is not root tried against a pass run as root: each place they could
//! swap, plant or mislead is refused, with a fix that does not hand them root.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{chmod, is_root, served, Machine, Run};

#[test]
fn a_state_directory_in_a_directory_others_can_write_is_refused() {
    let (_up, _daemon, url) = served();
    let m = Machine::new();
    // The attacker's setup: `pub/st` in a world-writable `pub`, where they can rename `st` away
    // and put their own in its place while a pass waits for the lock.
    let public = m.dir.path().join("pub");
    std::fs::create_dir(&public).unwrap();
    chmod(&public, 0o777);
    let state = public.join("st");
    let state_arg = state.to_str().unwrap();
    for existing in [false, true] {
        if existing {
            std::fs::create_dir(&state).unwrap();
            chmod(&state, 0o700);
        }
        let run = m.sync(&url, &["--state-dir", state_arg]).expect(2);
        let line = run.error_line();
        assert!(
            line.contains(&format!("the directory {}", public.display()))
                && line.contains("(mode 0777)")
                && line.contains(&format!("chmod go-w {}", public.display())),
            "{line}"
        );
        assert!(m.runs().is_empty());
        assert!(!state.join("repo.git").exists(), "nothing fetched");
    }
    // Sticky, as /tmp is: others cannot rename what they do not own.
    chmod(&public, 0o1777);
    m.sync(&url, &["--state-dir", state_arg]).expect(0);
    assert_eq!(m.runs().len(), 1);
}

#[test]
fn a_trailing_slash_does_not_let_a_symlinked_state_directory_through() {
    let (_up, _daemon, url) = served();
    let m = Machine::new();
    let real = m.dir.path().join("d.real");
    std::fs::create_dir(&real).unwrap();
    chmod(&real, 0o700);
    let link = m.dir.path().join("d");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    for arg in [
        format!("{}/", link.display()),
        format!("{}//", link.display()),
        link.display().to_string(),
    ] {
        let line = m.sync(&url, &["--state-dir", &arg]).expect(2).error_line();
        assert!(line.contains("is a symlink"), "{arg}: {line}");
        assert!(line.contains(&real.display().to_string()), "{arg}: {line}");
    }
    assert!(m.runs().is_empty());
    assert!(!real.join("repo.git").exists());
}

#[test]
fn a_state_directory_swapped_while_the_pass_waits_for_the_lock_is_refused() {
    let (_up, _daemon, url) = served();
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    // Someone holds the lock (an earlier pass) while this one waits.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(m.state.join("lock"))
        .unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let mut cmd = m.command();
    cmd.args(["sync", "--repo-url", &url, "--lock-timeout", "20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let other = m.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    chmod(&other, 0o700);
    std::fs::rename(&m.state, m.dir.path().join("state.away")).unwrap();
    std::os::unix::fs::symlink(&other, &m.state).unwrap();
    drop(held);
    let run = Run::within(child, Duration::from_secs(30)).expect(2);
    let line = run.error_line();
    assert!(line.contains("is a symlink"), "{line}");
    assert_eq!(m.runs().len(), 1, "nothing ran from the swapped directory");
    assert!(!other.join("repo.git").exists());
}

#[test]
fn a_checkout_in_a_directory_others_can_write_is_refused() {
    let (_up, _daemon, url) = served();
    let m = Machine::new();
    let public = m.dir.path().join("pub");
    std::fs::create_dir(&public).unwrap();
    chmod(&public, 0o777);
    // Also when the checkout's own directory does not exist yet: its nearest ancestor counts.
    for checkout in [public.join("co"), public.join("sub/co")] {
        let arg = checkout.to_str().unwrap();
        let line = m.sync(&url, &["--checkout", arg]).expect(2).error_line();
        assert!(
            line.contains(&format!("the directory {}", public.display()))
                && line.contains("the checkout link")
                && line.contains("chmod go-w"),
            "{line}"
        );
        assert!(m.runs().is_empty());
    }
    chmod(&public, 0o1777);
    let arg = public.join("co");
    m.sync(&url, &["--checkout", arg.to_str().unwrap()])
        .expect(0);
    assert_eq!(m.runs().len(), 1);
}

#[test]
fn a_checkout_inside_the_state_directory_through_a_symlinked_alias_is_refused() {
    let (_up, _daemon, url) = served();
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    let alias = m.dir.path().join("alias");
    std::os::unix::fs::symlink(&m.state, &alias).unwrap();
    // (The alias itself is fine as a checkout: gitops replaces that link, not what it leads to.)
    for checkout in [alias.join("trees/co"), alias.join("co")] {
        let arg = checkout.to_str().unwrap();
        let line = m.sync(&url, &["--checkout", arg]).expect(2).error_line();
        assert!(
            line.contains("is inside the state directory"),
            "{arg}: {line}"
        );
    }
    assert_eq!(m.runs().len(), 1);
}

/// `gitops ARGS` run as uid/gid 65534, against this machine's paths.
fn as_nobody(m: &Machine, args: &[&str]) -> Run {
    let mut cmd = m.command();
    cmd.args(args).uid(65534).gid(65534).env("HOME", "/");
    Run::of(&mut cmd)
}

#[test]
fn another_user_looking_at_root_s_state_directory_is_told_to_use_root() {
    if !is_root() {
        eprintln!("skipped: needs root to own the state directory");
        return;
    }
    let (_up, _daemon, url) = served();
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    // Others may reach the state directory (so they can see it is root's), not enter it.
    chmod(m.dir.path(), 0o755);
    let status = as_nobody(&m, &["status"]).expect(1);
    let line = status.error_line();
    assert!(line.contains("sudo gitops status"), "{line}");
    assert!(!status.stderr.contains("chown"), "{}", status.stderr);
    assert!(!status.stdout.contains("chown"), "{}", status.stdout);

    let sync = as_nobody(&m, &["sync", "--repo-url", &url]).expect(2);
    let line = sync.error_line();
    assert!(line.contains("sudo gitops sync"), "{line}");
    assert!(!line.contains("chown"), "{line}");
    assert_eq!(m.runs().len(), 1);
}

#[test]
fn a_last_pass_from_the_future_is_a_wrong_clock() {
    let (_up, _daemon, url) = served();
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    let mut state = m.state_json();
    state["last_pass"]["finished_at"] = "2099-01-01T00:00:00Z".into();
    std::fs::write(
        m.state.join("state.json"),
        serde_json::to_vec_pretty(&state).unwrap(),
    )
    .unwrap();
    for max_age in ["1h", "0"] {
        let status = m.run(&["status", "--max-age", max_age]).expect(1);
        assert!(
            status.stdout.lines().any(|l| l.starts_with("unhealthy:")
                && l.contains("2099-01-01T00:00:00Z")
                && l.contains("is the clock right?")),
            "{}",
            status.stdout
        );
    }
}
