//! Writing the commit's tree: what cannot be written, what is too large, what is not a proper
//! entry point, a signal in the middle, and the leftovers of killed passes. Each is an apply
//! failure (exit 1) with its reason recorded, never an internal error.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Machine, Tmpfs, RECORDING_RUN_SH};
use crate::support::{git, Upstream};

/// Run git in the upstream's bare repository with `input` on stdin; its trimmed stdout.
pub(crate) fn plumbing(up: &Upstream, args: &[&str], input: &[u8]) -> String {
    let mut cmd: Command = git(&up.home());
    cmd.current_dir(up.bare())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Point `main` at a commit of exactly these (mode, name, content) entries, names that git
/// itself would never let into a commit included.
pub(crate) fn commit_raw_tree(up: &Upstream, entries: &[(&str, &str, &[u8])]) -> String {
    let mut listing = String::new();
    for (mode, name, content) in entries {
        let id = plumbing(up, &["hash-object", "-w", "--stdin"], content);
        listing.push_str(&format!("{mode} blob {id}\t{name}\n"));
    }
    let tree = plumbing(up, &["mktree"], listing.as_bytes());
    // On top of main, so the pass sees a new commit rather than a force-push.
    let parent = plumbing(
        up,
        &["for-each-ref", "--format=%(objectname)", "refs/heads/main"],
        b"",
    );
    let mut args = vec!["commit-tree", &tree, "-m", "hostile tree"];
    if !parent.is_empty() {
        args.extend(["-p", &parent]);
    }
    let commit = plumbing(up, &args, b"");
    plumbing(up, &["update-ref", "refs/heads/main", &commit], b"");
    commit
}

/// What a failed apply must leave: exit 1 with one line naming `why`, the commit pending, and
/// a log that exists and says it.
#[track_caller]
fn assert_apply_failed(m: &Machine, run: crate::harness::Run, commit: &str, why: &str) {
    let run = run.expect(1);
    let line = run.error_line();
    assert!(line.contains(why), "{line}");
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "apply-failed");
    assert_eq!(state["pending"]["commit"], commit);
    let log = state["pending"]["log"]
        .as_str()
        .expect("pending.log is set");
    let text = std::fs::read_to_string(log).expect("pending.log names a log that exists");
    assert!(text.contains(why), "the log says why: {text}");
    assert!(m.runs().is_empty(), "the entry point did not run");
}

#[test]
fn a_tree_gix_refuses_to_write_is_an_apply_failure_with_a_log() {
    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let m = Machine::new();
    m.sync(&up.file_url(), &[]).expect(0);
    let hostile = commit_raw_tree(
        &up,
        &[
            ("100755", "run.sh", RECORDING_RUN_SH.as_bytes()),
            ("100644", ".git", b"gitdir: /etc\n"),
        ],
    );
    std::fs::remove_file(m.out.join("runs")).unwrap();
    let run = m.sync(&up.file_url(), &[]);
    assert_apply_failed(&m, run, &hostile, "could not write the tree");
    let trees = m.trees();
    assert!(
        !trees
            .iter()
            .any(|t| t.starts_with(".new-") || *t == hostile),
        "no partial tree is left: {trees:?}"
    );
    assert!(m.linked_tree().exists(), "the checkout still resolves");
}

#[test]
fn a_file_larger_than_max_file_size_is_refused_before_it_is_read() {
    let up = Upstream::new();
    let big = "x".repeat(2048);
    let commit = up.commit(
        &[("run.sh", RECORDING_RUN_SH), ("data/big.bin", &big)],
        "init",
    );
    let m = Machine::new();
    let run = m.sync(&up.file_url(), &["--max-file-size", "1K"]);
    assert_apply_failed(&m, run, &commit, "data/big.bin is 2.0 KiB");
    let line = m.state_json()["pending"]["last_error"].to_string();
    assert!(line.contains("--max-file-size 1.0 KiB"), "{line}");
    // The same commit applies once the limit allows it; the variable works like the flag.
    let mut cmd = m.command();
    cmd.env("GITOPS_MAX_FILE_SIZE", "2KiB")
        .args(["sync", "--repo-url", &up.file_url()]);
    crate::harness::Run::of(&mut cmd).expect(0);
    assert_eq!(m.runs().len(), 1);
}

#[test]
fn an_object_too_large_to_hold_in_memory_is_refused_during_the_fetch() {
    let up = Upstream::new();
    // Zeros: a small pack, a 70 MiB object once inflated, above the fetch's 64 MiB floor.
    let zeros = "\0".repeat(70 << 20);
    up.commit(
        &[("run.sh", RECORDING_RUN_SH), ("zeros.bin", &zeros)],
        "huge",
    );
    drop(zeros);
    let m = Machine::new();
    let started = Instant::now();
    let run = m.sync(&up.file_url(), &["--max-file-size", "1M"]).expect(3);
    let line = run.error_line();
    assert!(
        line.contains("larger than 64.0 MiB") && line.contains("raise --max-file-size"),
        "{line}"
    );
    assert_eq!(m.state_json()["last_pass"]["outcome"], "fetch-failed");
    // Inflating and hashing 70 MiB in a debug build takes seconds; the header alone, none.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(m.runs().is_empty());
}

#[test]
fn a_max_file_size_that_is_no_size_is_a_usage_error() {
    let m = Machine::new();
    for bad in ["lots", "1.5G", "0", "99999999999999999999", "4096T"] {
        let run = m
            .sync("/nonexistent/repo.git", &["--max-file-size", bad])
            .expect(2);
        assert!(
            run.stderr.contains("--max-file-size") && !run.stderr.contains("panicked"),
            "{bad}: {}",
            run.stderr
        );
        assert!(m.state_bytes().is_none(), "nothing recorded for {bad}");
    }
}

#[test]
fn an_entry_point_that_leads_out_of_the_tree_or_is_a_directory_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("x");
    std::fs::write(&target, "#!/bin/sh\necho ran >> \"$OUT/runs\"\n").unwrap();
    std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let up = Upstream::new();
    let m = Machine::new();
    let commit = up.commit(&[("deploy/run.sh", RECORDING_RUN_SH)], "a directory");
    let run = m.sync(&up.file_url(), &["--entrypoint", "deploy"]);
    assert_apply_failed(&m, run, &commit, "is a directory");

    // Relative, as a hostile commit would write it: deep enough to climb out of any tree.
    let climb = format!("{}{}", "../".repeat(30), target.display());
    let commit = commit_raw_tree(&up, &[("120000", "run.sh", climb.as_bytes())]);
    let run = m.sync(&up.file_url(), &[]);
    assert_apply_failed(&m, run, &commit, "outside the commit's tree");

    let commit = commit_raw_tree(
        &up,
        &[
            ("120000", "run.sh", b"deploy.sh"),
            ("100755", "deploy.sh", RECORDING_RUN_SH.as_bytes()),
        ],
    );
    m.sync(&up.file_url(), &[]).expect(0);
    assert_eq!(
        m.applied().as_deref(),
        Some(commit.as_str()),
        "a link inside the tree is fine"
    );
}

#[test]
fn leftovers_of_a_killed_fetch_are_removed_by_the_next_pass() {
    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let m = Machine::new();
    m.sync(&up.file_url(), &[]).expect(0);
    let pack = m.state.join("repo.git/objects/pack");
    for name in [".tmpXy12Ab", "tmp_pack_Q1w2e3"] {
        std::fs::write(pack.join(name), vec![0u8; 4096]).unwrap();
    }
    m.sync(&up.file_url(), &[]).expect(0);
    let left = crate::harness::names(&pack);
    assert!(
        left.iter()
            .all(|n| n.starts_with("pack-") || n == "multi-pack-index"),
        "{left:?}"
    );
    assert!(
        left.iter().any(|n| n.ends_with(".pack")),
        "the real pack stays: {left:?}"
    );
}

/// A commit of `files` small files in 100 directories, built by fast-import in a second.
fn commit_many_files(up: &Upstream, files: usize) -> String {
    let mut stream = Vec::new();
    let run_sh = RECORDING_RUN_SH.as_bytes();
    stream.extend_from_slice(b"blob\nmark :1\ndata 6\nsmall\n\n");
    stream.extend_from_slice(
        b"commit refs/heads/main\ncommitter T <t@example.invalid> 1700000000 +0000\ndata 4\nmany\n",
    );
    stream.extend_from_slice(format!("M 100755 inline run.sh\ndata {}\n", run_sh.len()).as_bytes());
    stream.extend_from_slice(run_sh);
    stream.push(b'\n');
    for i in 0..files {
        stream.extend_from_slice(format!("M 100644 :1 d{:03}/f{i:06}\n", i % 100).as_bytes());
    }
    stream.push(b'\n');
    plumbing(up, &["fast-import", "--quiet"], &stream);
    plumbing(up, &["rev-parse", "refs/heads/main"], b"")
}

#[test]
fn sigterm_during_a_long_tree_write_stops_it_within_a_second() {
    let up = Upstream::new();
    let commit = commit_many_files(&up, 40_000);
    let m = Machine::new();
    let mut cmd = m.command();
    cmd.args(["sync", "--repo-url", &up.file_url()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let partial = m.state.join("trees").join(format!(".new-{commit}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    // Some files in, so the write is under way (and our handlers are surely in place).
    while !partial.join("d000").exists() {
        assert!(Instant::now() < deadline, "the tree write never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let asked = Instant::now();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(20),
            "the pass did not stop"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = asked.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(
        took < Duration::from_millis(1500),
        "the write stopped {took:?} after SIGTERM"
    );
    assert!(!partial.exists(), "the partial tree is removed");
    assert!(
        !Path::new(&m.state.join("trees").join(&commit)).exists(),
        "no tree of the commit is left"
    );
    assert!(m.runs().is_empty());
    assert_eq!(m.state_json()["pending"]["commit"], commit);
}

#[test]
fn a_disk_that_fills_during_the_tree_write_is_an_apply_failure() {
    let disk = tempfile::tempdir().unwrap();
    let Some(_mounted) = Tmpfs::mount(disk.path(), "1m") else {
        return;
    };
    let up = Upstream::new();
    // Zeros: a tiny pack to fetch, 2 MiB to write.
    let zeros = "\0".repeat(2 << 20);
    let commit = up.commit(
        &[("run.sh", RECORDING_RUN_SH), ("zeros.bin", &zeros)],
        "big",
    );
    let m = Machine::new();
    let state = disk.path().join("state");
    let mut cmd = m.command();
    cmd.env("GITOPS_STATE_DIR", &state)
        .args(["sync", "--repo-url", &up.file_url()]);
    let run = crate::harness::Run::of(&mut cmd).expect(1);
    assert!(
        run.error_line().contains("could not write the tree"),
        "{}",
        run.stderr
    );
    let text = std::fs::read_to_string(state.join("state.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["last_pass"]["outcome"], "apply-failed");
    assert_eq!(json["pending"]["commit"], commit);
    if let Some(log) = json["pending"]["log"].as_str() {
        let said = std::fs::read_to_string(log).expect("a log that is named exists");
        assert!(said.contains("could not write the tree"), "{said}");
    }
    assert!(
        crate::harness::names(&state.join("trees")).is_empty(),
        "the partial tree is removed"
    );
    assert!(m.runs().is_empty());
}
