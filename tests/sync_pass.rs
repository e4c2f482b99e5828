//! The pass over git://: apply, no-op, retry, always, rewind, default branch, retention.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Machine, RECORDING_RUN_SH};
use crate::support::{GitDaemon, Upstream};

fn served() -> (Upstream, GitDaemon, String) {
    let up = Upstream::new();
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    (up, daemon, url)
}

#[test]
fn first_pass_applies_and_the_next_is_a_no_op() {
    let (up, _daemon, url) = served();
    let first = up.commit(
        &[("run.sh", RECORDING_RUN_SH), ("etc/motd", "hello\n")],
        "Set the motd",
    );
    let m = Machine::new();

    let run = m.sync(&url, &[]).expect(0);
    assert!(run.stderr.contains("applying"), "{}", run.stderr);
    assert_eq!(
        m.runs(),
        [format!("{first}  main {}", m.checkout.display())]
    );
    assert_eq!(m.linked_tree(), m.state.join("trees").join(&first));
    assert_eq!(
        std::fs::read_to_string(m.checkout.join("etc/motd")).unwrap(),
        "hello\n"
    );

    let state = m.state_json();
    assert_eq!(state["applied"]["commit"], first.as_str());
    assert_eq!(state["branch"], "main");
    assert_eq!(state["repo_url"], url.as_str());
    assert_eq!(state["last_pass"]["outcome"], "applied");
    assert_eq!(state["last_pass"]["remote_commit"], first.as_str());
    assert!(state["pending"].is_null());
    assert_eq!(state["consecutive_failures"], 0);

    // Nothing moved: nothing runs.
    m.sync(&url, &[]).expect(0);
    assert_eq!(m.runs().len(), 1);
    assert_eq!(m.state_json()["last_pass"]["outcome"], "up-to-date");

    // A new commit applies, with the previous one in the environment.
    let second = up.commit(&[("etc/motd", "bye\n")], "Change the motd");
    m.sync(&url, &[]).expect(0);
    assert_eq!(
        m.runs()[1],
        format!("{second} {first} main {}", m.checkout.display())
    );
    assert_eq!(
        std::fs::read_to_string(m.checkout.join("etc/motd")).unwrap(),
        "bye\n"
    );
    assert_eq!(
        m.trees(),
        [second.as_str()],
        "the superseded tree is removed"
    );
}

#[test]
fn state_is_private() {
    let (up, _daemon, url) = served();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&m.state), 0o700);
    assert_eq!(mode(&m.state.join("state.json")), 0o600);
    let log = m.state.join("logs").join(&m.logs()[0]);
    assert_eq!(mode(&log), 0o600);
}

#[test]
fn a_failed_apply_is_retried_until_it_succeeds() {
    let (up, _daemon, url) = served();
    let good = up.commit(&[("run.sh", RECORDING_RUN_SH)], "good");
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);

    let failing =
        "#!/bin/sh\necho \"try $GITOPS_COMMIT\" >> \"$OUT/runs\"\necho broken config >&2\nexit 3\n";
    let bad = up.commit(&[("run.sh", failing)], "breaks");
    let run = m.sync(&url, &[]).expect(1);
    assert!(
        run.stdout.contains("broken config"),
        "entry point output reaches stdout: {run:?}"
    );
    assert!(run.error_line().contains("run.sh exited with status 3"));
    let state = m.state_json();
    assert_eq!(
        state["applied"]["commit"],
        good.as_str(),
        "applied means exit 0, nothing else"
    );
    assert_eq!(state["pending"]["commit"], bad.as_str());
    assert_eq!(state["pending"]["attempts"], 1);
    assert_eq!(state["last_pass"]["outcome"], "apply-failed");
    assert_eq!(state["consecutive_failures"], 1);
    let log = state["pending"]["log"].as_str().unwrap().to_string();
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("broken config"),
        "the log keeps the output"
    );
    // The tried tree and the applied one are both kept.
    let mut expected = vec![good.clone(), bad.clone()];
    expected.sort();
    assert_eq!(m.trees(), expected);

    // The remote did not move, and the commit is still retried.
    m.sync(&url, &[]).expect(1);
    assert_eq!(m.state_json()["pending"]["attempts"], 2);
    assert_eq!(m.state_json()["consecutive_failures"], 2);
    assert_eq!(m.runs().len(), 3);

    let status = m.run(&["status"]).expect(1);
    assert!(
        status.stdout.contains("after 2 failed attempts"),
        "{}",
        status.stdout
    );

    let fixed = up.commit(&[("run.sh", RECORDING_RUN_SH)], "fix");
    m.sync(&url, &[]).expect(0);
    let state = m.state_json();
    assert_eq!(state["applied"]["commit"], fixed.as_str());
    assert!(state["pending"].is_null());
    assert_eq!(state["consecutive_failures"], 0);
    m.run(&["status"]).expect(0);
}

#[test]
fn apply_always_reruns_every_pass() {
    let (up, _daemon, url) = served();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let m = Machine::new();
    for _ in 0..3 {
        m.sync(&url, &["--apply", "always"]).expect(0);
    }
    assert_eq!(m.runs().len(), 3);
    m.sync(&url, &["--apply", "on-change"]).expect(0);
    assert_eq!(m.runs().len(), 3);
    let run = m.sync(&url, &["--apply", "sometimes"]).expect(2);
    assert!(
        run.stderr.contains("on-change"),
        "valid values are listed: {}",
        run.stderr
    );
}

#[test]
fn a_rewritten_history_is_refused_unless_allowed() {
    let (up, _daemon, url) = served();
    let first = up.commit(&[("run.sh", RECORDING_RUN_SH), ("v", "1")], "one");
    let second = up.commit(&[("v", "2")], "two");
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(second.as_str()));

    up.rewind(&first);
    let run = m.sync(&url, &[]).expect(4);
    assert!(run.error_line().contains("--allow-rewind"));
    assert_eq!(m.runs().len(), 1, "nothing ran");
    assert_eq!(
        m.linked_tree(),
        m.state.join("trees").join(&second),
        "checkout untouched"
    );
    let state = m.state_json();
    assert_eq!(state["applied"]["commit"], second.as_str());
    assert_eq!(state["last_pass"]["outcome"], "refused");
    assert_eq!(state["last_pass"]["remote_commit"], first.as_str());

    // A force-push to an unrelated commit is refused as well.
    let unrelated = up.commit(&[("v", "3")], "three on top of one");
    m.sync(&url, &[]).expect(4);

    // The env file says it the way env files do; "0" keeps refusing, "yes" allows.
    std::fs::write(&m.config, "GITOPS_ALLOW_REWIND=0\n").unwrap();
    m.sync(&url, &[]).expect(4);
    std::fs::write(&m.config, "GITOPS_ALLOW_REWIND=yes\n").unwrap();
    m.sync(&url, &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(unrelated.as_str()));

    up.rewind(&first);
    std::fs::write(&m.config, "").unwrap();
    m.sync(&url, &["--allow-rewind"]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(first.as_str()));
}

#[test]
fn follows_the_remote_default_branch_or_the_configured_one() {
    let (up, _daemon, url) = served();
    up.commit(&[("run.sh", RECORDING_RUN_SH), ("which", "main")], "main");
    up.push_branch("trunk");
    let trunk_tip = up.commit(&[("which", "trunk-only")], "later on main");
    // HEAD of the bare repository now names trunk, which lags behind main.
    up.set_head("trunk");
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    assert_eq!(m.state_json()["branch"], "trunk");
    assert_ne!(m.applied().as_deref(), Some(trunk_tip.as_str()));

    let m2 = Machine::new();
    m2.sync(&url, &["--branch", "main"]).expect(0);
    assert_eq!(m2.applied().as_deref(), Some(trunk_tip.as_str()));
    assert_eq!(
        std::fs::read_to_string(m2.checkout.join("which")).unwrap(),
        "trunk-only"
    );
}

#[test]
fn only_the_newest_twenty_logs_are_kept() {
    let (up, _daemon, url) = served();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let m = Machine::new();
    std::fs::create_dir_all(m.state.join("logs")).unwrap();
    // As gitops makes it: a state directory open to others is refused.
    std::fs::set_permissions(&m.state, std::fs::Permissions::from_mode(0o700)).unwrap();
    for i in 0..25 {
        std::fs::write(
            m.state
                .join("logs")
                .join(format!("20200101T0000{i:02}Z-old.log")),
            "",
        )
        .unwrap();
    }
    m.sync(&url, &[]).expect(0);
    let logs = m.logs();
    assert_eq!(logs.len(), 20);
    assert!(
        !logs[19].contains("old"),
        "the newest log is this apply's: {logs:?}"
    );
}

#[test]
fn the_entry_point_option_and_a_non_executable_entry_point() {
    let (up, _daemon, url) = served();
    up.commit_file_mode("deploy/apply.sh", RECORDING_RUN_SH, 0o644, "not executable");
    let m = Machine::new();
    let run = m.sync(&url, &["--entrypoint", "deploy/apply.sh"]).expect(0);
    assert!(
        run.stderr
            .contains("not executable; running it with /bin/sh"),
        "{}",
        run.stderr
    );
    assert_eq!(m.runs().len(), 1);
    let log = m.state_json()["applied"]["log"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        std::fs::read_to_string(log)
            .unwrap()
            .contains("not executable"),
        "the log says so too"
    );
}

#[test]
fn a_missing_entry_point_fails_with_its_path() {
    let (up, _daemon, url) = served();
    up.commit(&[("README", "no entry point here")], "init");
    let m = Machine::new();
    let run = m.sync(&url, &[]).expect(1);
    let line = run.error_line();
    assert!(
        line.contains(&m.checkout.join("run.sh").display().to_string()),
        "{line}"
    );
    assert_eq!(m.state_json()["pending"]["attempts"], 1);
}

#[test]
fn the_apply_timeout_kills_the_whole_process_group() {
    let (up, _daemon, url) = served();
    // The background child ignores SIGTERM: only the SIGKILL to the group after the grace
    // period ends it, although the shell above it dies on the SIGTERM at once.
    let run_sh =
        "#!/bin/sh\n(trap '' TERM; exec sleep 300) &\necho $! > \"$OUT/child\"\nsleep 300\n";
    up.commit(&[("run.sh", run_sh)], "hangs");
    let m = Machine::new();
    let run = m.sync(&url, &["--apply-timeout", "1s"]).expect(1);
    assert!(run.error_line().contains("did not finish within 1s"));
    let child: i32 = std::fs::read_to_string(m.out.join("child"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The background child was in the entry point's process group: it is gone too.
    let alive = std::path::Path::new(&format!("/proc/{child}")).exists()
        && !std::fs::read_to_string(format!("/proc/{child}/stat"))
            .unwrap_or_default()
            .contains(") Z ");
    assert!(!alive, "background child {child} survived the timeout");
    assert_eq!(m.state_json()["last_pass"]["outcome"], "apply-failed");
}

#[test]
fn a_corrupt_state_file_is_moved_aside() {
    let (up, _daemon, url) = served();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let m = Machine::new();
    std::fs::create_dir_all(&m.state).unwrap();
    std::fs::set_permissions(&m.state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(
        m.state.join("state.json"),
        "{\"applied\": {\"commit\": \"ab",
    )
    .unwrap();
    let status = m.run(&["status"]).expect(1);
    assert!(
        status.error_line().contains("unreadable"),
        "{}",
        status.stderr
    );
    let run = m.sync(&url, &[]).expect(0);
    assert!(
        run.stderr.contains("warning") && run.stderr.contains("moved it to"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"));
    assert_eq!(m.state_json()["last_pass"]["outcome"], "applied");
    assert!(crate::harness::names(&m.state)
        .iter()
        .any(|n| n.starts_with("state.json.corrupt-")));
}

#[test]
fn the_shipped_example_repository_applies() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
    let up = Upstream::new();
    let files: Vec<(String, String)> = ["run.sh", "motd", "README.md"]
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::read_to_string(example.join(f)).unwrap(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let commit = up.commit(&refs, "example");
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    let root = m.dir.path().join("root");
    let mut cmd = m.command();
    cmd.args(["sync", "--repo-url", &daemon.url("config.git")])
        .env("DEMO_ROOT", &root);
    assert!(cmd.status().unwrap().success());
    let motd = std::fs::read_to_string(root.join("etc/motd")).unwrap();
    assert!(motd.contains(&format!("Commit: {commit}")), "{motd}");
}

#[test]
fn only_the_followed_branch_is_fetched() {
    let (up, _daemon, url) = served();
    let main = up.commit(&[("run.sh", RECORDING_RUN_SH)], "main");
    let other = up.commit(&[("big", "only on the other branch")], "other");
    up.push_branch("feature");
    up.rewind(&main);
    let m = Machine::new();
    m.sync(&url, &["--branch", "main"]).expect(0);
    let store = m.state.join("repo.git");
    let refs = crate::support::run(
        crate::support::git(m.dir.path())
            .arg("--git-dir")
            .arg(&store)
            .args(["for-each-ref", "--format=%(refname)"]),
    );
    // The followed branch, and the store's record of the applied commit.
    assert_eq!(refs.trim(), "refs/gitops/applied\nrefs/remotes/origin/main");
    let has_other = crate::support::output(
        crate::support::git(m.dir.path())
            .arg("--git-dir")
            .arg(&store)
            .args(["cat-file", "-e", &other]),
    );
    assert!(
        !has_other.status.success(),
        "the feature branch's commit was fetched"
    );
}

#[test]
fn the_entry_point_gets_the_callers_umask_while_state_stays_private() {
    let (up, _daemon, url) = served();
    up.commit(
        &[
            ("run.sh", "#!/bin/sh\numask > \"$OUT/umask\"\n"),
            ("notes.txt", "kept as 0644\n"),
        ],
        "init",
    );
    let m = Machine::new();
    let mut cmd = m.command();
    // Start gitops under umask 022 whatever the test runner has.
    cmd.arg("sync").arg("--repo-url").arg(&url);
    let mut sh = std::process::Command::new("/bin/sh");
    for (key, _) in std::env::vars() {
        if key.starts_with("GITOPS_") || key == "REPO_URL" {
            sh.env_remove(key);
        }
    }
    let status = sh
        .arg("-c")
        .arg("umask 022 && exec \"$@\"")
        .arg("sh")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(m.out.join("umask")).unwrap().trim(),
        "0022"
    );
    // The tree has the modes a `git clone` under that umask gives, so what run.sh copies out
    // of it stays readable; everything of gitops' own stays private.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let tree = m.linked_tree();
    assert_eq!(mode(&tree.join("run.sh")), 0o755);
    assert_eq!(mode(&tree.join("notes.txt")), 0o644);
    assert_eq!(mode(&tree), 0o755);
    for private in ["trees", "repo.git", "logs"] {
        assert_eq!(mode(&m.state.join(private)), 0o700, "{private}");
    }
    let mode = std::fs::metadata(m.state.join("state.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn an_existing_state_dir_keeps_its_mode() {
    let (up, _daemon, url) = served();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let m = Machine::new();
    std::fs::create_dir(&m.state).unwrap();
    std::fs::set_permissions(&m.state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = m.sync(&url, &[]).expect(2);
    assert!(run.error_line().contains("chmod 700"), "{}", run.stderr);
    let mode = std::fs::metadata(&m.state).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o755,
        "gitops refuses, and does not chmod, a directory it did not create"
    );
}
