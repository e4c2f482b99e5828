//! A repository written by an attacker: trees git itself would never make (names such as `..`,
//! `.git` or `/abs`, a symlink with a file below it, setuid modes), submodules, hooks, and more
//! data than the machine agreed to hold. Nothing is written outside `trees/<commit>/`, nothing
//! foreign runs, and the refusals are ordinary failed passes.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use crate::harness::{Machine, Run, RECORDING_RUN_SH};
use crate::support::{HttpServer, Upstream};
use crate::tree_write::plumbing;

/// A tree object of exactly these (mode, name, object id) entries, whatever they say: written
/// with `hash-object --literally`, which checks nothing, as a hostile server would serve it.
pub(crate) fn raw_tree(up: &Upstream, entries: &[(&str, &str, &str)]) -> String {
    let mut bytes = Vec::new();
    for (mode, name, id) in entries {
        bytes.extend_from_slice(format!("{mode} {name}\0").as_bytes());
        for at in (0..40).step_by(2) {
            bytes.push(u8::from_str_radix(&id[at..at + 2], 16).unwrap());
        }
    }
    plumbing(
        up,
        &["hash-object", "-t", "tree", "-w", "--literally", "--stdin"],
        &bytes,
    )
}

pub(crate) fn blob(up: &Upstream, content: &[u8]) -> String {
    plumbing(up, &["hash-object", "-w", "--stdin"], content)
}

/// Point `main` at a new commit of `tree`, on top of main.
pub(crate) fn commit_tree(up: &Upstream, tree: &str) -> String {
    let parent = plumbing(
        up,
        &["for-each-ref", "--format=%(objectname)", "refs/heads/main"],
        b"",
    );
    let mut args = vec!["commit-tree", tree, "-m", "hostile"];
    if !parent.is_empty() {
        args.extend(["-p", &parent]);
    }
    let commit = plumbing(up, &args, b"");
    plumbing(up, &["update-ref", "refs/heads/main", &commit], b"");
    commit
}

/// The pass under umask 022, as a root shell or systemd gives it.
fn sync(m: &Machine, url: &str, args: &[&str]) -> Run {
    let mut cmd = m.command();
    cmd.args(["sync", "--repo-url", url]).args(args);
    // SAFETY: umask(2) is async-signal-safe and touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
            Ok(())
        });
    }
    Run::of(&mut cmd)
}

/// Every path under `dir`, links not followed.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn a_file_below_a_symlink_is_never_written_through_it() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().display().to_string();
    let up = Upstream::new();
    let run_sh = blob(&up, RECORDING_RUN_SH.as_bytes());
    let link = blob(&up, target.as_bytes());
    let payload = blob(&up, b"#!/bin/sh\necho owned\n");
    let below = raw_tree(&up, &[("100755", "b", &payload)]);
    let m = Machine::new();

    // The link in one commit, a directory of the same name with a file in it in the next.
    let first = commit_tree(
        &up,
        &raw_tree(
            &up,
            &[("120000", "a", &link), ("100755", "run.sh", &run_sh)],
        ),
    );
    sync(&m, &up.file_url(), &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(first.as_str()));
    let second = commit_tree(
        &up,
        &raw_tree(
            &up,
            &[("40000", "a", &below), ("100755", "run.sh", &run_sh)],
        ),
    );
    sync(&m, &up.file_url(), &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(second.as_str()));
    let tree = m.state.join("trees").join(&second);
    assert!(std::fs::symlink_metadata(tree.join("a")).unwrap().is_dir());
    assert!(
        listing(outside.path()).is_empty(),
        "{:?}",
        listing(outside.path())
    );

    // Both in one tree (git never makes one, a hostile server can), the link absolute or
    // climbing out: gix replaces the link by the directory, so the commit applies with `a` a
    // plain directory of the tree, and nothing is written through the link.
    let climb = format!("{}{target}", "../".repeat(30));
    for target in [target.as_str(), climb.as_str()] {
        let link = blob(&up, target.as_bytes());
        let both = commit_tree(
            &up,
            &raw_tree(
                &up,
                &[
                    ("120000", "a", &link),
                    ("40000", "a", &below),
                    ("100755", "run.sh", &run_sh),
                ],
            ),
        );
        sync(&m, &up.file_url(), &[]).expect(0);
        assert!(
            listing(outside.path()).is_empty(),
            "written outside: {:?}",
            listing(outside.path())
        );
        let tree = m.state.join("trees").join(&both);
        assert!(std::fs::symlink_metadata(tree.join("a")).unwrap().is_dir());
        assert_eq!(listing(&tree), ["a", "a/b", "run.sh"]);
    }
}

#[test]
fn dot_dot_absolute_and_dot_git_paths_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let up = Upstream::new();
    let run_sh = blob(&up, RECORDING_RUN_SH.as_bytes());
    let payload = blob(&up, b"#!/bin/sh\necho owned > /tmp/gitops-hostile-hook\n");
    let m = Machine::new();
    // A first good commit, so each hostile one is a new commit on top.
    commit_tree(&up, &raw_tree(&up, &[("100755", "run.sh", &run_sh)]));
    sync(&m, &up.file_url(), &[]).expect(0);
    let good = m.applied().unwrap();

    let x = raw_tree(&up, &[("100644", "x", &payload)]);
    let hooks = raw_tree(&up, &[("100755", "post-checkout", &payload)]);
    let dot_git = raw_tree(&up, &[("40000", "hooks", &hooks)]);
    let abs = outside.path().join("abs").display().to_string();
    type Entries<'a> = Vec<(&'a str, &'a str, &'a str)>;
    let cases: Vec<(&str, Entries)> = vec![
        ("..", vec![("100644", "..", &payload)]),
        ("../x", vec![("40000", "..", &x)]),
        (".", vec![("40000", ".", &x)]),
        (
            ".git/hooks/post-checkout",
            vec![("40000", ".git", &dot_git)],
        ),
        (".GIT", vec![("40000", ".GIT", &dot_git)]),
        ("/abs", vec![("100644", &abs, &payload)]),
        ("a/../../x", vec![("100644", "a/../../x", &payload)]),
    ];
    for (what, mut entries) in cases {
        entries.push(("100755", "run.sh", &run_sh));
        let commit = commit_tree(&up, &raw_tree(&up, &entries));
        let run = sync(&m, &up.file_url(), &[]);
        assert_eq!(run.code, 1, "{what}: {}", run.stderr);
        assert!(
            run.error_line().contains("could not write the tree"),
            "{what}: {}",
            run.stderr
        );
        assert_eq!(m.state_json()["pending"]["commit"], commit, "{what}");
        assert_eq!(m.applied().as_deref(), Some(good.as_str()), "{what}");
        assert!(listing(outside.path()).is_empty(), "{what}");
        assert!(
            !m.state.join("x").exists() && !m.state.join("trees/x").exists(),
            "{what}"
        );
        assert!(!Path::new("/tmp/gitops-hostile-hook").exists(), "{what}");
        assert!(m.runs().len() == 1, "{what}: the entry point did not run");
    }
}

#[test]
fn a_submodule_is_not_fetched_and_hooks_in_the_repository_never_run() {
    let sub = Upstream::new();
    sub.commit(&[("secret", "from the submodule")], "sub");
    let sub_commit = plumbing(&sub, &["rev-parse", "refs/heads/main"], b"");
    let http = HttpServer::serve(&sub.srv(), None);
    let up = Upstream::new();
    let run_sh = blob(&up, RECORDING_RUN_SH.as_bytes());
    let gitmodules = blob(
        &up,
        format!(
            "[submodule \"sub\"]\n\tpath = sub\n\turl = {}\n",
            http.url("config.git")
        )
        .as_bytes(),
    );
    let hook = blob(&up, b"#!/bin/sh\necho hook >> \"$OUT/hooks\"\n");
    let hooks = raw_tree(
        &up,
        &[
            ("100755", "post-checkout", &hook),
            ("100755", "post-merge", &hook),
            ("100755", "reference-transaction", &hook),
        ],
    );
    let commit = commit_tree(
        &up,
        &raw_tree(
            &up,
            &[
                ("100644", ".gitmodules", &gitmodules),
                ("40000", ".githooks", &hooks),
                ("40000", "hooks", &hooks),
                ("100755", "run.sh", &run_sh),
                ("160000", "sub", &sub_commit),
            ],
        ),
    );
    let m = Machine::new();
    sync(&m, &up.file_url(), &[]).expect(0);
    sync(&m, &up.file_url(), &["--apply", "always"]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(commit.as_str()));
    assert_eq!(http.requests(), 0, "the submodule's server was never asked");
    // The submodule's path is an empty directory, as `git clone` without --recursive leaves it.
    let tree = m.state.join("trees").join(&commit);
    let sub_dir = tree.join("sub");
    assert!(sub_dir.is_dir(), "{:?}", listing(&tree));
    assert!(listing(&sub_dir).is_empty(), "{:?}", listing(&sub_dir));
    assert!(!m.out.join("hooks").exists(), "a hook ran");
    assert_eq!(m.runs().len(), 2);
}

#[test]
fn only_gits_modes_are_kept() {
    let up = Upstream::new();
    let run_sh = blob(&up, RECORDING_RUN_SH.as_bytes());
    let data = blob(&up, b"data\n");
    let sub = raw_tree(&up, &[("100644", "inner", &data)]);
    let commit = commit_tree(
        &up,
        &raw_tree(
            &up,
            &[
                ("100755", "exec", &data),
                ("100644", "plain", &data),
                ("104755", "setuid", &data),
                ("102755", "setgid", &data),
                ("100777", "open", &data),
                ("100666", "writable", &data),
                ("40777", "dir", &sub),
                ("100755", "run.sh", &run_sh),
            ],
        ),
    );
    let m = Machine::new();
    let run = sync(&m, &up.file_url(), &[]);
    let tree = m.state.join("trees").join(&commit);
    let mode = |name: &str| {
        std::fs::symlink_metadata(tree.join(name))
            .map(|m| m.permissions().mode() & 0o7777)
            .ok()
    };
    run.expect(0);
    // Git knows 644, 755, links and directories: whatever else a tree says, the tree gets
    // those, under the entry point's umask (022 here), never setuid, setgid or others' write.
    let expected = [
        ("exec", 0o755),
        ("plain", 0o644),
        ("setuid", 0o755),
        ("setgid", 0o755),
        ("open", 0o755),
        ("writable", 0o644),
        ("dir", 0o755),
        ("dir/inner", 0o644),
    ];
    for (name, want) in expected {
        assert_eq!(
            mode(name),
            Some(want),
            "{name}: {:o}",
            mode(name).unwrap_or(0)
        );
    }
}

/// `len` bytes nothing compresses.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut bytes,
    )
    .unwrap();
    bytes
}

/// A new commit on main holding the entry point and `random` incompressible bytes.
fn commit_random(up: &Upstream, name: &str, random: usize, keep: &[(&str, String)]) -> String {
    let run_sh = blob(up, RECORDING_RUN_SH.as_bytes());
    let data = blob(up, &random_bytes(random));
    let mut entries: Vec<(&str, &str, &str)> = vec![("100755", "run.sh", &run_sh)];
    entries.extend(keep.iter().map(|(n, id)| ("100644", *n, id.as_str())));
    entries.push(("100644", name, &data));
    entries.sort_by(|a, b| a.1.cmp(b.1));
    commit_tree(up, &raw_tree(up, &entries))
}

#[track_caller]
fn assert_too_large(m: &Machine, run: Run, limit: &str) {
    let line = run.expect(3).error_line();
    assert!(
        line.contains(&format!(
            "the repository is larger than --max-repo-size ({limit}); raise it if this is expected"
        )),
        "{line}"
    );
    assert_eq!(m.state_json()["last_pass"]["outcome"], "fetch-failed");
    let pack = m.state.join("repo.git/objects/pack");
    let left = crate::harness::names(&pack);
    assert!(
        left.iter().all(|n| n.starts_with("pack-")),
        "no half pack is left: {left:?}"
    );
}

#[test]
fn a_repository_larger_than_max_repo_size_is_refused_while_fetching() {
    let up = Upstream::new();
    let big = commit_random(&up, "big.bin", 200 << 10, &[]);
    let daemon = crate::support::GitDaemon::serve(&up.srv());
    let http = HttpServer::serve(&up.srv(), None);
    let sshd = crate::support::Sshd::start();
    let (key, known) = (sshd.key(), sshd.known_hosts());
    let ssh_args = [
        "--ssh-key",
        key.to_str().unwrap(),
        "--known-hosts",
        known.to_str().unwrap(),
    ];
    for (url, args) in [
        (up.file_url(), &[][..]),
        (daemon.url("config.git"), &[]),
        (http.url("config.git"), &[]),
        (sshd.url(&up.bare()), &ssh_args[..]),
    ] {
        let m = Machine::new();
        let mut limited = vec!["--max-repo-size", "64K"];
        limited.extend(args);
        let run = sync(&m, &url, &limited);
        assert_too_large(&m, run, "64.0 KiB");
        assert!(m.trees().is_empty(), "{url}: nothing is checked out");
        assert!(m.runs().is_empty());
        // The store is as usable as before: with room enough the same commit applies.
        let mut cmd = m.command();
        cmd.env("GITOPS_MAX_REPO_SIZE", "1M")
            .args(["sync", "--repo-url", &url])
            .args(args);
        Run::of(&mut cmd).expect(0);
        assert_eq!(m.applied().as_deref(), Some(big.as_str()), "{url}");
    }
}

#[test]
fn max_repo_size_counts_what_the_store_already_holds() {
    let up = Upstream::new();
    let first = commit_random(&up, "one.bin", 200 << 10, &[]);
    let m = Machine::new();
    sync(&m, &up.file_url(), &["--max-repo-size", "300K"]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(first.as_str()));
    // 200 KiB more would fit on its own, not beside the 200 KiB already held.
    let one = plumbing(&up, &["rev-parse", "main:one.bin"], b"");
    commit_random(&up, "two.bin", 200 << 10, &[("one.bin", one)]);
    let run = sync(&m, &up.file_url(), &["--max-repo-size", "300K"]);
    assert_too_large(&m, run, "300.0 KiB");
    assert_eq!(m.applied().as_deref(), Some(first.as_str()));
    assert_eq!(m.trees(), [first]);
}
