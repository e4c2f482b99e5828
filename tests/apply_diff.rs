//! An apply in proportion to the change: the spare tree brought to the new commit by the tree
//! diff. After every apply the checkout is exactly `git archive` of the applied commit, whatever
//! the entry point wrote into its tree and wherever a pass was killed.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{Machine, RECORDING_RUN_SH};
use crate::support::{run, GitDaemon, Upstream};

/// Every entry below `dir`: 'd', 'f' with its exec bit and content, or 'l' with its target.
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<String, (char, bool, Vec<u8>)> {
    let mut all = BTreeMap::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = pending.pop() {
        for entry in std::fs::read_dir(&abs).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            let kind = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(entry.path()).unwrap();
                ('l', false, target.into_os_string().into_encoded_bytes())
            } else if meta.is_dir() {
                pending.push((entry.path(), path.clone()));
                ('d', false, Vec::new())
            } else {
                let exec = meta.permissions().mode() & 0o100 != 0;
                ('f', exec, std::fs::read(entry.path()).unwrap())
            };
            all.insert(path, kind);
        }
    }
    all
}

/// `git archive` of `commit`, unpacked.
pub(crate) fn archive(up: &Upstream, commit: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("x.tar");
    run(Command::new("git")
        .arg("--git-dir")
        .arg(up.bare())
        .args(["archive", "-o"])
        .arg(&tar)
        .arg(commit));
    let out = dir.path().join("x");
    std::fs::create_dir(&out).unwrap();
    run(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&out));
    std::fs::remove_file(&tar).unwrap();
    std::fs::rename(&out, dir.path().join("tree")).unwrap();
    dir
}

pub(crate) fn assert_exact(m: &Machine, up: &Upstream, commit: &str, step: &str) {
    assert_eq!(m.applied().as_deref(), Some(commit), "{step}");
    let want = archive(up, commit);
    assert_eq!(
        snapshot(&m.checkout),
        snapshot(&want.path().join("tree")),
        "{step}: the checkout is not git archive of {commit}"
    );
}

fn work_dir(up: &Upstream) -> PathBuf {
    PathBuf::from(run(up.git_work().args(["rev-parse", "--show-toplevel"])))
}

/// Change the work tree with `change`, commit everything, push; the new commit.
pub(crate) fn commit(up: &Upstream, change: impl FnOnce(&Path)) -> String {
    change(&work_dir(up));
    up.commit(&[], "change")
}

pub(crate) fn put(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub(crate) fn ino(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap().ino()
}

type Step = (&'static str, fn(&Path));

#[test]
fn a_series_of_applies_leaves_exactly_each_commit() {
    let up = Upstream::new();
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    let m = Machine::new();
    let steps: [Step; 9] = [
        ("first", |w| {
            put(w, "run.sh", RECORDING_RUN_SH);
            std::fs::set_permissions(w.join("run.sh"), PermissionsExt::from_mode(0o755)).unwrap();
            put(w, "keep/same.txt", "never changes\n");
            put(w, "etc/a.conf", "a\n");
            put(w, "etc/sub/b.conf", "b\n");
            put(w, "f", "a file, later a directory\n");
        }),
        ("second", |w| put(w, "etc/a.conf", "a2\n")),
        ("added", |w| put(w, "new/deep/c.conf", "c\n")),
        ("changed and removed", |w| {
            put(w, "etc/a.conf", "a3\n");
            std::fs::remove_file(w.join("etc/sub/b.conf")).unwrap();
        }),
        ("renamed", |w| {
            std::fs::rename(w.join("etc/a.conf"), w.join("etc/renamed.conf")).unwrap()
        }),
        ("made executable, linked", |w| {
            std::fs::set_permissions(w.join("etc/renamed.conf"), PermissionsExt::from_mode(0o755))
                .unwrap();
            std::os::unix::fs::symlink("etc/renamed.conf", w.join("link")).unwrap();
        }),
        ("file to directory", |w| {
            std::fs::remove_file(w.join("f")).unwrap();
            put(w, "f/inside", "now a directory\n");
        }),
        ("directory to file, link retargeted", |w| {
            std::fs::remove_dir_all(w.join("new")).unwrap();
            put(w, "new", "now a file\n");
            std::fs::remove_file(w.join("link")).unwrap();
            std::os::unix::fs::symlink("new", w.join("link")).unwrap();
        }),
        ("link to file", |w| {
            std::fs::remove_file(w.join("link")).unwrap();
            put(w, "link", "plain again\n");
        }),
    ];
    let mut kept = Vec::new();
    for (step, change) in steps {
        let commit = commit(&up, change);
        m.sync(&url, &[]).expect(0);
        assert_exact(&m, &up, &commit, step);
        kept.push(ino(&m.checkout.join("keep/same.txt")));
    }
    // Trees are used in turn: from the third apply on, the unchanged file is the one the tree
    // two applies back had, not written again.
    for i in 2..kept.len() {
        assert_eq!(kept[i], kept[i - 2], "apply {i} rewrote an unchanged file");
    }
    // Only the applied tree is in trees/; the spare lives beside it.
    assert_eq!(m.trees().len(), 1);
    assert!(m.state.join("spare/tree").is_dir());
}

#[test]
fn what_an_entry_point_writes_into_its_tree_is_gone_at_the_next_apply() {
    let up = Upstream::new();
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    let m = Machine::new();
    // Each run leaves traces in its own tree: a new file, an appended one, a changed mode.
    let scribbling = "#!/bin/sh\necho \"$GITOPS_COMMIT\" >> \"$OUT/runs\"\necho junk > junk\necho more >> etc/a.conf\nchmod 600 etc/b.conf\nmkdir -p etc/new && echo x > etc/new/y\n";
    let mut commits = vec![up.commit(
        &[
            ("run.sh", scribbling),
            ("etc/a.conf", "a\n"),
            ("etc/b.conf", "b\n"),
        ],
        "init",
    )];
    for i in 0..5 {
        commits.push(up.commit(&[("version", &i.to_string())], "next"));
    }
    for i in 0..commits.len() {
        m.sync(&url, &[]).expect(0);
        assert!(
            m.checkout.join("junk").exists(),
            "the entry point of {i} ran"
        );
    }
    // Every apply started from a tree that an entry point had scribbled in: still exact,
    // save for what this last run wrote.
    let want = archive(&up, commits.last().unwrap());
    let mut want = snapshot(&want.path().join("tree"));
    let mut got = snapshot(&m.checkout);
    for trace in ["junk", "etc/new", "etc/new/y", "etc/a.conf", "etc/b.conf"] {
        want.remove(trace);
        got.remove(trace);
    }
    assert_eq!(got, want);
    // A commit whose entry point writes nothing: now the whole checkout is exact.
    let quiet = up.commit(&[("run.sh", RECORDING_RUN_SH)], "quiet");
    m.sync(&url, &[]).expect(0);
    assert_exact(&m, &up, &quiet, "after scribbling entry points");
    let quiet2 = up.commit(&[("version", "last")], "quiet again");
    m.sync(&url, &[]).expect(0);
    assert_exact(&m, &up, &quiet2, "from the spare the last scribbler left");
}

#[test]
fn kill_9_during_a_diff_apply_then_a_normal_pass_is_exact() {
    let up = Upstream::new();
    let files: Vec<(String, String)> = (0..2000)
        .map(|i| (format!("d{}/f{i}.txt", i % 13), format!("one {i}\n")))
        .collect();
    let mut all: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    all.push(("run.sh", RECORDING_RUN_SH));
    let first = up.commit(&all, "first");
    up.push_branch("one");
    let second = up.commit(&[("version", "2")], "second");
    up.push_branch("two");
    // Every file changes: the diff apply is long enough to be killed in the middle.
    let changed: Vec<(String, String)> = files
        .iter()
        .map(|(p, c)| (p.clone(), c.replace("one", "three")))
        .collect();
    let changed_refs: Vec<(&str, &str)> = changed
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let third = up.commit(&changed_refs, "third");
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    let second_tree = snapshot(&archive(&up, &second).path().join("tree"));
    let third_tree = snapshot(&archive(&up, &third).path().join("tree"));
    for delay_ms in [0u64, 20, 45, 80, 150] {
        let m = Machine::new();
        m.sync(&url, &["--branch", "one"]).expect(0);
        m.sync(&url, &["--branch", "two"]).expect(0);
        assert_exact(&m, &up, &second, "before the kill");
        let mut child = m.command();
        child
            .args(["sync", "--repo-url", &url, "--branch", "main"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = child.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        // The link resolves to a whole tree: the second commit's or the third's.
        let linked = snapshot(&m.checkout);
        assert!(
            linked == second_tree || linked == third_tree,
            "after kill at {delay_ms} ms the link shows neither whole tree"
        );
        m.sync(&url, &["--branch", "main"]).expect(0);
        assert_exact(&m, &up, &third, &format!("after kill at {delay_ms} ms"));
    }
    let _ = first;
}
