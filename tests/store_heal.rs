//! A damaged object store is healed in the pass that finds it: one warning, the right commit
//! applied or kept, nothing run twice, a rewind still refused; a network failure is never taken
//! for damage.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::harness::{applied_machine, names, Machine, Run};
use crate::support::{git, run};

const HEALED: &str = "gitops: warning: the object store was damaged (";
const FRESH: &str = "): fetched it again into a fresh store";

fn store(m: &Machine) -> PathBuf {
    m.state.join("repo.git")
}

fn packs(m: &Machine) -> Vec<PathBuf> {
    let dir = store(m).join("objects/pack");
    names(&dir)
        .into_iter()
        .filter(|n| n.ends_with(".pack"))
        .map(|n| dir.join(n))
        .collect()
}

fn truncate_pack(m: &Machine) {
    let pack = packs(m).into_iter().next().expect("a pack");
    let len = std::fs::metadata(&pack).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
    file.set_len(len / 2).unwrap();
}

/// The store's packs unpacked into loose objects, as `git unpack-objects` leaves them.
fn unpack(m: &Machine) -> Vec<PathBuf> {
    let home = m.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let aside = m.dir.path().join("packs-aside");
    std::fs::create_dir_all(&aside).unwrap();
    for pack in packs(m) {
        let moved = aside.join(pack.file_name().unwrap());
        std::fs::rename(&pack, &moved).unwrap();
        let _ = std::fs::remove_file(pack.with_extension("idx"));
        let input = std::fs::File::open(&moved).unwrap();
        run(git(&home)
            .arg("-C")
            .arg(store(m))
            .arg("unpack-objects")
            .arg("-q")
            .stdin(input));
    }
    let objects = store(m).join("objects");
    let mut loose = Vec::new();
    for dir in names(&objects).into_iter().filter(|n| n.len() == 2) {
        for name in names(&objects.join(&dir)) {
            loose.push(objects.join(&dir).join(name));
        }
    }
    assert!(loose.len() >= 3, "loose objects: {loose:?}");
    loose
}

/// One loose object emptied, as a crash before its data reached the disk leaves it.
fn empty_a_loose_object(m: &Machine) {
    std::fs::write(&unpack(m)[0], "").unwrap();
}

fn delete_refs(m: &Machine) {
    std::fs::remove_dir_all(store(m).join("refs")).unwrap();
    let _ = std::fs::remove_file(store(m).join("packed-refs"));
}

fn leave_locks(m: &Machine) {
    for lock in [
        "packed-refs.lock",
        "HEAD.lock",
        "refs/gitops/applied.lock",
        "refs/remotes/origin/HEAD.lock",
    ] {
        std::fs::write(store(m).join(lock), "").unwrap();
    }
}

fn garbage_store(m: &Machine) {
    std::fs::remove_dir_all(store(m)).unwrap();
    std::fs::create_dir(store(m)).unwrap();
    std::fs::write(store(m).join("HEAD"), "garbage\n").unwrap();
    std::fs::write(store(m).join("objects"), [0xffu8; 64]).unwrap();
}

fn garbage_config(m: &Machine) {
    std::fs::write(store(m).join("config"), b"[[[\x00garbage\n\xff").unwrap();
}

type Damage = fn(&Machine);

const DAMAGES: &[(&str, Damage, &str)] = &[
    ("a truncated pack", truncate_pack, "is truncated"),
    ("an emptied loose object", empty_a_loose_object, "is empty"),
    ("deleted refs", delete_refs, "refs/ is missing"),
    (
        "a store gix cannot open",
        garbage_store,
        "HEAD is not a reference",
    ),
    ("a garbage config", garbage_config, "gix cannot open it"),
];

#[track_caller]
fn assert_healed(run: &Run, what: &str, why: &str) {
    assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("gitops: warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "{what}: one warning: {}", run.stderr);
    assert!(
        warnings[0].starts_with(HEALED)
            && warnings[0].ends_with(FRESH)
            && warnings[0].contains(why),
        "{what}: {}",
        run.stderr
    );
}

#[track_caller]
fn assert_plain_up_to_date(m: &Machine, url: &str, what: &str) {
    let plain = m.sync(url, &[]).expect(0);
    assert!(
        !plain.stderr.contains("warning") && plain.stderr.contains("up to date"),
        "{what}: the pass after the heal: {}",
        plain.stderr
    );
}

fn record(m: &Machine) -> String {
    std::fs::read_to_string(store(m).join("refs/gitops/applied"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn leftovers(m: &Machine) -> Vec<String> {
    names(&m.state)
        .into_iter()
        .filter(|n| n.starts_with("repo.git."))
        .collect()
}

#[test]
fn store_heal_each_damage_is_healed_in_the_same_pass_and_the_next_is_plain() {
    for &(what, damage, why) in DAMAGES {
        let (up, _daemon, m, url) = applied_machine();
        let first = m.applied().unwrap();

        // Nothing new upstream: the applied commit is kept, not run again.
        damage(&m);
        let healed = m.sync(&url, &[]).expect(0);
        assert_healed(&healed, what, why);
        assert_eq!(m.runs().len(), 1, "{what}: nothing ran again");
        assert_eq!(m.applied().as_deref(), Some(first.as_str()), "{what}");
        assert_eq!(record(&m), first, "{what}: the record is kept");
        assert_eq!(leftovers(&m), Vec::<String>::new(), "{what}");
        assert_plain_up_to_date(&m, &url, what);

        // A new commit upstream: the healing pass applies it.
        damage(&m);
        let second = up.commit(&[("second", "2")], "second");
        let healed = m.sync(&url, &[]).expect(0);
        assert_healed(&healed, what, why);
        assert_eq!(m.runs().len(), 2, "{what}: the new commit ran once");
        assert_eq!(m.applied().as_deref(), Some(second.as_str()), "{what}");
        assert_eq!(record(&m), second, "{what}");
        assert!(
            m.runs()[1].starts_with(&format!("{second} {first} ")),
            "{what}"
        );
        assert_plain_up_to_date(&m, &url, what);
    }
}

#[test]
fn store_heal_stale_locks_are_removed_with_one_warning() {
    let (up, _daemon, m, url) = applied_machine();
    leave_locks(&m);
    let second = up.commit(&[("second", "2")], "second");
    let run = m.sync(&url, &[]).expect(0);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("gitops: warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains("lock files a killed pass left")
            && warnings[0].contains("packed-refs.lock")
            && warnings[0].contains("refs/gitops/applied.lock"),
        "{}",
        run.stderr
    );
    assert_eq!(m.applied().as_deref(), Some(second.as_str()));
    assert_eq!(record(&m), second, "the record was written past its lock");
    assert_eq!(m.runs().len(), 2);
    assert_plain_up_to_date(&m, &url, "locks");
}

#[test]
fn store_heal_a_network_failure_is_exit_3_and_never_a_re_clone() {
    let (_up, daemon, m, url) = applied_machine();
    let inode = std::fs::metadata(store(&m)).unwrap().ino();
    let before = packs(&m);
    drop(daemon);
    let failed = m.sync(&url, &[]).expect(3);
    let line = failed.error_line();
    assert!(
        line.contains("127.0.0.1") && line.contains("check the host and port"),
        "{line}"
    );
    assert!(!failed.stderr.contains("object store"), "{}", failed.stderr);
    assert_eq!(
        std::fs::metadata(store(&m)).unwrap().ino(),
        inode,
        "the same store"
    );
    assert_eq!(packs(&m), before, "the store is untouched");

    // Damaged and offline: the fresh store cannot be fetched, the error names the network, and
    // the old store stays where it was, with nothing left beside it.
    truncate_pack(&m);
    let failed = m.sync(&url, &[]).expect(3);
    let line = failed.error_line();
    assert!(line.contains("check the host and port"), "{line}");
    assert!(
        failed
            .stderr
            .contains("gitops: warning: the object store is damaged (objects/pack/")
            && failed.stderr.contains("a fresh one could not be fetched"),
        "{}",
        failed.stderr
    );
    assert_eq!(std::fs::metadata(store(&m)).unwrap().ino(), inode);
    assert_eq!(leftovers(&m), Vec::<String>::new());
    assert_eq!(m.runs().len(), 1);
}

#[test]
fn store_heal_keeps_the_rewind_defence() {
    // The store's own record survives a damaged pack, with state.json lost too.
    let (up, _daemon, m, url) = applied_machine();
    let first = m.applied().unwrap();
    let second = up.commit(&[("second", "2")], "second");
    m.sync(&url, &[]).expect(0);
    truncate_pack(&m);
    std::fs::remove_file(m.state.join("state.json")).unwrap();
    up.rewind(&first);
    let refused = m.sync(&url, &[]).expect(4);
    assert!(refused.stderr.contains(HEALED), "{}", refused.stderr);
    assert!(
        refused.error_line().contains(&second[..12]),
        "{}",
        refused.stderr
    );
    assert_eq!(m.runs().len(), 2, "nothing ran");

    // A store gix cannot open loses its record with it: state.json's commit is recorded again.
    let (up, _daemon, m, url) = applied_machine();
    let first = m.applied().unwrap();
    let second = up.commit(&[("second", "2")], "second");
    m.sync(&url, &[]).expect(0);
    garbage_store(&m);
    let healed = m.sync(&url, &[]).expect(0);
    assert_healed(&healed, "garbage", "HEAD is not a reference");
    assert_eq!(m.runs().len(), 2, "the applied commit is not run again");
    assert_eq!(record(&m), second, "the record is written again");
    up.rewind(&first);
    let refused = m.sync(&url, &[]).expect(4);
    assert!(
        refused.error_line().contains("no longer descends"),
        "{}",
        refused.stderr
    );
    // And with state.json lost after the heal, the rewritten record still refuses.
    std::fs::remove_file(m.state.join("state.json")).unwrap();
    m.sync(&url, &[]).expect(4);
    assert_eq!(m.runs().len(), 2);
}

#[test]
fn store_heal_leftovers_of_a_killed_heal_are_swept() {
    let (_up, _daemon, m, url) = applied_machine();
    for name in ["repo.git.new-1234abcd", "repo.git.old-99"] {
        let dir = m.state.join(name);
        std::fs::create_dir_all(dir.join("objects")).unwrap();
        std::fs::write(dir.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    }
    assert_plain_up_to_date(&m, &url, "leftovers");
    assert_eq!(leftovers(&m), Vec::<String>::new());
}

#[test]
fn store_heal_a_pack_damaged_inside_is_found_by_hashing_it_whole() {
    let (up, _daemon, m, url) = applied_machine();
    // Same length, same trailer: only hashing the whole pack sees it.
    let pack = packs(&m).into_iter().next().expect("a pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    let end = bytes.len() - 20;
    for b in &mut bytes[12..end] {
        *b ^= 0x5a;
    }
    std::fs::write(&pack, bytes).unwrap();
    let second = up.commit(&[("second", "2")], "second");
    let mut said = String::new();
    for _ in 0..2 {
        let run = m.sync(&url, &[]);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        assert!(!run.stderr.contains("check --repo-url"), "{}", run.stderr);
        said.push_str(&run.stderr);
        if run.code == 0 {
            break;
        }
    }
    assert!(said.contains(HEALED) && said.contains("checksum"), "{said}");
    assert_eq!(m.applied().as_deref(), Some(second.as_str()), "{said}");
    assert_eq!(m.runs().len(), 2, "{said}");
    assert_plain_up_to_date(&m, &url, "damaged inside");
}

#[test]
fn store_heal_kill_9_at_any_moment_of_a_heal_leaves_a_store_the_next_pass_uses() {
    let up = crate::support::Upstream::new();
    let mut files: Vec<(String, String)> = (0..1500)
        .map(|i| {
            (
                format!("d{}/f{i}", i % 13),
                format!("content {i}\n").repeat(30),
            )
        })
        .collect();
    files.push(("run.sh".into(), crate::harness::RECORDING_RUN_SH.into()));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let applied = up.commit(&files, "big");
    let daemon = crate::support::GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    for delay_ms in [0u64, 5, 10, 20, 35, 50, 80, 120, 200, 300] {
        let m = Machine::new();
        m.sync(&url, &[]).expect(0);
        truncate_pack(&m);
        let mut cmd = m.command();
        cmd.args(["sync", "--repo-url", &url])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();

        let next = m.sync(&url, &[]).expect(0);
        assert!(!next.stderr.contains("panicked"), "{}", next.stderr);
        assert_eq!(
            m.applied().as_deref(),
            Some(applied.as_str()),
            "kill at {delay_ms} ms"
        );
        assert_eq!(
            m.runs().len(),
            1,
            "nothing ran again after kill at {delay_ms} ms"
        );
        assert_eq!(record(&m), applied, "kill at {delay_ms} ms");
        assert_eq!(leftovers(&m), Vec::<String>::new(), "kill at {delay_ms} ms");
        assert_plain_up_to_date(&m, &url, &format!("kill at {delay_ms} ms"));
    }
}

/// Garbage where the zlib data of every loose object of `kind` should be: only reading it shows.
fn garble_loose(m: &Machine, kind: &str) {
    let home = m.dir.path().join("home");
    let objects = store(m).join("objects");
    for dir in names(&objects).into_iter().filter(|n| n.len() == 2) {
        for name in names(&objects.join(&dir)) {
            let is = crate::support::output(git(&home).arg("-C").arg(store(m)).args([
                "cat-file",
                "-t",
                &format!("{dir}{name}"),
            ]));
            if String::from_utf8_lossy(&is.stdout).trim() == kind {
                std::fs::write(objects.join(&dir).join(name), "garbage, not zlib").unwrap();
            }
        }
    }
}

#[test]
fn store_heal_a_garbled_loose_object_is_found_once_something_reads_it() {
    // A commit is read by the fetch's negotiation, a blob only by the checkout of the next
    // commit: either way the pass that reads it heals the store and applies.
    for kind in ["commit", "blob"] {
        let (up, _daemon, m, url) = applied_machine();
        unpack(&m);
        garble_loose(&m, kind);
        let second = up.commit(&[("second", "2")], "second");
        let healed = m.sync(&url, &[]).expect(0);
        assert_healed(&healed, kind, "cannot be read");
        assert_eq!(m.applied().as_deref(), Some(second.as_str()), "{kind}");
        assert_eq!(m.runs().len(), 2, "{kind}: the new commit ran once");
        assert_plain_up_to_date(&m, &url, kind);
    }
}

#[test]
fn store_heal_the_applied_tree_written_again_out_of_a_damaged_store_heals_it() {
    let (_up, _daemon, m, url) = applied_machine();
    let first = m.applied().unwrap();
    unpack(&m);
    garble_loose(&m, "blob");
    // Nothing new upstream: only writing the applied tree again reads a blob.
    std::fs::remove_dir_all(m.state.join("trees").join(&first)).unwrap();
    let healed = m.sync(&url, &[]).expect(0);
    assert!(!healed.stderr.contains("panicked"), "{}", healed.stderr);
    assert!(
        healed.stderr.contains(HEALED) && healed.stderr.contains("cannot be read"),
        "{}",
        healed.stderr
    );
    assert_eq!(
        std::fs::read_to_string(m.checkout.join("run.sh")).unwrap(),
        crate::harness::RECORDING_RUN_SH
    );
    assert_eq!(m.runs().len(), 1, "nothing ran again");
    assert_eq!(m.applied().as_deref(), Some(first.as_str()));
    assert_plain_up_to_date(&m, &url, "applied tree");
}
