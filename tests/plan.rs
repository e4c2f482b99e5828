//! `gitops plan`: what the next pass would do, found by a real fetch from a served repository,
//! with nothing of the machine changed and nothing of the repository run.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::harness::{applied_machine, served, wait_for, Machine, Run, RECORDING_RUN_SH};
use crate::support::Upstream;

fn plan(m: &Machine, url: &str, args: &[&str]) -> Run {
    let run = m.run(&[&["plan", "--repo-url", url][..], args].concat());
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

/// Everything of the machine a plan must leave as it was: every entry of the state directory
/// but the object store (which a fetch writes), with its mode, size, times and contents, the
/// checkout link, and what the entry points wrote.
fn snapshot(m: &Machine) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel == "repo.git" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mut line = format!(
                "{rel} mode={:o} size={} mtime={}.{} ctime={}.{}",
                meta.mode(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec()
            );
            if meta.file_type().is_symlink() {
                line.push_str(&format!(" -> {:?}", std::fs::read_link(&path).unwrap()));
            } else if meta.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                line.push_str(&format!(" {:?}", String::from_utf8_lossy(&bytes)));
            }
            out.push(line);
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    let root = std::fs::metadata(&m.state).unwrap();
    out.push(format!(". mtime={}.{}", root.mtime(), root.mtime_nsec()));
    walk(&m.state, &m.state, &mut out);
    let link = std::fs::symlink_metadata(&m.checkout).ok();
    out.push(format!(
        "checkout -> {:?} mtime={:?}",
        std::fs::read_link(&m.checkout).ok(),
        link.map(|l| (l.mtime(), l.mtime_nsec()))
    ));
    walk(&m.out, &m.out, &mut out);
    out
}

#[track_caller]
fn assert_unchanged(before: &[String], m: &Machine) {
    let after = snapshot(m);
    assert_eq!(before, after.as_slice(), "the plan changed the machine");
}

#[test]
fn a_new_commit_is_listed_with_its_files_and_entry_point_diff_and_nothing_changes() {
    let (up, _daemon, m, url) = applied_machine();
    let applied = m.applied().unwrap();
    // The new entry point would leave a marker: it must not appear.
    let marker = m.out.join("ran-new");
    let run_sh = format!("{RECORDING_RUN_SH}touch \"$OUT/ran-new\"\n");
    up.commit(&[("notes.txt", "one\ntwo\n")], "Add notes");
    let tip = up.commit(
        &[("run.sh", &run_sh), ("etc/motd", "hello\n")],
        "Set the motd",
    );
    up.commit_file_mode(".gitops/health", "#!/bin/sh\ntrue\n", 0o755, "Check it");
    let tip_after_health = up.remove("notes.txt", "Drop the notes");
    let before = snapshot(&m);
    let run = plan(&m, &url, &["--on-failure", "revert"]).expect(10);
    let out = &run.stdout;
    let short = &tip_after_health[..12];
    assert!(
        out.starts_with(&format!(
            "gitops plan: the next sync would apply {short} (new commit, attempt 1): exit 10"
        )),
        "{out}"
    );
    for subject in ["Add notes", "Set the motd", "Check it", "Drop the notes"] {
        assert!(out.contains(&format!("\"{subject}\"")), "{subject}: {out}");
    }
    assert!(
        out.contains(&format!("{} \"Set the motd\"", &tip[..12])),
        "{out}"
    );
    assert!(out.contains("commits:     4 new"), "{out}");
    // The diff stat against the applied commit: notes.txt came and went, so it is not there.
    assert!(
        out.contains("files:       3 changed, 4 insertions(+), 0 deletions(-)"),
        "{out}"
    );
    assert!(out.contains("A .gitops/health | +2"), "{out}");
    assert!(out.contains("A etc/motd       | +1"), "{out}");
    assert!(out.contains("M run.sh         | +1"), "{out}");
    assert!(!out.contains("notes.txt"), "{out}");
    // The entry point's own diff, with context.
    assert!(
        out.contains("entry point: run.sh (modified, executable)"),
        "{out}"
    );
    assert!(out.contains("  @@ -1,3 +1,4 @@\n   #!/bin/sh\n"), "{out}");
    assert!(out.contains("  +touch \"$OUT/ran-new\"\n"), "{out}");
    // The health policy the tip would be applied under.
    assert!(
        out.contains(&format!(
            "health:      .gitops/health (the commit's own), --health-timeout 2min, no retries; --on-failure revert: if it fails, the machine goes back to {}",
            &applied[..12]
        )),
        "{out}"
    );
    assert!(out.contains("suspended:   no"), "{out}");
    assert!(
        out.contains("reboot:      none: no reboot is requested"),
        "{out}"
    );
    // Nothing ran, nothing of the machine changed.
    assert!(!marker.exists(), "the plan ran the entry point");
    assert_eq!(m.runs().len(), 1);
    assert_unchanged(&before, &m);
    // And the pass does what the plan said.
    m.sync(&url, &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(tip_after_health.as_str()));
    assert!(marker.exists());
}

#[test]
fn nothing_new_exits_0_and_json_has_the_plan() {
    let (up, _daemon, m, url) = applied_machine();
    let applied = m.applied().unwrap();
    let before = snapshot(&m);
    let run = plan(&m, &url, &[]).expect(0);
    assert!(
        run.stdout.starts_with(&format!(
            "gitops plan: up to date at {}: the next sync would run nothing",
            &applied[..12]
        )),
        "{}",
        run.stdout
    );
    assert!(run
        .stdout
        .contains("entry point: run.sh (unchanged, executable)"));
    let json = plan(&m, &url, &["--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["decision"], "up-to-date");
    assert_eq!(v["outcome"], "up-to-date");
    assert_eq!(v["would_apply"], false);
    assert_eq!(v["tip"]["commit"], applied.as_str());
    assert_eq!(v["commits"]["total"], 0);
    assert_unchanged(&before, &m);

    let tip = up.commit(&[("run.sh", "#!/bin/sh\necho changed\n")], "Change it");
    let json = plan(&m, &url, &["--json"]).expect(10);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["decision"], "apply");
    assert_eq!(v["reason"], "new-commit");
    assert_eq!(v["attempt"], 1);
    assert_eq!(v["outcome"], "applied");
    assert_eq!(v["would_apply"], true);
    assert_eq!(v["branch"], "main");
    assert_eq!(v["tip"]["commit"], tip.as_str());
    assert_eq!(v["tip"]["subject"], "Change it");
    assert_eq!(v["applied"]["commit"], applied.as_str());
    assert_eq!(v["commits"]["total"], 1);
    assert_eq!(v["commits"]["list"][0]["subject"], "Change it");
    assert_eq!(v["files"]["total"], 1);
    assert_eq!(v["files"]["list"][0]["path"], "run.sh");
    assert_eq!(v["files"]["list"][0]["change"], "modified");
    assert_eq!(v["files"]["list"][0]["insertions"], 1);
    assert_eq!(v["files"]["list"][0]["deletions"], 2);
    assert_eq!(v["entrypoint"]["change"], "modified");
    let diff = v["entrypoint"]["diff"].as_array().unwrap();
    assert!(diff.iter().any(|l| l == "+echo changed"), "{diff:?}");
    assert_eq!(v["signature"]["verdict"], "not-configured");
    assert_eq!(v["health"]["on_failure"], "stay");
    assert!(v["suspension"].is_null());
    assert_eq!(v["reboot"]["decision"], "none");
    assert_unchanged(&before, &m);
}

#[test]
fn a_rewound_branch_is_refused_and_nothing_runs() {
    let (up, _daemon, url) = served();
    let m = Machine::new();
    let first = up.commit(&[("a", "1\n")], "first");
    m.sync(&url, &[]).expect(0);
    let second = up.commit(&[("a", "2\n")], "second");
    m.sync(&url, &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(second.as_str()));
    up.rewind(&first);
    let before = snapshot(&m);
    let run = plan(&m, &url, &[]).expect(0);
    assert!(
        run.stdout.starts_with(&format!(
            "gitops plan: the next sync would refuse {}: main no longer descends from the applied commit {}",
            &first[..12],
            &second[..12]
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("the branch no longer has 1 commit of the applied history"),
        "{}",
        run.stdout
    );
    let json = plan(&m, &url, &["--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        (v["decision"].as_str(), v["outcome"].as_str()),
        (Some("refuse"), Some("refused"))
    );
    // With --allow-rewind the pass would apply it: the plan says so.
    let run = plan(&m, &url, &["--allow-rewind"]).expect(10);
    assert!(
        run.stdout
            .contains("(rewind allowed by --allow-rewind, attempt 1)"),
        "{}",
        run.stdout
    );
    assert_unchanged(&before, &m);
}

#[test]
fn an_unsigned_commit_is_untrusted_and_a_signed_one_trusted() {
    use crate::trust::{allowed_signers, arg, commit, ssh_key};
    let keys = tempfile::tempdir().unwrap();
    let alice = ssh_key(keys.path(), "alice", &["-t", "ed25519"]);
    let signers = allowed_signers(keys.path(), &[format!("alice@example.org {}", alice.key())]);
    let up = Upstream::new();
    let url = up.file_url();
    let m = Machine::new();
    let signed = commit(&up, "signed", "signed", &alice.signing());
    let run = plan(&m, &url, &[&arg(&signers)]).expect(10);
    assert!(
        run.stdout
            .contains("signature:   trusted: signed by alice@example.org (ssh key"),
        "{}",
        run.stdout
    );
    m.sync(&url, &[&arg(&signers)]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(signed.as_str()));
    let unsigned = commit(&up, "unsigned", "unsigned", &[]);
    let before = snapshot(&m);
    let run = plan(&m, &url, &[&arg(&signers)]).expect(0);
    assert!(
        run.stdout.starts_with(&format!(
            "gitops plan: the next sync would refuse {} as untrusted: nothing would run (sync exits 5)",
            &unsigned[..12]
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "signature:   untrusted: commit {} is not signed",
            &unsigned[..12]
        )),
        "{}",
        run.stdout
    );
    let json = plan(&m, &url, &[&arg(&signers), "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["signature"]["verdict"], "untrusted");
    assert_eq!(v["outcome"], "untrusted");
    assert_unchanged(&before, &m);
}

/// suspended.json as `gitops suspend` writes it.
fn suspend(m: &Machine, until: &str) {
    let path = m.state.join("suspended.json");
    let record = format!(
        "{{\"by\":\"alice\",\"at\":\"2026-01-01T00:00:00Z\",\"until\":\"{until}\",\"reason\":\"db migration\"}}\n"
    );
    std::fs::write(&path, record).unwrap();
    crate::harness::chmod(&path, 0o600);
}

#[test]
fn a_suspension_holds_the_commit_back_and_an_expired_one_does_not() {
    let (up, _daemon, m, url) = applied_machine();
    let tip = up.commit(&[("a", "1\n")], "new");
    suspend(&m, "2999-01-01T00:00:00Z");
    let before = snapshot(&m);
    let run = plan(&m, &url, &[]).expect(0);
    assert!(
        run.stdout.starts_with(&format!(
            "gitops plan: the next sync would hold {} back: applies are suspended; nothing would run",
            &tip[..12]
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "suspended:   by alice since 2026-01-01T00:00:00Z until 2999-01-01T00:00:00Z (db migration)"
        ),
        "{}",
        run.stdout
    );
    let v: serde_json::Value =
        serde_json::from_str(&plan(&m, &url, &["--json"]).expect(0).stdout).unwrap();
    assert_eq!(v["outcome"], "suspended");
    assert_eq!(v["decision"], "apply");
    assert_eq!(v["suspension"]["active"], true);
    assert_unchanged(&before, &m);

    suspend(&m, "2001-01-01T00:00:00Z");
    let run = plan(&m, &url, &[]).expect(10);
    assert!(
        run.stdout
            .contains("suspended:   no (the suspension by alice ended at 2001-01-01T00:00:00Z)"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_first_plan_creates_only_the_state_directory_its_lock_and_the_store() {
    let (_up, _daemon, url) = served();
    let m = Machine::new();
    assert!(!m.state.exists());
    let run = plan(&m, &url, &[]).expect(10);
    assert!(
        run.stdout.contains("(first apply, attempt 1): exit 10"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("applied:     nothing yet"));
    assert!(run.stdout.contains("commits:     1 on the branch"));
    assert!(run.stdout.contains("A run.sh | +3"), "{}", run.stdout);
    assert!(run
        .stdout
        .contains("entry point: run.sh (added, executable)"));
    assert_eq!(crate::harness::names(&m.state), ["lock", "repo.git"]);
    let mode = std::fs::metadata(&m.state).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(std::fs::symlink_metadata(&m.checkout).is_err());
    assert!(m.runs().is_empty());
    // The first pass uses the store the plan fetched.
    m.sync(&url, &[]).expect(0);
    assert_eq!(m.runs().len(), 1);
}

#[test]
fn a_plan_waits_for_a_running_pass_up_to_the_lock_timeout() {
    let (up, _daemon, m, url) = applied_machine();
    // An entry point that holds the pass until told to go on.
    let waiting =
        "#!/bin/sh\ntouch \"$OUT/started\"\nwhile [ ! -e \"$OUT/go\" ]; do sleep 0.05; done\n";
    let tip = up.commit(&[("run.sh", waiting)], "slow");
    let pass = m.spawn(&["sync", "--repo-url", &url]);
    wait_for(&m.out.join("started"));
    let started = std::time::Instant::now();
    let run = plan(&m, &url, &["--lock-timeout", "1s"]).expect(75);
    assert!(started.elapsed() >= Duration::from_millis(900));
    let line = run.error_line();
    assert!(
        line.contains("another gitops pass holds the lock"),
        "{line}"
    );
    // A longer wait sees the pass end, and then plans from what it recorded.
    let waiter = m.spawn(&["plan", "--repo-url", &url, "--lock-timeout", "30s"]);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(m.out.join("go"), "").unwrap();
    Run::within(pass, Duration::from_secs(30)).expect(0);
    let run = Run::within(waiter, Duration::from_secs(30)).expect(0);
    assert!(
        run.stdout
            .starts_with(&format!("gitops plan: up to date at {}", &tip[..12])),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stderr.contains("another pass holds"), "{}", run.stderr);
}

#[test]
fn plans_at_once_each_fetch_and_plan() {
    let (up, _daemon, m, url) = applied_machine();
    for round in 0..3 {
        up.commit(&[("a", &format!("{round}\n"))], &format!("round {round}"));
        let plans: Vec<_> = (0..4)
            .map(|_| m.spawn(&["plan", "--repo-url", &url]))
            .collect();
        for child in plans {
            let run = Run::within(child, Duration::from_secs(60)).expect(10);
            assert!(
                run.stdout.contains(&format!("\"round {round}\"")),
                "{}",
                run.stdout
            );
            assert!(!run.stderr.contains("warning"), "{}", run.stderr);
        }
    }
    // The store is sound for the pass after them.
    m.sync(&url, &[]).expect(0);
}

#[test]
fn hostile_subjects_paths_and_lines_are_shown_escaped() {
    let (up, _daemon, m, url) = applied_machine();
    let hostile_run = format!("{RECORDING_RUN_SH}echo \"\x1b]0;owned\x07\x1b[2J\"\n");
    up.commit(
        &[("run.sh", &hostile_run), ("evil\x1b[31m\rname", "x\n")],
        "Innocent\x1b[2K\rgitops plan: up to date",
    );
    let run = plan(&m, &url, &[]).expect(10);
    let json = plan(&m, &url, &["--json"]).expect(10);
    for out in [&run.stdout, &json.stdout] {
        assert!(
            !out.contains('\x1b') && !out.contains('\r') && !out.contains('\x07'),
            "{out:?}"
        );
    }
    let out = &run.stdout;
    assert!(
        out.contains("\"Innocent\\x1b[2K\\x0dgitops plan: up to date\""),
        "{out}"
    );
    assert!(out.contains("A evil\\x1b[31m\\x0dname | +1"), "{out}");
    assert!(
        out.contains("+echo \"\\x1b]0;owned\\x07\\x1b[2J\""),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        v["tip"]["subject"],
        "Innocent\\x1b[2K\\x0dgitops plan: up to date"
    );
}

#[test]
fn a_tip_that_requests_a_reboot_shows_the_plan_for_it() {
    let (up, _daemon, m, url) = applied_machine();
    up.commit(
        &[(".gitops/reboot", "after = 2999-01-01T00:00:00Z\n")],
        "Reboot into the new kernel",
    );
    let run = plan(&m, &url, &[]).expect(10);
    assert!(
        run.stdout.contains(
            "reboot:      scheduled: a reboot is due at 2999-01-01T00:00:00Z (requested after 2999-01-01T00:00:00Z)"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(".gitops/reboot of"), "{}", run.stdout);
    up.commit(&[(".gitops/reboot", "after = tomorrow\n")], "Bad request");
    let run = plan(&m, &url, &[]).expect(10);
    assert!(
        run.stdout
            .contains("reboot:      invalid: the reboot request cannot be used"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_commit_held_back_after_a_revert_is_planned_as_held_back_and_the_plan_matches_the_pass() {
    let (up, _daemon, url) = served();
    let m = Machine::new();
    m.sync(&url, &["--on-failure", "revert"]).expect(0);
    let bad = up.commit(&[("run.sh", "#!/bin/sh\nexit 3\n")], "fails");
    m.sync(&url, &["--on-failure", "revert"]).expect(1);
    let before = snapshot(&m);
    let run = plan(&m, &url, &["--json", "--on-failure", "revert"]).expect(0);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["decision"], "held-back", "{json}");
    let text = plan(&m, &url, &[]).expect(0);
    assert!(
        text.stdout
            .contains("failed and was reverted; nothing would run until the branch moves"),
        "{}",
        text.stdout
    );
    assert_eq!(json["outcome"], "reverted");
    assert_eq!(json["would_apply"], false);
    assert_eq!(json["tip"]["commit"], bad.as_str());
    assert_unchanged(&before, &m);
    // The pass that follows does what the plan said.
    m.sync(&url, &["--on-failure", "revert"]).expect(1);
    assert_eq!(m.state_json()["last_pass"]["outcome"], "reverted");
}
