//! What reaches the entry point (descriptors), what the env file may hold (NUL), where a
//! config error is recorded, what an unparsable URL shows, what the checkout link becomes on a
//! pass with nothing new, and how the lock's holder and the missing URL are named.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{applied_machine, everything_shown, Machine, Run, RECORDING_RUN_SH};
use crate::support::Upstream;

/// Records the descriptors the entry point's shell holds, and whether fd 9 is one of them.
const FDS_RUN_SH: &str = "#!/bin/sh\nfor fd in /proc/$$/fd/*; do echo \"${fd##*/} $(readlink $fd)\"; done > \"$OUT/fds\"\nif [ -e /proc/$$/fd/9 ]; then echo leaked > \"$OUT/fd9\"; fi\n";

#[test]
fn the_entry_point_gets_no_descriptor_gitops_inherited() {
    let up = Upstream::new();
    up.commit(&[("run.sh", FDS_RUN_SH)], "init");
    let m = Machine::new();
    // As cron's `flock LOCK gitops sync` hands over its lock: a descriptor open across exec.
    let held = std::fs::File::create(m.dir.path().join("held")).unwrap();
    let mut cmd = m.command();
    cmd.args(["sync", "--repo-url", &up.file_url()]);
    {
        use std::os::fd::AsRawFd;
        let fd = held.as_raw_fd();
        // SAFETY: dup2(2) is async-signal-safe; the new descriptor is not close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                if nix::libc::dup2(fd, 9) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    Run::of(&mut cmd).expect(0);
    let fds = std::fs::read_to_string(m.out.join("fds")).unwrap();
    assert!(
        !m.out.join("fd9").exists(),
        "the entry point inherited gitops' fd 9: {fds}"
    );
    // 0-2, the pass lock, and what the shell opens itself: its script, a copy of its output
    // pipe saved across the redirection, the pipe of $(readlink).
    for line in fds.lines() {
        let (fd, target) = line.split_once(' ').unwrap();
        let expected = matches!(fd, "0" | "1" | "2")
            || target == m.state.join("lock").to_str().unwrap()
            || target.ends_with("/run.sh")
            || target.starts_with("pipe:");
        assert!(
            expected,
            "the entry point holds fd {fd} on {target}:\n{fds}"
        );
    }
    assert!(
        fds.contains(m.state.join("lock").to_str().unwrap()),
        "{fds}"
    );
}

#[test]
fn a_daemon_started_under_the_cron_line_does_not_keep_the_next_tick_out() {
    // The entry point leaves a daemon behind, as `systemctl start` of a forking service does
    // on an OpenRC machine. The next cron tick must still get flock's lock.
    let up = Upstream::new();
    let daemon_run_sh = "#!/bin/sh\necho ran >> \"$OUT/runs\"\n(trap '' HUP; exec sleep 30) >/dev/null 2>&1 </dev/null &\necho $! > \"$OUT/daemon\"\n";
    up.commit(&[("run.sh", daemon_run_sh)], "init");
    let m = Machine::new();
    let lock = m.dir.path().join("cron.lock");
    let entry = gitops_cron_line(&lock);
    let tick = || {
        let mut cmd = m.command();
        cmd.env("GITOPS_REPO_URL", up.file_url())
            .env("GITOPS_BIN", env!("CARGO_BIN_EXE_gitops"));
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c").arg(&entry).stdin(Stdio::null());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => sh.env(key, value),
                None => sh.env_remove(key),
            };
        }
        Run::of(&mut sh)
    };
    let first = tick();
    let daemon: i32 = std::fs::read_to_string(m.out.join("daemon"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _reap = KillOnDrop(daemon);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(m.runs().len(), 1);
    // flock -n would exit 1 (and gitops not run) if the daemon still held the cron lock.
    let probe = Command::new("flock")
        .args(["-n"])
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap();
    assert!(
        probe.success(),
        "the daemon left by run.sh holds the cron lock"
    );
    assert_eq!(tick().code, 0);
}

/// The command of the installed cron line, with the test's lock and binary put in.
fn gitops_cron_line(lock: &Path) -> String {
    let root = tempfile::tempdir().unwrap();
    let m = Machine::new();
    let mut cmd = m.command();
    cmd.args(["install-units", "--init", "cron", "--root"])
        .arg(root.path());
    Run::of(&mut cmd).expect(0);
    let cron = std::fs::read_to_string(root.path().join("etc/cron.d/gitops")).unwrap();
    let line = cron
        .lines()
        .find(|l| l.contains("gitops sync"))
        .expect("a job line");
    let command = line.split_once(" root ").unwrap().1;
    let command = command.split(" 2>&1").next().unwrap();
    assert!(command.starts_with("flock -n -o "), "{command}");
    command
        .replace("/run/gitops.cron.lock", &lock.display().to_string())
        .replace("/usr/bin/gitops", "\"$GITOPS_BIN\"")
}

struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[test]
fn a_nul_byte_in_the_env_file_is_a_usage_error_naming_the_line() {
    let (_up, _daemon, m, url) = applied_machine();
    for text in [
        "# ok\nGITOPS_BRANCH=ma\0in\n",
        "# ok\nGITOPS_BR\0ANCH=main\n",
    ] {
        std::fs::write(&m.config, text).unwrap();
        for args in [&["sync", "--repo-url", &url][..], &["status"][..]] {
            let run = m.run(args).expect(2);
            let line = run.error_line();
            assert!(
                line.contains(&m.config.display().to_string()) && line.contains("line 2"),
                "{args:?}: {line}"
            );
        }
    }
    std::fs::write(&m.config, "").unwrap();
    m.run(&["status"]).expect(1);
    assert_eq!(m.state_json()["last_pass"]["outcome"], "config-error");
}

#[test]
fn an_env_file_that_does_not_load_is_recorded_only_where_the_caller_said() {
    let (_up, _daemon, m, url) = applied_machine();
    // The file names a state directory of its own, then fails to load.
    let named_by_file = m.dir.path().join("from-file");
    std::fs::write(
        &m.config,
        [
            format!("GITOPS_STATE_DIR={}\n", named_by_file.display()).as_bytes(),
            b"GITOPS_BRANCH=caf\xe9\n",
        ]
        .concat(),
    )
    .unwrap();
    // From the process environment (GITOPS_STATE_DIR of Machine::command).
    m.sync(&url, &[]).expect(2).error_line();
    assert_eq!(m.state_json()["last_pass"]["outcome"], "config-error");
    assert!(!named_by_file.exists());
    // From the flag.
    let flagged = Machine::new();
    let (_up2, _daemon2, source, url2) = applied_machine();
    std::fs::rename(&source.state, &flagged.state).unwrap();
    let mut cmd = m.command();
    cmd.env_remove("GITOPS_STATE_DIR")
        .args(["sync", "--repo-url", &url2, "--state-dir"])
        .arg(&flagged.state);
    Run::of(&mut cmd).expect(2).error_line();
    assert_eq!(flagged.state_json()["last_pass"]["outcome"], "config-error");
    assert!(!named_by_file.exists());
}

#[test]
fn an_http_password_of_any_character_is_masked_when_the_url_is_refused() {
    for (url, secret) in [
        ("http://u:my secret@127.0.0.1:1/r.git", "my secret"),
        ("http://u:q\"uo<te>@127.0.0.1:1/r.git", "uo<te"),
        ("http://u:my secret@", "my secret"),
    ] {
        let m = Machine::new();
        let run = m.sync(url, &[]).expect(2);
        let line = run.error_line();
        assert!(
            line.contains("clear text") || line.contains("not a usable Git URL"),
            "{line}"
        );
        let all = everything_shown(&m, &run);
        assert!(
            !all.contains(secret) && !all.contains("secret") && !all.contains("te>"),
            "{url}: {all}"
        );
    }
    let m = Machine::new();
    let line = m
        .sync("http://u:my secret@127.0.0.1:1/r.git", &[])
        .error_line();
    assert!(line.contains("http://***@127.0.0.1:1/r.git"), "{line}");
}

#[test]
fn the_missing_url_error_names_the_env_file_in_use() {
    let m = Machine::new();
    let line = m.run(&["sync"]).expect(2).error_line();
    assert!(
        line.contains(&format!("GITOPS_REPO_URL in {}", m.config.display())),
        "{line}"
    );
    let mut cmd = m.command();
    cmd.args(["--config", "/dev/null", "sync"]);
    let line = Run::of(&mut cmd).expect(2).error_line();
    assert!(line.contains("GITOPS_REPO_URL in /dev/null"), "{line}");
}

#[test]
fn an_up_to_date_pass_sets_a_new_or_broken_checkout_link() {
    let (_up, _daemon, m, url) = applied_machine();
    let tree = m.state.join("trees").join(m.applied().unwrap());
    assert_eq!(m.linked_tree(), tree);

    // A new --checkout shows at once, not at the next commit.
    let new = m.dir.path().join("co-new");
    let run = m
        .sync(&url, &["--checkout", new.to_str().unwrap()])
        .expect(0);
    assert_eq!(std::fs::read_link(&new).unwrap(), tree, "{}", run.stderr);
    assert!(
        run.stderr.contains("is missing; pointed it at"),
        "{}",
        run.stderr
    );
    assert_eq!(m.runs().len(), 1, "nothing ran again");

    // Removed, or pointed elsewhere by hand: set right, said in one line.
    std::fs::remove_file(&m.checkout).unwrap();
    let run = m.sync(&url, &[]).expect(0);
    assert_eq!(m.linked_tree(), tree);
    std::fs::remove_file(&m.checkout).unwrap();
    std::os::unix::fs::symlink(&m.out, &m.checkout).unwrap();
    let run2 = m.sync(&url, &[]).expect(0);
    assert_eq!(m.linked_tree(), tree);
    let said: Vec<&str> = run2
        .stderr
        .lines()
        .filter(|l| l.contains("pointed it at"))
        .collect();
    assert_eq!(said.len(), 1, "{}", run2.stderr);
    assert!(
        said[0].contains(&format!("points at {}", m.out.display())),
        "{}",
        said[0]
    );
    // And a link that is right is left alone, silently.
    let run3 = m.sync(&url, &[]).expect(0);
    assert!(!run3.stderr.contains("pointed it at"), "{}", run3.stderr);
    assert!(run.stderr.contains("pointed it at"), "{}", run.stderr);

    // An unusable path is the config error an apply would give, on this pass already.
    let file = m.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let bad = file.join("co");
    let line = m
        .sync(&url, &["--checkout", bad.to_str().unwrap()])
        .expect(2)
        .error_line();
    assert!(line.contains(&bad.display().to_string()), "{line}");
    assert_eq!(m.state_json()["last_pass"]["outcome"], "config-error");
    assert_eq!(m.runs().len(), 1);
}

#[test]
fn a_checkout_with_a_trailing_slash_is_the_link_itself() {
    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let m = Machine::new();
    let url = up.file_url();
    let slashed = format!("{}/co9/", m.dir.path().display());
    m.sync(&url, &["--checkout", &slashed]).expect(0);
    let link = m.dir.path().join("co9");
    let tree = m.state.join("trees").join(m.applied().unwrap());
    assert_eq!(std::fs::read_link(&link).unwrap(), tree);
    // The next passes find the link (not the tree behind it) and have nothing to do.
    for _ in 0..2 {
        let run = m.sync(&url, &["--checkout", &slashed]).expect(0);
        assert!(!run.stderr.contains("applying"), "{}", run.stderr);
        assert!(!run.stderr.contains("pointed it at"), "{}", run.stderr);
    }
    assert_eq!(std::fs::read_link(&link).unwrap(), tree);
    assert_eq!(m.runs().len(), 1);
    assert_eq!(m.runs()[0].split(' ').nth(3), Some(link.to_str().unwrap()));
}

#[test]
fn a_lock_held_by_another_program_is_not_blamed_on_a_killed_pass() {
    let (_up, _daemon, m, url) = applied_machine();
    // Its own process group, so that sleep goes with flock at the end.
    let holder = Command::new("flock")
        .arg(m.state.join("lock"))
        .args(["sleep", "30"])
        .process_group(0)
        .spawn()
        .unwrap();
    let _reap = KillGroupOnDrop(holder);
    // flock(1) takes the lock before it starts sleep.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let free = Command::new("flock")
            .args(["-n"])
            .arg(m.state.join("lock"))
            .arg("true")
            .status()
            .unwrap()
            .success();
        if !free {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "flock never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = m.sync(&url, &["--lock-timeout", "1s"]).expect(75);
    assert!(
        !run.stderr.contains("left running by a gitops pass"),
        "{}",
        run.stderr
    );
    let line = run.error_line();
    assert!(
        line.contains("(sleep): a program other than a gitops pass, for instance the entry point of a pass that was killed"),
        "{line}"
    );
}

struct KillGroupOnDrop(std::process::Child);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.0.wait();
    }
}
