//! The checked-out trees under `trees/` and the checkout symlink that points at one of them.
//!
//! Every change here is a rename, so whatever moment a pass is killed at, the checkout path
//! resolves to a complete tree.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use gix::bstr::{BStr, BString, ByteSlice};
use gix::ObjectId;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

use crate::exit::{fail, Exit};

mod manifest;
mod write;

use manifest::*;
pub use manifest::{flavor_of, Manifest};
pub use write::{changes, update_tree, write_tree};

/// The entry at `path` in the tree `tree`: its mode and object. Err: a directory on the way is
/// a symlink (the checkout would lead outside the tree there), said as the end of a sentence.
pub fn entry_at(
    repo: &gix::Repository,
    tree: ObjectId,
    path: &str,
) -> std::result::Result<Option<(gix::objs::tree::EntryMode, ObjectId)>, String> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let mut current = tree;
    for (index, part) in parts.iter().enumerate() {
        let Ok(tree) = repo.find_tree(current) else {
            return Ok(None);
        };
        let Some(entry) = tree.find_entry(part.as_bytes()) else {
            return Ok(None);
        };
        let (mode, id) = (entry.mode(), entry.object_id());
        if index + 1 == parts.len() {
            return Ok(Some((mode, id)));
        }
        if mode.is_link() {
            return Err(format!("{part} on the way to it is a symlink"));
        }
        if !mode.is_tree() {
            return Ok(None);
        }
        current = id;
    }
    Ok(None)
}

/// Bring a tree to `commit` in `trees/<commit>`: the spare tree (the one linked before the last
/// apply, kept in `spare/` beside `trees/`) brought up to date by `update` when its manifest shows
/// it exactly as it was written, else a fresh tree written by `write` into an empty directory.
///
/// The tree is complete before it is renamed into place, so the link never sees it half-made. A
/// tree already at `trees/<commit>` (an earlier attempt, whose entry point may have changed it)
/// is exchanged out in one step and becomes the spare, checked before any reuse. `flavor` names
/// whatever else shapes the files (the umask): a spare written under another is not reused.
pub fn prepare(
    trees: &Path,
    commit: &str,
    flavor: &str,
    write: impl FnOnce(&Path) -> Result<()>,
    update: impl FnOnce(&Path, &Manifest) -> Result<Vec<BString>>,
) -> Result<PathBuf> {
    let dest = trees.join(commit);
    let spares = spare_dir(trees);
    let spare = spares.join(SPARE);
    let mut ready = None;
    if let Some(base) = usable_spare(&spares, flavor) {
        // The mark that the spare is being changed is its manifest's absence: a pass killed
        // from here on leaves a tree that is never linked, only written afresh.
        if remove_any(&manifest_path(&spares, base.root_ino())).is_ok() {
            if let Ok(touched) = update(&spare, &base) {
                let manifest = base.updated(&spare, commit, &touched)?;
                manifest.save(&spares)?;
                ready = Some(spare.clone());
            }
        }
    }
    let ready = match ready {
        Some(ready) => ready,
        None => {
            remove_any(&spare)?;
            let tmp = trees.join(format!(".new-{commit}"));
            remove_any(&tmp)?;
            fs::create_dir(&tmp).with_context(|| format!("could not create {}", tmp.display()))?;
            if let Err(e) = write(&tmp) {
                // Half a tree is of no use to anyone and may be large: the next attempt starts afresh.
                let _ = remove_any(&tmp);
                return Err(e);
            }
            // Without its manifest a tree is only never reused: no reason to fail the apply.
            if ensure_private_dir(&spares).is_ok() {
                if let Ok(manifest) = Manifest::walk(&tmp, commit, flavor) {
                    let _ = manifest.save(&spares);
                }
            }
            tmp
        }
    };
    if fs::symlink_metadata(&dest).is_ok() {
        // The checkout link may point at the old copy right now: exchange the two in one step
        // instead of a remove-then-rename that would leave it dangling.
        renameat2(
            AT_FDCWD,
            &ready,
            AT_FDCWD,
            &dest,
            RenameFlags::RENAME_EXCHANGE,
        )
        .with_context(|| format!("could not swap {} into place", dest.display()))?;
        // The old copy is the spare now: its manifest says whether it may be reused.
        if ready != spare && fs::rename(&ready, &spare).is_err() {
            remove_any(&ready)?;
        }
    } else {
        fs::rename(&ready, &dest)
            .with_context(|| format!("could not move {} into place", dest.display()))?;
    }
    Ok(dest)
}

/// `spare/` beside `trees/`: the spare tree and every tree's manifest, kept apart from `trees/`
/// whose entries are all commits' trees.
fn spare_dir(trees: &Path) -> PathBuf {
    trees.parent().unwrap_or(Path::new("/")).join("spare")
}

/// The spare tree's name in `spare/`.
const SPARE: &str = "tree";

fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => {
            Err(e).with_context(|| format!("could not create {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Point the checkout symlink at `target` with a rename, which replaces the link atomically.
pub fn switch_link(link: &Path, target: &Path) -> Result<()> {
    match fs::symlink_metadata(link) {
        Ok(meta) if !meta.file_type().is_symlink() => {
            return Err(fail(
                Exit::Usage,
                format!(
                    "the checkout path {} exists and is not a symlink: move it away (gitops manages it as a link to the applied tree) or choose another --checkout",
                    link.display()
                ),
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("could not inspect {}", link.display())),
    }
    if fs::read_link(link).ok().as_deref() == Some(target) {
        return Ok(());
    }
    let parent = link.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(parent).with_context(|| format!("could not create {}", parent.display()))?;
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The parent may be writable by others (/ is not, /srv/x may be): an unpredictable name, and
    // symlink(2) never replaces or follows what is already there.
    let suffix = crate::files::random_suffix().context("could not read /dev/urandom")?;
    let tmp = parent.join(format!(".{name}.gitops-new-{suffix}"));
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("could not create the link {}", tmp.display()))?;
    fs::rename(&tmp, link).with_context(|| {
        format!(
            "could not switch {} to {}",
            link.display(),
            target.display()
        )
    })?;
    remove_stale_links(parent, &format!(".{name}.gitops-new-"));
    Ok(())
}

/// A pass killed between creating its temporary link and renaming it leaves the link behind,
/// under a name no later pass reuses. Only symlinks are removed (unlinking a link never touches
/// what it points at); anything else of that name is not ours to remove.
fn remove_stale_links(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let ours = entry.file_name().to_string_lossy().starts_with(prefix);
        if ours && entry.file_type().is_ok_and(|t| t.is_symlink()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// What is wrong with the checkout link, when it does not point at `target`: "is missing",
/// "points at X". None when it points there, or when it is no link at all (that one is
/// refused by the configuration check, never replaced).
pub fn link_problem(link: &Path, target: &Path) -> Option<String> {
    match fs::symlink_metadata(link) {
        Err(e) if e.kind() == ErrorKind::NotFound => Some("is missing".to_string()),
        Ok(meta) if meta.file_type().is_symlink() => match fs::read_link(link) {
            Ok(points) if points == target => None,
            Ok(points) => Some(format!("points at {}", points.display())),
            Err(e) => Some(format!("cannot be read ({e})")),
        },
        // ENOTDIR, EACCES: switching it fails with the reason, as an apply would.
        Err(e) if e.kind() != ErrorKind::NotFound => Some(format!("cannot be inspected ({e})")),
        _ => None,
    }
}

/// The name of the tree the checkout link points at, if it is a link.
pub fn linked_tree_name(link: &Path) -> Option<String> {
    let target = fs::read_link(link).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// Remove every tree except those named in `keep` (and leftovers of interrupted passes). The
/// first complete tree let go becomes the spare when there is none, rather than being removed;
/// manifests of trees no longer there go.
pub fn prune(trees: &Path, keep: &[&str]) -> Result<()> {
    let entries = match fs::read_dir(trees) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("could not list {}", trees.display())),
    };
    let spares = spare_dir(trees);
    let spare = spares.join(SPARE);
    // A spare without a manifest (one being updated when a pass was killed) is never reused:
    // it frees the place for one that may be.
    if let Ok(meta) = fs::symlink_metadata(&spare) {
        if !manifest_path(&spares, meta.ino()).exists() {
            remove_any(&spare)?;
        }
    }
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if keep.iter().any(|k| name == **k) {
            continue;
        }
        let complete =
            !name.as_bytes().starts_with(b".") && entry.file_type().is_ok_and(|t| t.is_dir());
        let vacant = spares.is_dir() && fs::symlink_metadata(&spare).is_err();
        if complete && vacant && fs::rename(entry.path(), &spare).is_ok() {
            continue;
        }
        remove_any(&entry.path())?;
    }
    prune_manifests(trees, &spares)
}

fn prune_manifests(trees: &Path, spares: &Path) -> Result<()> {
    let Ok(listing) = fs::read_dir(spares) else {
        return Ok(());
    };
    let mut live: Vec<u64> = fs::read_dir(trees)
        .map(|l| {
            l.flatten()
                .filter_map(|e| e.metadata().ok().map(|m| m.ino()))
                .collect()
        })
        .unwrap_or_default();
    live.extend(fs::symlink_metadata(spares.join(SPARE)).map(|m| m.ino()));
    for entry in listing {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kept = name == SPARE
            || name == CLOCK
            || name
                .strip_suffix(".manifest")
                .and_then(|ino| ino.parse::<u64>().ok())
                .is_some_and(|ino| live.contains(&ino));
        if !kept {
            remove_any(&entry.path())?;
        }
    }
    Ok(())
}

fn remove_any(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        // An entry point may leave read-only directories behind; make them writable and retry.
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            make_writable(path);
            fs::remove_dir_all(path).with_context(|| format!("could not remove {}", path.display()))
        }
        other => other.with_context(|| format!("could not remove {}", path.display())),
    }
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.is_dir() {
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
            if let Ok(entries) = fs::read_dir(path) {
                for entry in entries.flatten() {
                    make_writable(&entry.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::write::{check_canonical, git_order};
    use super::*;

    fn write_marker(text: &'static str) -> impl FnOnce(&Path) -> Result<()> {
        move |dir| Ok(fs::write(dir.join("marker"), text)?)
    }

    fn no_spare(_: &Path, _: &Manifest) -> Result<Vec<BString>> {
        bail!("no spare in this test")
    }

    fn prepare(
        trees: &Path,
        commit: &str,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        super::prepare(trees, commit, "", write, no_spare)
    }

    /// A work repository whose commits the tests apply, made by real git.
    struct Work {
        dir: tempfile::TempDir,
    }

    impl Work {
        fn new() -> Work {
            let work = Work {
                dir: tempfile::tempdir().unwrap(),
            };
            work.git(&["init", "-q", "-b", "main"]);
            work
        }

        fn git(&self, args: &[&str]) -> String {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
                .args(args)
                .current_dir(self.dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        }

        /// Change the work tree with `change`, commit everything, return the commit.
        fn commit(&self, change: impl FnOnce(&Path)) -> String {
            change(self.dir.path());
            self.git(&["add", "-A"]);
            self.git(&["commit", "-q", "--allow-empty", "-m", "c"]);
            self.git(&["rev-parse", "HEAD"])
        }

        fn repo(&self) -> gix::Repository {
            gix::open(self.dir.path().join(".git")).unwrap()
        }
    }

    /// Apply `commit` as a pass does (prepare, then prune all but it); true when by the diff.
    fn apply(repo: &gix::Repository, trees: &Path, commit: &str) -> (PathBuf, bool) {
        let id = ObjectId::from_hex(commit.as_bytes()).unwrap();
        let mut fresh = false;
        let tree = super::prepare(
            trees,
            commit,
            "test",
            |dir| {
                fresh = true;
                write_tree(repo, id, dir, u64::MAX, None)
            },
            |dir, base| update_tree(repo, base, id, dir, u64::MAX),
        )
        .unwrap();
        prune(trees, &[commit]).unwrap();
        (tree, !fresh)
    }

    /// Every entry below `dir`: kind, exec bit, content or link target.
    fn snapshot(dir: &Path) -> BTreeMap<String, (char, bool, Vec<u8>)> {
        let manifest = Manifest::walk(dir, "", "").unwrap();
        manifest
            .paths()
            .filter(|p| !p.is_empty())
            .map(|p| {
                let path = join(dir, p);
                let meta = fs::symlink_metadata(&path).unwrap();
                let exec = meta.mode() & 0o100 != 0;
                let entry = if meta.file_type().is_symlink() {
                    (
                        'l',
                        false,
                        fs::read_link(&path)
                            .unwrap()
                            .as_os_str()
                            .as_bytes()
                            .to_vec(),
                    )
                } else if meta.is_dir() {
                    ('d', false, Vec::new())
                } else {
                    ('f', exec, fs::read(&path).unwrap())
                };
                (p.to_string(), entry)
            })
            .collect()
    }

    fn assert_exact(repo: &gix::Repository, tree: &Path, commit: &str, step: &str) {
        let fresh = tempfile::tempdir().unwrap();
        let id = ObjectId::from_hex(commit.as_bytes()).unwrap();
        write_tree(repo, id, fresh.path(), u64::MAX, None).unwrap();
        assert_eq!(snapshot(tree), snapshot(fresh.path()), "{step}");
    }

    fn put(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    type Step = (&'static str, fn(&Path));

    #[test]
    fn the_spare_follows_every_kind_of_change_exactly() {
        let work = Work::new();
        let root = tempfile::tempdir().unwrap();
        let trees = root.path().join("trees");
        fs::create_dir(&trees).unwrap();
        let steps: [Step; 10] = [
            ("first", |w| {
                put(w, "a.txt", "a\n");
                put(w, "d/x/deep.txt", "deep\n");
                put(w, "d/y.txt", "y\n");
                put(w, "f", "file becoming a dir\n");
                std::os::unix::fs::symlink("a.txt", w.join("link")).unwrap();
            }),
            ("second", |w| put(w, "a.txt", "a2\n")),
            ("add", |w| put(w, "new/dir/b.txt", "b\n")),
            ("modify", |w| put(w, "d/y.txt", "y2\n")),
            ("delete and empty a directory", |w| {
                fs::remove_dir_all(w.join("d/x")).unwrap();
            }),
            ("mode change", |w| chmod(&w.join("a.txt"), 0o755)),
            ("file to dir", |w| {
                fs::remove_file(w.join("f")).unwrap();
                put(w, "f/inside", "now a dir\n");
            }),
            ("dir to file", |w| {
                fs::remove_dir_all(w.join("new")).unwrap();
                put(w, "new", "now a file\n");
            }),
            ("symlink retargeted and file to symlink", |w| {
                fs::remove_file(w.join("link")).unwrap();
                std::os::unix::fs::symlink("d/y.txt", w.join("link")).unwrap();
                fs::remove_file(w.join("d/y.txt")).unwrap();
                std::os::unix::fs::symlink("../a.txt", w.join("d/y.txt")).unwrap();
            }),
            ("symlink to file, rename", |w| {
                fs::remove_file(w.join("link")).unwrap();
                put(w, "link", "plain\n");
                fs::rename(w.join("f/inside"), w.join("f/renamed")).unwrap();
            }),
        ];
        let mut by_diff = Vec::new();
        for (name, change) in steps {
            let commit = work.commit(change);
            let repo = work.repo();
            let (tree, diffed) = apply(&repo, &trees, &commit);
            assert_exact(&repo, &tree, &commit, name);
            by_diff.push(diffed);
        }
        // The first two have no spare yet; every later one comes from the spare.
        assert_eq!(by_diff[..2], [false, false]);
        assert!(by_diff[2..].iter().all(|d| *d), "{by_diff:?}");
    }

    #[test]
    fn a_spare_changed_behind_our_back_is_written_afresh() {
        let changes: [Step; 6] = [
            ("a file appended to", |t| {
                use std::io::Write;
                let mut f = fs::OpenOptions::new()
                    .append(true)
                    .open(t.join("a"))
                    .unwrap();
                f.write_all(b"more").unwrap();
            }),
            ("a file added below", |t| put(t, "d/extra", "x")),
            ("a file added at the top", |t| put(t, "extra", "x")),
            ("a mode changed", |t| chmod(&t.join("d/b"), 0o700)),
            ("a file replaced by another", |t| {
                put(t, "tmp", "b\n");
                fs::rename(t.join("tmp"), t.join("d/b")).unwrap();
            }),
            ("a file rewritten with its old times", |t| {
                let before = fs::metadata(t.join("a")).unwrap();
                fs::write(t.join("a"), "A\n").unwrap();
                let f = fs::File::options().write(true).open(t.join("a")).unwrap();
                f.set_modified(before.modified().unwrap()).unwrap();
            }),
        ];
        for (what, tamper) in changes {
            let work = Work::new();
            let root = tempfile::tempdir().unwrap();
            let trees = root.path().join("trees");
            fs::create_dir(&trees).unwrap();
            let repo = || work.repo();
            let c1 = work.commit(|w| {
                put(w, "a", "a\n");
                put(w, "d/b", "b\n");
            });
            let (linked, _) = apply(&repo(), &trees, &c1);
            // The entry point of c1 writes into its tree, which becomes the spare next.
            let c2 = work.commit(|w| put(w, "c", "c\n"));
            tamper(&linked);
            apply(&repo(), &trees, &c2);
            let c3 = work.commit(|w| put(w, "c", "c2\n"));
            let (tree, diffed) = apply(&repo(), &trees, &c3);
            assert!(!diffed, "{what}: the changed spare is not reused");
            assert_exact(&repo(), &tree, &c3, what);
        }
    }

    #[test]
    fn a_spare_left_mid_update_is_written_afresh() {
        let work = Work::new();
        let root = tempfile::tempdir().unwrap();
        let trees = root.path().join("trees");
        fs::create_dir(&trees).unwrap();
        let repo = work.repo();
        let mut commits = Vec::new();
        for text in ["1", "2", "3"] {
            commits.push(work.commit(|w| put(w, "a", text)));
        }
        apply(&work.repo(), &trees, &commits[0]);
        apply(&work.repo(), &trees, &commits[1]);
        // An update that stops half-way, as a pass killed in it would (the error stands in
        // for the kill: the spare is left flagged either way).
        let id = ObjectId::from_hex(commits[2].as_bytes()).unwrap();
        let repo = &repo;
        let failed = super::prepare(
            &trees,
            &commits[2],
            "test",
            |_| bail!("stop before the fresh write too"),
            |dir, _| {
                fs::write(dir.join("a"), "half")?;
                bail!("killed")
            },
        );
        assert!(failed.is_err());
        let spares = spare_dir(&trees);
        let ino = fs::symlink_metadata(spares.join(SPARE)).map(|m| m.ino());
        assert!(
            ino.is_err() || !manifest_path(&spares, ino.unwrap()).exists(),
            "the half-updated spare has no manifest"
        );
        let (tree, diffed) = apply(repo, &trees, &commits[2]);
        assert!(!diffed);
        assert_exact(repo, &tree, &commits[2], "after the interrupted update");
        let _ = id;
    }

    #[test]
    fn trees_git_writes_are_canonical_in_gits_order() {
        let work = Work::new();
        let commit = work.commit(|w| {
            for path in ["a-b", "a/x", "a.b", "a0", "ab/c", "a b", "a/y/z"] {
                put(w, path, "x");
            }
        });
        let repo = work.repo();
        let id = ObjectId::from_hex(commit.as_bytes()).unwrap();
        let tree = repo.find_commit(id).unwrap().tree_id().unwrap().detach();
        check_canonical(&repo, tree).unwrap();
        use std::cmp::Ordering::*;
        // A tree sorts as if its name ended in a slash: after "a-b" and "a.b", before "a0".
        assert_eq!(git_order(b"a-b", false, b"a", true), Less);
        assert_eq!(git_order(b"a", true, b"a0", false), Less);
        assert_eq!(git_order(b"a", false, b"a-b", false), Less);
        assert_eq!(git_order(b"a", false, b"a", false), Equal);
    }

    #[test]
    fn a_manifest_is_kept_only_once_the_clock_has_moved_past_its_entries() {
        let root = tempfile::tempdir().unwrap();
        let spares = root.path().join("spare");
        fs::create_dir(&spares).unwrap();
        let tree = root.path().join("tree");
        fs::create_dir(&tree).unwrap();
        fs::write(tree.join("f"), "x").unwrap();
        assert!(clock_passed(&spares, (0, 0)));
        let manifest = Manifest::walk(&tree, "c", "").unwrap();
        manifest.save(&spares).unwrap();
        let ino = manifest.root_ino();
        assert!(manifest_path(&spares, ino).exists());
        // An entry the clock has not passed yet (as a coarse clock leaves the files written in
        // its current tick): no manifest, so the tree is written afresh rather than reused.
        fs::remove_file(manifest_path(&spares, ino)).unwrap();
        let mut racy = Manifest::walk(&tree, "c", "").unwrap();
        let future = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        racy.entries.get_mut(b"f".as_bstr()).unwrap().ctime = (future, 0);
        let started = std::time::Instant::now();
        racy.save(&spares).unwrap();
        assert!(!manifest_path(&spares, ino).exists());
        assert!(
            started.elapsed() < CLOCK_PATIENCE * 4,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_manifest_survives_a_round_trip_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), "a b\nc", "x");
        put(dir.path(), "d/e", "y");
        let manifest = Manifest::walk(dir.path(), "c0ffee", "umask 22").unwrap();
        let spares = tempfile::tempdir().unwrap();
        manifest.save(spares.path()).unwrap();
        let bytes = fs::read(manifest_path(spares.path(), manifest.root_ino())).unwrap();
        let back = Manifest::parse(&bytes).unwrap();
        assert_eq!(back.entries, manifest.entries);
        assert_eq!(
            (back.commit(), back.flavor.as_str()),
            ("c0ffee", "umask 22")
        );
        assert!(back.matches(dir.path()));
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            let parsed = Manifest::parse(&bytes[..cut]);
            assert!(
                parsed.is_none_or(|m| m.entries.len() < manifest.entries.len()),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn rewriting_a_tree_keeps_the_link_resolving() {
        let root = tempfile::tempdir().unwrap();
        let trees = root.path().join("trees");
        fs::create_dir(&trees).unwrap();
        let link = root.path().join("gitops");
        let first = prepare(&trees, "abc", write_marker("one")).unwrap();
        switch_link(&link, &first).unwrap();
        assert_eq!(fs::read_to_string(link.join("marker")).unwrap(), "one");
        let again = prepare(&trees, "abc", write_marker("two")).unwrap();
        assert_eq!(again, first);
        assert_eq!(fs::read_to_string(link.join("marker")).unwrap(), "two");
        assert_eq!(
            fs::read_dir(&trees).unwrap().count(),
            1,
            "the old copy is gone"
        );
    }

    #[test]
    fn link_switches_and_refuses_a_directory() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        let b = root.path().join("b");
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        let link = root.path().join("gitops");
        switch_link(&link, &a).unwrap();
        switch_link(&link, &b).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), b);
        let dir = root.path().join("plain");
        fs::create_dir(&dir).unwrap();
        let err = switch_link(&dir, &a).unwrap_err();
        assert_eq!(crate::exit::code_of(&err), Exit::Usage);
    }

    #[test]
    fn prune_keeps_only_named_trees() {
        let root = tempfile::tempdir().unwrap();
        let trees = root.path().join("trees");
        fs::create_dir(&trees).unwrap();
        for name in ["keep1", "keep2", "old", ".new-x"] {
            fs::create_dir(trees.join(name)).unwrap();
        }
        prune(&trees, &["keep1", "keep2"]).unwrap();
        let mut names: Vec<_> = fs::read_dir(&trees)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["keep1", "keep2"]);
    }
}
