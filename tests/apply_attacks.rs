//! The apply by diff attacked: a hostile repository (type changes through old symlinks, trees
//! git never makes, files over the limit) and an entry point that changes its tree and hides it
//! (times restored, directories swapped for links). A canary directory outside the state
//! directory must stay empty, and every tree must be what a fresh checkout gives.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::apply_diff::{archive, assert_exact, commit, ino, put, snapshot};
use crate::harness::{Machine, Run, RECORDING_RUN_SH};
use crate::hostile_content::{blob, commit_tree, raw_tree};
use crate::support::Upstream;

/// An empty directory beside the machine's state directory: anything in it was written
/// through a link.
fn canary(m: &Machine) -> PathBuf {
    let dir = m.dir.path().join("canary");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[track_caller]
fn assert_untouched(m: &Machine, step: &str) {
    let canary = m.dir.path().join("canary");
    let inside: Vec<_> = std::fs::read_dir(&canary)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(inside.is_empty(), "{step}: written outside: {inside:?}");
    // `..` from a tree is trees/ or spare/: only trees, manifests and the clock probe (which
    // gitops rewrites before every manifest) belong there.
    for name in m.trees() {
        assert!(
            name.len() == 40 || name.starts_with(".new-"),
            "{step}: trees/{name}"
        );
    }
    for name in crate::harness::names(&m.state.join("spare")) {
        assert!(
            name == "tree" || name == ".clock" || name.ends_with(".manifest"),
            "{step}: spare/{name}"
        );
    }
}

fn remove(w: &Path, path: &str) {
    let path = w.join(path);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).unwrap(),
        Ok(_) => std::fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

fn link(w: &Path, path: &str, target: &str) {
    remove(w, path);
    if let Some(parent) = w.join(path).parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    symlink(target, w.join(path)).unwrap();
}

#[test]
fn type_changes_through_old_symlinks_never_write_outside() {
    let up = Upstream::new();
    let url = up.file_url();
    let m = Machine::new();
    let canary = canary(&m).display().to_string();
    // Each step's tree is diffed from the tree two applies back (the spare), so every hostile
    // step is followed by a quiet one: the diffs go base -> W, W -> Y, Y -> Z, and so on.
    type Step = (&'static str, Box<dyn FnOnce(&Path)>);
    let c = canary.clone();
    let c2 = canary.clone();
    let c3 = canary.clone();
    let steps: Vec<Step> = vec![
        (
            "base",
            Box::new(|w| {
                put(w, "run.sh", RECORDING_RUN_SH);
                std::fs::set_permissions(w.join("run.sh"), PermissionsExt::from_mode(0o755))
                    .unwrap();
                put(w, "keep", "unchanged\n");
                put(w, "x/y/z", "deep\n");
                put(w, "p", "a file\n");
                put(w, "d/b", "a file in a directory\n");
            }),
        ),
        (
            "W: links out of the tree",
            Box::new(move |w| {
                link(w, "a", &c);
                link(w, "up", "..");
                link(w, "top", "../..");
                link(w, "q", "x");
                // d/b a file, d a link out in Y.
            }),
        ),
        (
            "Y: each link a directory with files; nested type changes",
            Box::new(move |w| {
                remove(w, "a");
                put(w, "a/f", "through the old link?\n");
                remove(w, "up");
                put(w, "up/trees/evil", "beside the trees?\n");
                remove(w, "top");
                put(w, "top/evil", "beside the state?\n");
                remove(w, "q");
                put(w, "q/s", "q was a link to x\n");
                remove(w, "x");
                link(w, "x", &c2);
                remove(w, "p");
                put(w, "p/q/r", "p was a file\n");
                remove(w, "d");
                link(w, "d", &c2);
            }),
        ),
        (
            "Z: directories back to links, files below the old links",
            Box::new(move |w| {
                remove(w, "a");
                link(w, "a", &c3);
                remove(w, "x");
                put(w, "x/y/z", "x a directory again\n");
                put(w, "x/c", "new\n");
                remove(w, "d");
                put(w, "d/b", "d a directory again\n");
                put(w, "d/c", "and more\n");
                remove(w, "p");
                link(w, "p", "/");
            }),
        ),
        (
            "V: the links a directory once more",
            Box::new(|w| {
                remove(w, "a");
                put(w, "a/c", "a directory again\n");
                remove(w, "p");
                put(w, "p/etc/passwd", "not /etc/passwd\n");
                // Case-only renames: two names on Linux.
                std::fs::rename(w.join("d/b"), w.join("d/B")).unwrap();
                std::fs::rename(w.join("x"), w.join("X")).unwrap();
            }),
        ),
    ];
    let mut kept = Vec::new();
    for (i, (name, change)) in steps.into_iter().enumerate() {
        for (step, change) in [
            (name.to_string(), change),
            (
                format!("{name}, quiet"),
                Box::new(move |w: &Path| put(w, "version", &format!("{i}\n")))
                    as Box<dyn FnOnce(&Path)>,
            ),
        ] {
            let c = commit(&up, change);
            m.sync(&url, &[]).expect(0);
            assert_untouched(&m, &step);
            assert_exact(&m, &up, &c, &step);
            kept.push(ino(&m.checkout.join("keep")));
        }
    }
    // The attacks went through the diff, not only through fresh checkouts.
    let by_diff = (2..kept.len()).filter(|&i| kept[i] == kept[i - 2]).count();
    assert!(by_diff >= 4, "only {by_diff} applies by the diff: {kept:?}");
}

type Tree = std::collections::BTreeMap<String, (char, bool, Vec<u8>)>;

/// The same commit on a machine with no spare: the verdict a fresh checkout gives.
fn fresh_verdict(url: &str, args: &[&str]) -> (i32, Option<Tree>) {
    let m = Machine::new();
    let run = m.sync(url, args);
    let tree = (run.code == 0).then(|| snapshot(&m.checkout));
    (run.code, tree)
}

#[test]
fn hostile_trees_get_the_verdict_of_a_fresh_checkout_in_the_diff_path() {
    let up = Upstream::new();
    let url = up.file_url();
    let m = Machine::new();
    let canary = canary(&m);
    let run_sh = blob(&up, RECORDING_RUN_SH.as_bytes());
    let out_link = blob(&up, canary.display().to_string().as_bytes());
    let payload = blob(&up, b"#!/bin/sh\necho owned\n");
    let evil = raw_tree(&up, &[("100644", "evil", &payload)]);
    let hooks = raw_tree(&up, &[("100755", "post-checkout", &payload)]);
    let dot_git = raw_tree(&up, &[("40000", "hooks", &hooks)]);
    let attrs = blob(&up, b"* text eol=crlf\n");
    let abs = canary.join("abs").display().to_string();
    let good = |k: usize| {
        let v = blob(&up, format!("{k}\n").as_bytes());
        commit_tree(
            &up,
            &raw_tree(
                &up,
                &[
                    ("100755", "run.sh", &run_sh),
                    ("100644", "v", &v),
                    ("120000", "x", &out_link),
                ],
            ),
        )
    };
    good(0);
    m.sync(&url, &[]).expect(0);
    type Entries<'a> = Vec<(&'a str, &'a str, &'a str)>;
    let cases: Vec<(&str, Entries)> = vec![
        ("..", vec![("100644", "..", &payload)]),
        ("../evil", vec![("40000", "..", &evil)]),
        (".", vec![("40000", ".", &evil)]),
        (".git/hooks", vec![("40000", ".git", &dot_git)]),
        (".GIT/hooks", vec![("40000", ".GIT", &dot_git)]),
        ("absolute", vec![("100644", &abs, &payload)]),
        ("a/../../evil", vec![("100644", "a/../../evil", &payload)]),
        (
            "x/evil, x the old link",
            vec![("120000", "x", &out_link), ("100644", "x/evil", &payload)],
        ),
        ("x/evil without x", vec![("100644", "x/evil", &payload)]),
        (
            "x a link and a directory",
            vec![("120000", "x", &out_link), ("40000", "x", &evil)],
        ),
        (
            "x a directory and a link",
            vec![("40000", "x", &evil), ("120000", "x", &out_link)],
        ),
        (
            "x twice a link",
            vec![("120000", "x", &out_link), ("120000", "x", &payload)],
        ),
        ("backslashes", vec![("100644", "x\\..\\..\\evil", &payload)]),
        ("a setuid mode", vec![("104755", "suid", &payload)]),
        ("a submodule", vec![("160000", "sub", &payload)]),
        (".gitattributes", vec![("100644", ".gitattributes", &attrs)]),
    ];
    for (k, (what, mut entries)) in cases.into_iter().enumerate() {
        // A good commit first: the tree linked before it is the spare the hostile one is
        // diffed from.
        good(k + 1);
        m.sync(&url, &[]).expect(0);
        if !entries.iter().any(|e| e.1 == "x") {
            entries.push(("120000", "x", &out_link));
        }
        entries.push(("100755", "run.sh", &run_sh));
        let hostile = commit_tree(&up, &raw_tree(&up, &entries));
        let run = m.sync(&url, &[]);
        assert_untouched(&m, what);
        let (code, tree) = fresh_verdict(&url, &[]);
        assert_eq!(run.code, code, "{what}: {}", run.stderr);
        if code == 0 {
            assert_eq!(m.applied().as_deref(), Some(hostile.as_str()), "{what}");
            assert_eq!(Some(snapshot(&m.checkout)), tree, "{what}");
        } else {
            assert_ne!(m.applied().as_deref(), Some(hostile.as_str()), "{what}");
        }
    }
}

/// An entry point that changes its tree in one of several ways and hides it, when
/// `$OUT/tamper` names the way; the canary is `$OUT/../canary`.
const TAMPERING_RUN_SH: &str = r#"#!/bin/sh
set -e
echo "$GITOPS_COMMIT" >> "$OUT/runs"
[ -e "$OUT/tamper" ] || exit 0
how=$(cat "$OUT/tamper")
rm "$OUT/tamper"
touch -r . "$OUT/root-times"
touch -r etc "$OUT/etc-times"
touch -r etc/a.conf "$OUT/file-times"
case "$how" in
same-size-rewrite) printf 'A\n' > etc/a.conf; touch -r "$OUT/file-times" etc/a.conf ;;
chmod-round-trip) chmod 600 etc/a.conf; chmod 644 etc/a.conf ;;
hard-link-in-subdir) ln "$OUT/outside" etc/linked; touch -r "$OUT/etc-times" etc ;;
removed-in-subdir) rm etc/b.conf; touch -r "$OUT/etc-times" etc ;;
subdir-to-link) rm -rf etc/sub; ln -s "$OUT/../canary" etc/sub ;;
top-file-hidden) echo stale > extra; touch -r "$OUT/root-times" . ;;
top-hard-link-hidden) ln "$OUT/outside" linked; touch -r "$OUT/root-times" . ;;
top-link-hidden) ln -s "$OUT/../canary" sneaky; touch -r "$OUT/root-times" . ;;
top-dir-to-link-hidden) rm -rf etc; ln -s "$OUT/../canary" etc; touch -r "$OUT/root-times" . ;;
esac
"#;

#[test]
fn an_entry_point_that_changes_its_tree_and_hides_it_never_leaves_a_trace() {
    let up = Upstream::new();
    let url = up.file_url();
    let m = Machine::new();
    canary(&m);
    std::fs::write(m.out.join("outside"), "outside\n").unwrap();
    up.commit(
        &[
            ("run.sh", TAMPERING_RUN_SH),
            ("etc/a.conf", "a\n"),
            ("etc/b.conf", "b\n"),
            ("etc/sub/c.conf", "c\n"),
        ],
        "init",
    );
    m.sync(&url, &[]).expect(0);
    let mut n = 0;
    let mut next = |up: &Upstream| {
        n += 1;
        // Every file of etc/ changes now and then: the diff must write them, never through
        // a link the entry point left.
        if n % 3 == 0 {
            up.commit(
                &[
                    ("etc/a.conf", &format!("a{n}\n")),
                    ("etc/sub/c.conf", &format!("c{n}\n")),
                    ("etc/sub/new", &format!("{n}\n")),
                ],
                "etc",
            )
        } else {
            up.commit(&[("version", &n.to_string())], "next")
        }
    };
    next(&up);
    m.sync(&url, &[]).expect(0);
    for how in [
        "same-size-rewrite",
        "chmod-round-trip",
        "hard-link-in-subdir",
        "removed-in-subdir",
        "subdir-to-link",
        "top-file-hidden",
        "top-hard-link-hidden",
        "top-link-hidden",
        "top-dir-to-link-hidden",
    ] {
        std::fs::write(m.out.join("tamper"), how).unwrap();
        next(&up);
        m.sync(&url, &[]).expect(0);
        assert!(!m.out.join("tamper").exists(), "{how}: the entry point ran");
        // The next apply is from another spare; the one after from the tampered tree.
        for _ in 0..2 {
            let c = next(&up);
            m.sync(&url, &[]).expect(0);
            assert_untouched(&m, how);
            assert_exact(&m, &up, &c, how);
        }
        assert_eq!(
            std::fs::read_to_string(m.out.join("outside")).unwrap(),
            "outside\n",
            "{how}"
        );
    }
}

#[test]
fn a_file_over_max_file_size_is_refused_in_the_diff_as_in_a_fresh_checkout() {
    let up = Upstream::new();
    let url = up.file_url();
    let m = Machine::new();
    canary(&m);
    let limit = ["--max-file-size", "1K"];
    up.commit(&[("run.sh", RECORDING_RUN_SH), ("small", "s\n")], "init");
    m.sync(&url, &limit).expect(0);
    let good = up.commit(&[("version", "1")], "next");
    m.sync(&url, &limit).expect(0);
    let linked = m.linked_tree();
    // Added in the diff.
    let big = up.commit(&[("data/big.bin", &"x".repeat(2048))], "big");
    let run = m.sync(&url, &limit);
    let (code, _) = fresh_verdict(&url, &limit);
    assert_eq!((run.code, code), (1, 1), "{}", run.stderr);
    assert!(
        run.error_line().contains("data/big.bin is 2.0 KiB"),
        "{}",
        run.stderr
    );
    assert_eq!(m.applied().as_deref(), Some(good.as_str()));
    assert_eq!(m.linked_tree(), linked);
    assert_eq!(m.trees(), [good.as_str()]);
    assert_untouched(&m, "big file added");
    // Already there, the limit lowered since: refused as a fresh checkout refuses it.
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    let c = up.commit(&[("version", "2")], "next");
    m.sync(&url, &[]).expect(0);
    let _ = big;
    up.commit(&[("version", "3")], "next");
    let run = m.sync(&url, &limit);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(m.applied().as_deref(), Some(c.as_str()));
}

#[test]
fn a_symlink_over_a_lowered_max_file_size_is_refused_as_in_a_fresh_checkout() {
    let up = Upstream::new();
    let url = up.file_url();
    let m = Machine::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    // A link's target is its blob: 2000 bytes, under PATH_MAX, over 1 KiB.
    let target = "t/".repeat(1000);
    up.commit_symlink("long", &target, "a long link");
    m.sync(&url, &[]).expect(0);
    let applied = up.commit(&[("version", "1")], "next");
    m.sync(&url, &[]).expect(0);
    up.commit(&[("version", "2")], "next");
    let limit = ["--max-file-size", "1K"];
    let (code, _) = fresh_verdict(&url, &limit);
    assert_eq!(code, 1, "a fresh checkout refuses the link");
    let run = m.sync(&url, &limit);
    assert_eq!(run.code, 1, "the diff refuses it too: {}", run.stderr);
    assert_eq!(m.applied().as_deref(), Some(applied.as_str()));
}

#[test]
fn a_spare_replaced_by_a_link_is_never_followed() {
    let up = Upstream::new();
    let url = up.file_url();
    let m = Machine::new();
    let canary = canary(&m);
    up.commit(&[("run.sh", RECORDING_RUN_SH), ("etc/a", "a\n")], "init");
    m.sync(&url, &[]).expect(0);
    up.commit(&[("version", "1")], "next");
    m.sync(&url, &[]).expect(0);
    // A perfect forgery outside: a copy of the spare with its manifest under the copy's inode.
    let spare = m.state.join("spare/tree");
    let fake = canary.join("tree");
    crate::support::run(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&spare)
            .arg(&fake),
    );
    let manifest = m.state.join(format!("spare/{}.manifest", ino(&spare)));
    let forged = m.state.join(format!("spare/{}.manifest", ino(&fake)));
    std::fs::copy(&manifest, &forged).unwrap();
    std::fs::remove_dir_all(&spare).unwrap();
    symlink(&fake, &spare).unwrap();
    let before = snapshot(&canary);
    let c = up.commit(&[("etc/a", "a2\n"), ("etc/b", "b\n")], "next");
    m.sync(&url, &[]).expect(0);
    assert_eq!(snapshot(&canary), before, "the copy outside was changed");
    assert_exact(&m, &up, &c, "after the spare was a link");
    assert!(!std::fs::symlink_metadata(&spare)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn two_passes_racing_leave_one_exact_tree() {
    let up = Upstream::new();
    let url = up.file_url();
    let m = Machine::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH), ("a", "a\n")], "init");
    m.sync(&url, &[]).expect(0);
    for i in 0..6 {
        let c = up.commit(
            &[("a", &format!("a{i}\n")), (&format!("n{i}"), "n\n")],
            "next",
        );
        let both = [
            m.spawn(&["sync", "--repo-url", &url]),
            m.spawn(&["sync", "--repo-url", &url]),
        ];
        for child in both {
            Run::within(child, Duration::from_secs(60)).expect(0);
        }
        assert_exact(&m, &up, &c, &format!("race {i}"));
        assert_eq!(m.trees(), [c.as_str()]);
    }
}

#[test]
fn kill_9_around_the_swap_leaves_a_whole_tree_and_the_next_pass_exact() {
    let up = Upstream::new();
    let url = up.file_url();
    let m = Machine::new();
    up.commit(
        &[("run.sh", RECORDING_RUN_SH), ("a", "a\n"), ("d/b", "b\n")],
        "init",
    );
    m.sync(&url, &[]).expect(0);
    let mut previous = up.commit(&[("version", "0")], "next");
    m.sync(&url, &[]).expect(0);
    for i in 0..16u64 {
        let c = up.commit(
            &[("a", &format!("a{i}\n")), ("d/b", &format!("b{i}\n"))],
            "next",
        );
        let was = snapshot(&archive(&up, &previous).path().join("tree"));
        let now = snapshot(&archive(&up, &c).path().join("tree"));
        let mut child = m.command();
        child
            .args(["sync", "--repo-url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = child.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(3 * i));
        let _ = child.kill();
        child.wait().unwrap();
        if m.checkout.exists() {
            let linked = snapshot(&m.checkout);
            assert!(
                linked == was || linked == now,
                "after a kill at {} ms",
                3 * i
            );
        }
        m.sync(&url, &[]).expect(0);
        assert_exact(&m, &up, &c, &format!("after a kill at {} ms", 3 * i));
        let spare = m.state.join("spare/tree");
        if spare.exists() {
            assert!(std::fs::symlink_metadata(&spare).unwrap().is_dir());
        }
        previous = c;
    }
}
