//! A store that stays small and fast: past 8 packs the pass consolidates them into one that
//! holds what the refs and the applied commit reach, nothing else; a kill -9 at any moment of
//! that leaves a store the next pass uses; damage found while consolidating is healed.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{applied_machine, names, wait_for, Machine, RECORDING_RUN_SH};
use crate::support::{git, output, run, GitDaemon, Upstream};

/// src/git/pack.rs MAX_PACKS.
const MAX_PACKS: usize = 8;
const CONSOLIDATED: &str = "gitops: consolidated the object store's ";
const NOT_CONSOLIDATED: &str = "could not be consolidated";
const HEALED: &str = "gitops: warning: the object store was damaged (";

fn store(m: &Machine) -> PathBuf {
    m.state.join("repo.git")
}

fn pack_dir(m: &Machine) -> PathBuf {
    store(m).join("objects/pack")
}

fn pack_count(m: &Machine) -> usize {
    names(&pack_dir(m))
        .iter()
        .filter(|n| n.ends_with(".idx"))
        .count()
}

/// What a killed consolidation may leave and the next pass must have swept: temporary files,
/// `.keep`s, packs without their index.
fn leftovers(m: &Machine) -> Vec<String> {
    let all = names(&pack_dir(m));
    all.iter()
        .filter(|n| {
            n.starts_with(".tmp")
                || n.starts_with("tmp_")
                || n.ends_with(".keep")
                || n.strip_suffix(".pack")
                    .is_some_and(|stem| !all.contains(&format!("{stem}.idx")))
        })
        .cloned()
        .collect()
}

fn git_store(m: &Machine) -> std::process::Command {
    let home = m.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = git(&home);
    cmd.arg("-C").arg(store(m));
    cmd
}

fn has_object(m: &Machine, id: &str) -> bool {
    output(git_store(m).args(["cat-file", "-e", id]))
        .status
        .success()
}

/// The id git gives a blob of `content`.
fn blob_id(m: &Machine, content: &str) -> String {
    let file = m.dir.path().join("blob-content");
    std::fs::write(&file, content).unwrap();
    run(git_store(m).arg("hash-object").arg(&file))
}

/// Every object every ref reaches is there and whole: git's own check.
#[track_caller]
fn assert_fsck(m: &Machine, what: &str) {
    let out = output(git_store(m).args(["fsck", "--full", "--no-dangling"]));
    assert!(
        out.status.success(),
        "{what}: git fsck: {}",
        crate::support::describe(&out)
    );
}

/// `n` packs of one unreachable blob each, written by git beside the fetched ones (with the
/// blob left loose too): what many fetches leave, at the cost of a few git commands.
fn filler_packs(m: &Machine, n: usize) -> Vec<String> {
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut ids = Vec::new();
    for i in 0..n {
        let file = m.dir.path().join("filler");
        std::fs::write(&file, format!("filler {i} {salt}\n")).unwrap();
        let id = run(git_store(m).args(["hash-object", "-w"]).arg(&file));
        let mut child = git_store(m)
            .args(["pack-objects", "-q", "objects/pack/pack"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{id}\n").as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        ids.push(id);
    }
    ids
}

#[track_caller]
fn assert_no_warning(run: &crate::harness::Run, what: &str) {
    assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
    assert!(!run.stderr.contains("warning"), "{what}: {}", run.stderr);
}

#[test]
fn store_packs_stay_bounded_over_many_fetches_and_every_pass_works() {
    let (up, _daemon, m, url) = applied_machine();
    let mut consolidations = 0;
    let mut last = String::new();
    for i in 0..MAX_PACKS + 4 {
        last = up.commit(&[(&format!("f{i}"), &format!("file {i}\n"))], "next");
        let pass = m.sync(&url, &[]).expect(0);
        assert_no_warning(&pass, &format!("pass {i}"));
        consolidations += pass.stderr.matches(CONSOLIDATED).count();
        assert!(
            pack_count(&m) <= MAX_PACKS,
            "pass {i}: {} packs",
            pack_count(&m)
        );
        assert_eq!(m.applied().as_deref(), Some(last.as_str()), "pass {i}");
    }
    assert_eq!(consolidations, 1, "one consolidation in 13 fetches");
    assert_eq!(m.runs().len(), MAX_PACKS + 5, "every commit ran once");
    assert_fsck(&m, "after consolidation");
    assert_eq!(leftovers(&m), Vec::<String>::new());
    let tree = m.linked_tree();
    for i in 0..MAX_PACKS + 4 {
        assert_eq!(
            std::fs::read_to_string(tree.join(format!("f{i}"))).unwrap(),
            format!("file {i}\n")
        );
    }
    // The consolidated store serves the next passes: nothing new, then a new commit.
    let plain = m.sync(&url, &[]).expect(0);
    assert_no_warning(&plain, "no-op");
    assert!(plain.stderr.contains("up to date"), "{}", plain.stderr);
    let next = up.commit(&[("after", "after\n")], "after");
    m.sync(&url, &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(next.as_str()));
    assert!(m.runs()[m.runs().len() - 1].starts_with(&format!("{next} {last} ")));
}

#[test]
fn store_packs_consolidation_prunes_what_nothing_reaches_and_keeps_the_applied_history() {
    let (up, _daemon, m, url) = applied_machine();
    let first = m.applied().unwrap();
    // Applied, then force-pushed away and replaced with --allow-rewind: nothing reaches it.
    let doomed = up.commit(&[("doomed", "doomed content\n")], "doomed");
    m.sync(&url, &[]).expect(0);
    up.rewind(&first);
    let kept = up.commit(&[("kept", "kept content\n")], "kept");
    m.sync(&url, &["--allow-rewind"]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(kept.as_str()));
    // Force-pushed away again and refused: the applied commit is reached only by the store's
    // record of it (and state.json), never by the branch.
    up.rewind(&first);
    let other = up.commit(&[("other", "other content\n")], "other");
    let fillers = filler_packs(&m, MAX_PACKS);
    assert!(has_object(&m, &doomed) && has_object(&m, &fillers[0]));

    let refused = m.sync(&url, &[]).expect(4);
    assert!(
        refused.stderr.contains(CONSOLIDATED) && !refused.stderr.contains(NOT_CONSOLIDATED),
        "{}",
        refused.stderr
    );
    assert_eq!(pack_count(&m), 1, "{:?}", names(&pack_dir(&m)));
    for (what, id) in [
        ("the force-pushed commit", doomed.clone()),
        ("its blob", blob_id(&m, "doomed content\n")),
        ("a filler blob in a pack and loose", fillers[0].clone()),
        ("the last filler", fillers[MAX_PACKS - 1].clone()),
    ] {
        assert!(!has_object(&m, &id), "{what} {id} is pruned");
    }
    for (what, id) in [
        ("the applied commit", kept.clone()),
        ("the applied commit's blob", blob_id(&m, "kept content\n")),
        ("its parent", first.clone()),
        ("the branch's tip", other.clone()),
        ("the tip's blob", blob_id(&m, "other content\n")),
    ] {
        assert!(has_object(&m, &id), "{what} {id} stays");
    }
    let objects: Vec<String> = names(&store(&m).join("objects"))
        .into_iter()
        .filter(|n| n.len() == 2)
        .collect();
    assert_eq!(objects, Vec::<String>::new(), "no loose object is left");
    assert_fsck(&m, "after pruning");
    assert_eq!(leftovers(&m), Vec::<String>::new());

    // The refusal holds, and allowing the rewind applies the tip out of the consolidated store.
    m.sync(&url, &[]).expect(4);
    m.sync(&url, &["--allow-rewind"]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(other.as_str()));
    assert_eq!(
        std::fs::read_to_string(m.linked_tree().join("other")).unwrap(),
        "other content\n"
    );
}

/// An upstream with enough files that consolidating takes a while, applied by a new machine.
fn big_machine() -> (Upstream, GitDaemon, Machine, String, String) {
    let up = Upstream::new();
    let mut files: Vec<(String, String)> = (0..1500)
        .map(|i| {
            (
                format!("d{}/f{i}", i % 13),
                format!("content {i}\n").repeat(30),
            )
        })
        .collect();
    files.push(("run.sh".into(), RECORDING_RUN_SH.into()));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let applied = up.commit(&files, "big");
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    (up, daemon, m, url, applied)
}

/// After a kill: the next pass succeeds with nothing to say but what it did, the applied tree
/// is whole, every object is there, the packs are bounded and nothing is left over.
#[track_caller]
fn assert_next_pass_recovers(m: &Machine, url: &str, applied: &str, what: &str) {
    let next = m.sync(url, &[]).expect(0);
    assert_no_warning(&next, what);
    assert!(
        next.stderr.contains("up to date"),
        "{what}: {}",
        next.stderr
    );
    assert_eq!(m.applied().as_deref(), Some(applied), "{what}");
    assert_eq!(m.runs().len(), 1, "{what}: nothing ran again");
    let tree = m.linked_tree();
    for i in [0, 777, 1499] {
        assert_eq!(
            std::fs::read_to_string(tree.join(format!("d{}/f{i}", i % 13))).unwrap(),
            format!("content {i}\n").repeat(30),
            "{what}"
        );
    }
    assert_fsck(m, what);
    assert!(
        pack_count(m) <= MAX_PACKS,
        "{what}: {} packs",
        pack_count(m)
    );
    assert_eq!(leftovers(m), Vec::<String>::new(), "{what}");
    // And the store still takes a fetch.
    let plain = m.sync(url, &[]).expect(0);
    assert_no_warning(&plain, what);
}

#[test]
fn store_packs_kill_9_at_each_step_of_a_consolidation_leaves_a_store_the_next_pass_uses() {
    let (_up, _daemon, m, url, applied) = big_machine();
    for point in [
        "start", "counted", "writing", "written", "in-place", "removing", "removed",
    ] {
        filler_packs(&m, MAX_PACKS);
        let marker = m.dir.path().join(format!("paused-{point}"));
        let mut cmd = m.command();
        cmd.args(["sync", "--repo-url", &url])
            .env(
                "GITOPS_TEST_PACK_PAUSE",
                format!("{point}:{}", marker.display()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        wait_for(&marker);
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever the kill left, the store still reads: git sees every object.
        assert_fsck(&m, &format!("right after a kill at {point}"));
        assert_next_pass_recovers(&m, &url, &applied, &format!("kill at {point}"));
    }
}

#[test]
fn store_packs_kill_9_at_increasing_delays_leaves_a_store_the_next_pass_uses() {
    let (_up, _daemon, m, url, applied) = big_machine();
    for delay_ms in [0u64, 10, 25, 50, 100, 200, 400, 800] {
        filler_packs(&m, MAX_PACKS);
        let mut cmd = m.command();
        cmd.args(["sync", "--repo-url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        assert_next_pass_recovers(&m, &url, &applied, &format!("kill at {delay_ms} ms"));
    }
}

#[test]
fn store_packs_damage_with_many_packs_is_healed_not_consolidated() {
    // A truncated pack: the quick look sees it, the heal fetches a fresh store (one pack).
    let (up, _daemon, m, url) = applied_machine();
    filler_packs(&m, MAX_PACKS);
    let fetched = names(&pack_dir(&m))
        .into_iter()
        .filter(|n| n.ends_with(".pack"))
        .find(|n| {
            // The fetched pack is the largest: the fillers hold one small blob each.
            std::fs::metadata(pack_dir(&m).join(n)).unwrap().len() > 200
        })
        .expect("the fetched pack");
    let pack = pack_dir(&m).join(fetched);
    let len = std::fs::metadata(&pack).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let second = up.commit(&[("second", "2")], "second");
    let healed = m.sync(&url, &[]).expect(0);
    assert!(
        healed.stderr.contains(HEALED) && !healed.stderr.contains(NOT_CONSOLIDATED),
        "{}",
        healed.stderr
    );
    assert_eq!(m.applied().as_deref(), Some(second.as_str()));
    assert!(pack_count(&m) <= MAX_PACKS);
    assert_fsck(&m, "truncated");

    // Damage inside a pack, same length and trailer: only reading the objects finds it, and
    // consolidating is what reads them on a pass with nothing new.
    let (_up, _daemon, m, url) = applied_machine();
    let pack = names(&pack_dir(&m))
        .into_iter()
        .find(|n| n.ends_with(".pack"))
        .map(|n| pack_dir(&m).join(n))
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let end = bytes.len() - 20;
    for b in &mut bytes[12..end] {
        *b ^= 0x5a;
    }
    std::fs::write(&pack, bytes).unwrap();
    filler_packs(&m, MAX_PACKS);
    let first = m.applied().unwrap();
    let pass = m.sync(&url, &[]);
    assert!(!pass.stderr.contains("panicked"), "{}", pass.stderr);
    assert_eq!(pass.code, 0, "{}", pass.stderr);
    let warnings: Vec<&str> = pass
        .stderr
        .lines()
        .filter(|l| l.starts_with("gitops: warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", pass.stderr);
    assert!(warnings[0].starts_with(HEALED), "{}", pass.stderr);
    assert_eq!(m.applied().as_deref(), Some(first.as_str()));
    assert_eq!(m.runs().len(), 1, "nothing ran again");
    assert_fsck(&m, "damaged inside");
    assert!(pack_count(&m) <= MAX_PACKS);
    let plain = m.sync(&url, &[]).expect(0);
    assert_no_warning(&plain, "after the heal");
}

#[test]
fn store_packs_a_shallow_store_is_consolidated_up_to_its_boundary_and_again() {
    let (up, _daemon, m, url) = applied_machine();
    let mut commits = vec![m.applied().unwrap()];
    for i in 0..4 {
        commits.push(up.commit(&[(&format!("f{i}"), &format!("file {i}\n"))], "next"));
        m.sync(&url, &[]).expect(0);
    }
    // The store as a depth-2 fetch leaves it: commits[3] is the boundary, its parents unknown.
    std::fs::write(store(&m).join("shallow"), format!("{}\n", commits[3])).unwrap();
    for round in 0..2 {
        filler_packs(&m, MAX_PACKS);
        let pass = m.sync(&url, &[]).expect(0);
        assert!(
            pass.stderr.contains(CONSOLIDATED) && !pass.stderr.contains("warning"),
            "round {round}: {}",
            pass.stderr
        );
        assert_eq!(pack_count(&m), 1, "round {round}");
        for kept in &commits[3..] {
            assert!(has_object(&m, kept), "round {round}: {kept} stays");
        }
        for pruned in &commits[..3] {
            assert!(
                !has_object(&m, pruned),
                "round {round}: {pruned} is beyond the boundary"
            );
        }
        assert_fsck(&m, &format!("shallow, round {round}"));
    }
    let next = up.commit(&[("after", "after\n")], "after");
    m.sync(&url, &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(next.as_str()));
}
