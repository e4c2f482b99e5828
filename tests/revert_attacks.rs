//! `--on-failure revert` attacked: a hostile repository, a flaky machine, an impatient operator
//! and kill -9 at any moment. Whatever happens, a pass ends on a complete tree, a revert runs
//! at most once per pass and never loops, a held-back commit runs nothing, and state.json,
//! status and the exit code say what happened.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::{chmod, served, wait_for, Machine, Run};
use crate::receiver::Receiver;
use crate::revert::{linked_commit, reasons};

const REVERT: [&str; 2] = ["--on-failure", "revert"];

/// An entry point that records each run as "<commit> <reason> <previous>" and, while reverting
/// with $OUT/hold present, waits (announcing it in $OUT/reverting) until $OUT/hold goes.
const HOLDING_RUN_SH: &str = "#!/bin/sh\necho \"$GITOPS_COMMIT $GITOPS_REASON $GITOPS_PREVIOUS_COMMIT\" >> \"$OUT/reasons\"\nif [ \"$GITOPS_REASON\" = revert ] && [ -e \"$OUT/hold\" ]; then\n  touch \"$OUT/reverting\"\n  while [ -e \"$OUT/hold\" ]; do sleep 0.05; done\nfi\n";

/// The bad commit's entry point: records its run, then fails.
const FAILING_RUN_SH: &str = "#!/bin/sh\necho \"$GITOPS_COMMIT $GITOPS_REASON $GITOPS_PREVIOUS_COMMIT\" >> \"$OUT/reasons\"\nexit 3\n";

fn spawn_sync(m: &Machine, url: &str, args: &[&str]) -> std::process::Child {
    let mut cmd = m.command();
    cmd.arg("sync")
        .arg("--repo-url")
        .arg(url)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

/// A machine on `good` (the holding entry point) with `bad` (a failing one) on the branch.
fn good_then_bad() -> (
    crate::support::Upstream,
    crate::support::GitDaemon,
    Machine,
    String,
    String,
    String,
) {
    let (up, daemon, url) = served();
    let good = up.commit(&[("run.sh", HOLDING_RUN_SH)], "good");
    let m = Machine::new();
    m.sync(&url, &REVERT).expect(0);
    let bad = up.commit(&[("run.sh", FAILING_RUN_SH)], "bad");
    (up, daemon, m, url, good, bad)
}

#[test]
fn a_revert_stopped_by_sigterm_is_a_revert_that_did_not_finish_and_nothing_runs_after_it() {
    let (_up, _daemon, m, url, good, bad) = good_then_bad();
    std::fs::write(m.out.join("hold"), "").unwrap();
    let child = spawn_sync(&m, &url, &REVERT);
    wait_for(&m.out.join("reverting"));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopped = Run::within(child, Duration::from_secs(20)).expect(1);
    let line = stopped.error_line();
    assert!(line.contains("SIGTERM"), "{line}");
    std::fs::remove_file(m.out.join("hold")).unwrap();
    // Stopped halfway, the revert left the machine in no known state: as a revert that
    // failed, nothing more runs until the branch moves, the failed commit least of all.
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "revert-failed");
    assert_eq!(state["pending"]["outcome"], "revert-failed");
    assert_eq!(state["applied"]["commit"], good.as_str());
    m.sync(&url, &REVERT).expect(1);
    assert_eq!(
        reasons(&m)[1..],
        [
            format!("{bad} apply {good}"),
            format!("{good} revert {bad}")
        ]
    );
    assert_eq!(linked_commit(&m), good);
}

#[test]
fn sigterm_during_the_failing_entry_point_starts_no_revert() {
    let (up, _daemon, url) = served();
    let good = up.commit(&[("run.sh", HOLDING_RUN_SH)], "good");
    let m = Machine::new();
    m.sync(&url, &REVERT).expect(0);
    let waits = "#!/bin/sh\necho \"$GITOPS_COMMIT $GITOPS_REASON $GITOPS_PREVIOUS_COMMIT\" >> \"$OUT/reasons\"\ntouch \"$OUT/started\"\nwhile [ ! -e \"$OUT/never\" ]; do sleep 0.05; done\n";
    let bad = up.commit(&[("run.sh", waits)], "waits");
    let child = spawn_sync(&m, &url, &REVERT);
    wait_for(&m.out.join("started"));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopped = Run::within(child, Duration::from_secs(20)).expect(1);
    stopped.error_line();
    assert!(!stopped.stderr.contains("reverting"), "{}", stopped.stderr);
    assert_eq!(reasons(&m)[1..], [format!("{bad} apply {good}")]);
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "apply-failed");
    assert!(state["pending"]["outcome"].is_null(), "{state}");
    // The machine stays where it was stopped, on a complete tree of the commit.
    assert_eq!(linked_commit(&m), bad);
    assert_eq!(
        std::fs::read_to_string(m.checkout.join("run.sh")).unwrap(),
        waits
    );
}

/// The good commit's entry point kills gitops (kill -9 of its parent) while reverting, as
/// the OOM killer or a crash would, every time.
const KILLING_RUN_SH: &str = "#!/bin/sh\necho \"$GITOPS_COMMIT $GITOPS_REASON $GITOPS_PREVIOUS_COMMIT\" >> \"$OUT/reasons\"\nif [ \"$GITOPS_REASON\" = revert ]; then kill -9 $PPID; fi\n";

#[test]
fn a_revert_killed_every_time_never_loops_and_is_told_as_a_failed_revert() {
    let (up, _daemon, url) = served();
    let good = up.commit(&[("run.sh", KILLING_RUN_SH)], "good");
    let m = Machine::new();
    let hook = Receiver::start(vec![]);
    let file = m.dir.path().join("notify-url");
    std::fs::write(&file, hook.url("/hook") + "\n").unwrap();
    chmod(&file, 0o600);
    let metrics = m.dir.path().join("metrics");
    std::fs::create_dir(&metrics).unwrap();
    std::fs::write(
        &m.config,
        format!(
            "GITOPS_NOTIFY_URL_FILE={}\nGITOPS_NOTIFY_FORMAT=json\nGITOPS_ON_FAILURE=revert\nGITOPS_METRICS_DIR={}\n",
            file.display(),
            metrics.display()
        ),
    )
    .unwrap();
    m.sync(&url, &[]).expect(0);
    let bad = up.commit(&[("run.sh", FAILING_RUN_SH)], "bad");
    let killed = m.sync(&url, &[]);
    assert_eq!(killed.code, -1, "killed: {}", killed.stderr);
    assert_eq!(
        reasons(&m)[1..],
        [
            format!("{bad} apply {good}"),
            format!("{good} revert {bad}")
        ]
    );
    // Before the next pass, status says what the kill interrupted.
    let status = m.run(&["status"]);
    assert_eq!(status.code, 1, "{}", status.stdout);
    assert!(
        status.stdout.contains(&format!(
            "killed or crashed while reverting to {}",
            &good[..12]
        )),
        "{}",
        status.stdout
    );
    // The failed commit failed, and its revert did not finish: passes after it run nothing.
    for _ in 0..4 {
        let run = m.sync(&url, &[]).expect(1);
        run.error_line();
    }
    assert_eq!(reasons(&m).len(), 3, "a loop: {:?}", reasons(&m));
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "revert-failed", "{state}");
    assert_eq!(state["pending"]["commit"], bad.as_str());
    assert_eq!(state["pending"]["outcome"], "revert-failed");
    assert_eq!(state["applied"]["commit"], good.as_str());
    let status = m.run(&["status", "--json"]);
    assert_eq!(status.code, 1, "{}", status.stdout);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json["pending"]["outcome"], "revert-failed", "{json}");
    assert!(json["in_progress"].is_null(), "{json}");
    let status = m.run(&["status"]);
    assert!(status.stdout.contains("revert failed"), "{}", status.stdout);
    // Told once, as a failed revert of the commit, back on the applied one.
    let events: Vec<serde_json::Value> = hook
        .wait_for_requests(2, Duration::from_secs(10))
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["event"], "revert-failed", "{}", events[1]);
    assert_eq!(events[1]["commit"], bad.as_str());
    assert_eq!(events[1]["previous_commit"], good.as_str());
    let prom = std::fs::read_to_string(metrics.join("gitops.prom")).unwrap();
    for line in [
        "gitops_passes_total{outcome=\"revert-failed\"} 4",
        "gitops_last_pass_success 0",
        "gitops_consecutive_failures 5",
    ] {
        assert!(prom.contains(line), "{line} in:\n{prom}");
    }
}

#[test]
fn a_commit_that_deletes_its_entry_point_is_reverted() {
    let (up, _daemon, url) = served();
    let good = up.commit(&[("run.sh", HOLDING_RUN_SH)], "good");
    let m = Machine::new();
    m.sync(&url, &REVERT).expect(0);
    let bad = up.remove("run.sh", "no entry point");
    let run = m.sync(&url, &REVERT).expect(1);
    run.error_line();
    assert_eq!(reasons(&m).last().unwrap(), &format!("{good} revert {bad}"));
    assert_eq!(linked_commit(&m), good);
    assert_eq!(
        std::fs::read_to_string(m.checkout.join("run.sh")).unwrap(),
        HOLDING_RUN_SH
    );
    assert_eq!(m.state_json()["last_pass"]["outcome"], "reverted");
}

#[test]
fn a_health_check_that_hangs_is_killed_at_its_timeout_and_reverted() {
    let (up, _daemon, url) = served();
    let good = up.commit(&[("run.sh", HOLDING_RUN_SH)], "good");
    let m = Machine::new();
    m.sync(&url, &REVERT).expect(0);
    let bad = up.commit_file_mode(
        ".gitops/health",
        "#!/bin/sh\nsleep 600 &\nsleep 600\n",
        0o755,
        "hangs",
    );
    let child = spawn_sync(
        &m,
        &url,
        &["--on-failure", "revert", "--health-timeout", "1s"],
    );
    let run = Run::within(child, Duration::from_secs(30)).expect(1);
    assert!(run.error_line().contains("reverted to"), "{}", run.stderr);
    assert_eq!(reasons(&m).last().unwrap(), &format!("{good} revert {bad}"));
    assert_eq!(linked_commit(&m), good);
}

#[test]
fn a_revert_writes_the_applied_tree_again_when_it_was_removed_by_hand() {
    let (_up, _daemon, m, url, good, bad) = good_then_bad();
    std::fs::remove_dir_all(m.state.join("trees").join(&good)).unwrap();
    m.sync(&url, &REVERT).expect(1);
    assert_eq!(reasons(&m).last().unwrap(), &format!("{good} revert {bad}"));
    assert_eq!(linked_commit(&m), good);
    assert_eq!(
        std::fs::read_to_string(m.checkout.join("run.sh")).unwrap(),
        HOLDING_RUN_SH
    );
}

#[test]
fn apply_always_on_a_failing_applied_commit_is_not_reverted_and_is_retried() {
    let (up, _daemon, url) = served();
    up.commit(&[("run.sh", HOLDING_RUN_SH)], "good");
    let applied = up.commit_file_mode(
        ".gitops/health",
        "#!/bin/sh\n[ ! -e \"$OUT/broken\" ]\n",
        0o755,
        "checks the machine",
    );
    let m = Machine::new();
    let args = ["--on-failure", "revert", "--apply", "always"];
    m.sync(&url, &args).expect(0);
    // The applied commit itself fails its re-run: there is nothing else to go back to.
    std::fs::write(m.out.join("broken"), "").unwrap();
    let run = m.sync(&url, &args).expect(1);
    assert!(!run.stderr.contains("reverting"), "{}", run.stderr);
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "apply-failed");
    assert!(state["pending"]["outcome"].is_null(), "{state}");
    m.sync(&url, &args).expect(1);
    assert_eq!(m.state_json()["pending"]["attempts"], 2);
    assert_eq!(reasons(&m).len(), 3, "{:?}", reasons(&m));
    std::fs::remove_file(m.out.join("broken")).unwrap();
    m.sync(&url, &args).expect(0);
    assert_eq!(m.applied(), Some(applied));
    assert!(m.state_json()["pending"].is_null());
}

#[test]
fn a_force_push_back_to_the_applied_commit_ends_the_hold() {
    let (up, _daemon, m, url, good, _bad) = good_then_bad();
    m.sync(&url, &REVERT).expect(1);
    up.rewind(&good);
    let run = m.sync(&url, &REVERT).expect(0);
    assert!(!run.stderr.contains("error"), "{}", run.stderr);
    let state = m.state_json();
    assert!(state["pending"].is_null(), "{state}");
    assert_eq!(state["last_pass"]["outcome"], "up-to-date");
    assert_eq!(linked_commit(&m), good);
    assert_eq!(reasons(&m).len(), 3);
    m.run(&["status"]).expect(0);
}

#[test]
fn a_rewind_allowed_that_fails_is_reverted_and_the_record_stays() {
    let (up, _daemon, url) = served();
    let old = up.commit(&[("run.sh", FAILING_RUN_SH)], "old, failing");
    let good = up.commit(&[("run.sh", HOLDING_RUN_SH)], "good");
    let m = Machine::new();
    m.sync(&url, &REVERT).expect(0);
    up.rewind(&old);
    let args = ["--on-failure", "revert", "--allow-rewind"];
    m.sync(&url, &args).expect(1);
    assert_eq!(
        reasons(&m)[1..],
        [
            format!("{old} apply {good}"),
            format!("{good} revert {old}")
        ]
    );
    assert_eq!(linked_commit(&m), good);
    let state = m.state_json();
    assert_eq!(state["applied"]["commit"], good.as_str());
    assert_eq!(state["pending"]["outcome"], "reverted");
    // Held back with the rewind allowed; refused without it.
    m.sync(&url, &args).expect(1);
    m.sync(&url, &REVERT).expect(4);
    assert_eq!(reasons(&m).len(), 3);
}

/// An env file that sends JSON notifications to a receiver started here.
fn notified(m: &Machine) -> Receiver {
    let hook = Receiver::start(vec![]);
    let file = m.dir.path().join("notify-url");
    std::fs::write(&file, hook.url("/hook") + "\n").unwrap();
    chmod(&file, 0o600);
    std::fs::write(
        &m.config,
        format!(
            "GITOPS_NOTIFY_URL_FILE={}\nGITOPS_NOTIFY_FORMAT=json\n",
            file.display()
        ),
    )
    .unwrap();
    hook
}

fn events(hook: &Receiver, count: usize) -> Vec<serde_json::Value> {
    hook.wait_for_requests(count, Duration::from_secs(10))
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[test]
fn two_failing_commits_in_a_row_are_each_reverted_and_told() {
    let (up, _daemon, m, url, good, bad) = good_then_bad();
    let hook = notified(&m);
    m.sync(&url, &REVERT).expect(1);
    m.sync(&url, &REVERT).expect(1);
    let worse = up.commit(&[("motd", "x\n")], "still failing");
    let run = m.sync(&url, &REVERT).expect(1);
    assert!(run.error_line().contains(&worse[..12]), "{}", run.stderr);
    m.sync(&url, &REVERT).expect(1);
    assert_eq!(
        reasons(&m)[1..],
        [
            format!("{bad} apply {good}"),
            format!("{good} revert {bad}"),
            format!("{worse} apply {good}"),
            format!("{good} revert {worse}"),
        ]
    );
    let state = m.state_json();
    assert_eq!(state["pending"]["commit"], worse.as_str());
    assert_eq!(state["pending"]["attempts"], 1);
    assert_eq!(state["pending"]["outcome"], "reverted");
    assert_eq!(linked_commit(&m), good);
    // Only the applied tree and the held-back one are kept.
    let trees = m.trees();
    assert!(trees.len() <= 2 && trees.contains(&good), "{trees:?}");
    // One notification per revert, each naming its commit; none for the passes holding back.
    let told = events(&hook, 2);
    let told: Vec<(&str, &str, &str)> = told
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["commit"].as_str().unwrap(),
                e["previous_commit"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        told,
        [
            ("reverted", bad.as_str(), good.as_str()),
            ("reverted", worse.as_str(), good.as_str())
        ]
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hook.requests().len(), 2);
}

#[test]
fn a_clock_set_back_tries_a_reverted_commit_once_more_then_holds_it() {
    let (_up, _daemon, m, url, _good, _bad) = good_then_bad();
    m.sync(&url, &REVERT).expect(1);
    // The revert recorded as done in the future: the clock was set back since.
    let path = m.state.join("state.json");
    let mut state = m.state_json();
    state["pending"]["reverted_at"] = "2099-01-01T00:00:00Z".into();
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
    let args = ["--on-failure", "revert", "--retry-reverted", "1h"];
    m.sync(&url, &args).expect(1);
    assert_eq!(reasons(&m).len(), 5);
    for _ in 0..3 {
        m.sync(&url, &args).expect(1);
    }
    assert_eq!(reasons(&m).len(), 5, "{:?}", reasons(&m));
}

/// The packed blob of `content` damaged inside its pack, its length and trailer kept: only
/// reading that blob (or hashing the whole pack) shows it, as bit rot on a disk would.
fn rot_blob(m: &Machine, content: &str) {
    use crate::support::{git, run};
    let home = m.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let file = m.dir.path().join("blob");
    std::fs::write(&file, content).unwrap();
    let id = run(git(&home).arg("hash-object").arg(&file));
    let packs = m.state.join("repo.git/objects/pack");
    for name in crate::harness::names(&packs) {
        let Some(stem) = name.strip_suffix(".idx") else {
            continue;
        };
        let listing = run(git(&home)
            .arg("verify-pack")
            .arg("-v")
            .arg(packs.join(&name)));
        // "<id> blob <size> <size in pack> <offset>"
        let Some(line) = listing.lines().find(|l| l.starts_with(&id)) else {
            continue;
        };
        let fields: Vec<usize> = line
            .split_whitespace()
            .skip(2)
            .take(3)
            .map(|f| f.parse().unwrap())
            .collect();
        let (in_pack, offset) = (fields[1], fields[2]);
        let pack = packs.join(format!("{stem}.pack"));
        let mtime = std::fs::metadata(&pack).unwrap().modified().unwrap();
        chmod(&pack, 0o600);
        let mut bytes = std::fs::read(&pack).unwrap();
        // Past the object's header: its compressed data.
        for b in &mut bytes[offset + 2..offset + in_pack] {
            *b ^= 0x5a;
        }
        std::fs::write(&pack, bytes).unwrap();
        // Bit rot leaves the time alone: the quick look, which trusts a pack whose size and
        // time it checked before, does not see it.
        let file = std::fs::File::options().write(true).open(&pack).unwrap();
        file.set_modified(mtime).unwrap();
        return;
    }
    panic!("blob {id} is in no pack");
}

#[test]
fn a_revert_out_of_a_damaged_store_heals_it_and_reverts() {
    let (up, _daemon, url) = served();
    let site = "only the applied commit has this file\n";
    let good = up.commit(&[("run.sh", HOLDING_RUN_SH), ("site", site)], "good");
    let m = Machine::new();
    m.sync(&url, &REVERT).expect(0);
    up.remove("site", "no site");
    let bad = up.commit(&[("run.sh", FAILING_RUN_SH)], "bad");
    // The failed commit's tree is the spare brought up to date (reading its own blobs only);
    // the applied tree is written whole, and reads the rotten one.
    rot_blob(&m, site);
    let run = m.sync(&url, &REVERT).expect(1);
    let line = run.error_line();
    assert!(line.contains("was reverted to"), "{}", run.stderr);
    assert!(
        run.stderr.contains("fetched it again into a fresh store"),
        "{}",
        run.stderr
    );
    // One revert, its entry point run once, on the whole applied tree.
    assert_eq!(
        reasons(&m)[1..],
        [
            format!("{bad} apply {good}"),
            format!("{good} revert {bad}")
        ]
    );
    assert_eq!(linked_commit(&m), good);
    assert_eq!(
        std::fs::read_to_string(m.checkout.join("site")).unwrap(),
        site
    );
    let state = m.state_json();
    assert_eq!(state["pending"]["outcome"], "reverted", "{state}");
    // The next pass holds the commit back on the healed store, with nothing more to say.
    let next = m.sync(&url, &REVERT).expect(1);
    assert!(!next.stderr.contains("warning"), "{}", next.stderr);
    assert_eq!(reasons(&m).len(), 3);
}

/// The files of a commit with a large tree: writing it takes a while, so a kill can land in it.
fn many_files(run_sh: &'static str, tag: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = (0..600)
        .map(|i| {
            (
                format!("d{}/f{i}", i % 7),
                format!("{tag} {i}\n").repeat(20),
            )
        })
        .collect();
    files.push(("run.sh".into(), run_sh.into()));
    files
}

fn commit_files(
    up: &crate::support::Upstream,
    files: &[(String, String)],
    message: &str,
) -> String {
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    up.commit(&files, message)
}

/// Whether `tree` holds exactly `files` (and nothing else but directories).
fn holds_exactly(tree: &std::path::Path, files: &[(String, String)]) -> Result<(), String> {
    let mut found = 0;
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found += 1;
            }
        }
    }
    if found != files.len() {
        return Err(format!("{found} files, not {}", files.len()));
    }
    for (path, content) in files {
        let got = std::fs::read_to_string(tree.join(path)).map_err(|e| format!("{path}: {e}"))?;
        if &got != content {
            return Err(format!("{path} differs"));
        }
    }
    Ok(())
}

#[test]
fn kill_9_at_any_moment_of_a_pass_that_reverts_ends_on_the_applied_tree_with_no_loop() {
    let up = crate::support::Upstream::new();
    let good_files = many_files(HOLDING_RUN_SH, "good");
    let good = commit_files(&up, &good_files, "good");
    let bad_files = many_files(FAILING_RUN_SH, "bad");
    let bad = commit_files(&up, &bad_files, "bad");
    let daemon = crate::support::GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    // Counted from the start of the pass (the fetch, the failed commit's tree), then from the
    // moment the failed commit's entry point ran (the revert's tree, its entry point, the record).
    let moments = [0u64, 60]
        .map(|ms| (false, ms))
        .into_iter()
        .chain([0u64, 2, 5, 10, 40, 110, 240].map(|ms| (true, ms)));
    for (after_failure, delay_ms) in moments {
        let m = Machine::new();
        up.rewind(&good);
        m.sync(&url, &REVERT).expect(0);
        up.rewind(&bad);
        let mut child = spawn_sync(&m, &url, &REVERT);
        if after_failure {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while reasons(&m).len() < 2 {
                assert!(std::time::Instant::now() < deadline, "the commit never ran");
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        let at = format!("kill at {delay_ms} ms (after the failure: {after_failure})");
        // Whenever the kill came, the link shows a complete tree of one of the two commits.
        let linked = linked_commit(&m);
        let files = if linked == good {
            &good_files
        } else {
            &bad_files
        };
        assert!(linked == good || linked == bad, "{at}: {linked}");
        holds_exactly(&m.checkout, files).unwrap_or_else(|e| panic!("{at}: {linked}: {e}"));

        // The next pass ends on the applied tree, whole, and with the commit held back.
        let next = m.sync(&url, &REVERT).expect(1);
        next.error_line();
        assert_eq!(linked_commit(&m), good, "{at}");
        holds_exactly(&m.checkout, &good_files).unwrap_or_else(|e| panic!("{at}: {e}"));
        let state = m.state_json();
        assert_eq!(state["applied"]["commit"], good.as_str(), "{at}");
        assert_eq!(state["pending"]["commit"], bad.as_str(), "{at}");
        // Nothing half-written is left for days while the commit is held back.
        let trees = m.trees();
        assert!(trees.iter().all(|t| !t.starts_with('.')), "{at}: {trees:?}");
        let held = state["pending"]["outcome"].as_str().unwrap_or_default();
        assert!(
            held == "reverted" || held == "revert-failed",
            "{at}: {state}"
        );
        // No loop: the failed commit ran at most twice (before and after the kill), and the
        // passes after that run nothing.
        let ran = reasons(&m);
        let bad_runs = ran.iter().filter(|r| r.starts_with(&bad)).count();
        assert!(bad_runs <= 2, "{at}: {ran:?}");
        for _ in 0..2 {
            m.sync(&url, &REVERT).expect(1);
        }
        assert_eq!(reasons(&m), ran, "{at}");
        assert_eq!(linked_commit(&m), good, "{at}");
    }
}

#[test]
fn a_revert_gets_the_applied_tree_exactly_whatever_either_entry_point_did_to_its_tree() {
    let (up, _daemon, url) = served();
    // The applied commit's entry point scribbles in its own tree when it reverts; the failed
    // one rewrites a file to the applied commit's bytes (same size), removes one and adds one
    // before failing: the trees they leave must never pass for a commit's tree.
    let good_sh = "#!/bin/sh\necho \"$GITOPS_COMMIT $GITOPS_REASON $GITOPS_PREVIOUS_COMMIT\" >> \"$OUT/reasons\"\nif [ \"$GITOPS_REASON\" = revert ]; then echo scribbled > conf; echo new > added-by-revert; fi\n";
    let bad_sh = "#!/bin/sh\necho \"$GITOPS_COMMIT $GITOPS_REASON $GITOPS_PREVIOUS_COMMIT\" >> \"$OUT/reasons\"\nprintf 'good\\n' > conf\nrm -f only-bad\necho x > added-by-bad\nexit 3\n";
    let good_files: Vec<(String, String)> =
        [("run.sh", good_sh), ("conf", "good\n"), ("keep", "kept\n")]
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect();
    let good = commit_files(&up, &good_files, "good");
    let m = Machine::new();
    m.sync(&url, &REVERT).expect(0);
    up.commit(
        &[("run.sh", bad_sh), ("conf", "bad!\n"), ("only-bad", "b\n")],
        "bad",
    );
    let retry = ["--on-failure", "revert", "--retry-reverted", "0s"];
    for pass in 0..3 {
        m.sync(&url, &retry).expect(1);
        assert_eq!(linked_commit(&m), good, "pass {pass}");
        // The revert's own scribbles are its own business; all else is the applied tree.
        let mut expected = good_files.clone();
        expected[1].1 = "scribbled\n".into();
        expected.push(("added-by-revert".into(), "new\n".into()));
        holds_exactly(&m.checkout, &expected).unwrap_or_else(|e| panic!("pass {pass}: {e}"));
    }
    assert_eq!(reasons(&m).len(), 7, "{:?}", reasons(&m));
    // A fix applies exactly its tree, whatever the spare went through.
    let fixed_sh = REVERT_FREE_RUN_SH;
    let fixed = up.commit(&[("run.sh", fixed_sh)], "fixed");
    m.sync(&url, &REVERT).expect(0);
    assert_eq!(linked_commit(&m), fixed);
    let fixed_files: Vec<(String, String)> = [
        ("run.sh", fixed_sh),
        ("conf", "bad!\n"),
        ("keep", "kept\n"),
        ("only-bad", "b\n"),
    ]
    .iter()
    .map(|(p, c)| (p.to_string(), c.to_string()))
    .collect();
    holds_exactly(&m.checkout, &fixed_files).unwrap();
}

const REVERT_FREE_RUN_SH: &str = "#!/bin/sh\ntrue\n";

#[test]
fn a_revert_runs_no_commit_whose_signer_is_no_longer_trusted() {
    use crate::trust::{allowed_signers, arg, ssh_key};
    let dir = tempfile::tempdir().unwrap();
    let stolen = ssh_key(dir.path(), "stolen", &["-t", "ed25519"]);
    let kept = ssh_key(dir.path(), "kept", &["-t", "ed25519"]);
    let line = |who: &str, key: &crate::trust::SshKey| {
        format!("{who}@example.com namespaces=\"git\" {}", key.key())
    };
    let signers = allowed_signers(dir.path(), &[line("stolen", &stolen), line("kept", &kept)]);
    let (up, _daemon, url) = served();
    // Applied while its key was trusted: the commit of whoever stole the key.
    let evil = up.commit_with(
        &[("run.sh", HOLDING_RUN_SH)],
        "signed with the stolen key",
        &stolen.signing(),
        &[],
    );
    let m = Machine::new();
    let args = ["--on-failure", "revert", &arg(&signers)];
    m.sync(&url, &args).expect(0);
    // The key's line removed, a fix signed by a trusted key, which fails its health check:
    // going back would run the stolen key's commit again.
    allowed_signers(dir.path(), &[line("kept", &kept)]);
    let fix = up.commit_with(
        &[("run.sh", FAILING_RUN_SH)],
        "the fix, failing",
        &kept.signing(),
        &[],
    );
    let run = m.sync(&url, &args).expect(1);
    let said = run.error_line();
    assert!(
        said.contains("reverting to") && said.contains(&evil[..12]),
        "{said}"
    );
    assert_eq!(
        reasons(&m)[1..],
        [format!("{fix} apply {evil}")],
        "the untrusted commit ran again"
    );
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "revert-failed", "{state}");
    assert!(
        state["last_pass"]["error"]
            .as_str()
            .unwrap()
            .contains("in no line of --allowed-signers"),
        "{state}"
    );
    // Held back: neither commit runs on the next pass.
    m.sync(&url, &args).expect(1);
    assert_eq!(reasons(&m).len(), 2);
}

#[test]
fn a_shallow_store_consolidated_many_times_still_gives_the_revert_its_tree() {
    let (up, _daemon, url) = served();
    let m = Machine::new();
    let args = ["--on-failure", "revert", "--depth", "1"];
    let mut good = String::new();
    // More fetches than the store keeps packs for: consolidated along the way.
    for n in 0..11 {
        good = up.commit(
            &[("run.sh", HOLDING_RUN_SH), ("n", &format!("{n}\n"))],
            &format!("good {n}"),
        );
        m.sync(&url, &args).expect(0);
    }
    let bad = up.commit(&[("run.sh", FAILING_RUN_SH)], "bad");
    m.sync(&url, &args).expect(1);
    assert_eq!(reasons(&m).last().unwrap(), &format!("{good} revert {bad}"));
    assert_eq!(linked_commit(&m), good);
    assert_eq!(
        std::fs::read_to_string(m.checkout.join("n")).unwrap(),
        "10\n"
    );
    let packs = crate::harness::names(&m.state.join("repo.git/objects/pack"));
    assert!(
        packs.iter().filter(|p| p.ends_with(".pack")).count() <= 8,
        "{packs:?}"
    );
}

#[test]
fn with_retry_reverted_the_journal_says_when_the_commit_is_tried_again() {
    let (_up, _daemon, m, url, _good, bad) = good_then_bad();
    let args = ["--on-failure", "revert", "--retry-reverted", "2h"];
    let run = m.sync(&url, &args).expect(1);
    let at = m.state_json()["pending"]["reverted_at"]
        .as_str()
        .unwrap()
        .to_string();
    let at =
        time::OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339).unwrap();
    let retry = (at + time::Duration::hours(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // Not "until the branch moves" alone: it is tried again at a time the operator can read.
    let said = run.error_line();
    assert!(said.contains(&retry), "{retry} in {said}");
    let held = m.sync(&url, &args).expect(1);
    let said = held.error_line();
    assert!(
        said.contains(&bad[..12]) && said.contains(&retry),
        "{retry} in {said}"
    );
    // Without the option, the record holds it until the branch moves.
    let never = m.sync(&url, &REVERT).expect(1);
    assert!(!never.error_line().contains(&retry), "{}", never.stderr);
}
