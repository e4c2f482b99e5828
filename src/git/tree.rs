//! The checked-out trees under `trees/` and the checkout symlink that points at one of them.
//!
//! Every change here is a rename, so whatever moment a pass is killed at, the checkout path
//! resolves to a complete tree.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use gix::ObjectId;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

use crate::exit::{fail, Exit};

/// Write the tree of `commit` fresh into `trees/<commit>`, replacing one left by an earlier
/// attempt (whose entry point may have changed it). `write` fills an empty directory.
pub fn prepare(
    trees: &Path,
    commit: &str,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dest = trees.join(commit);
    let tmp = trees.join(format!(".new-{commit}"));
    remove_any(&tmp)?;
    fs::create_dir(&tmp).with_context(|| format!("could not create {}", tmp.display()))?;
    if let Err(e) = write(&tmp) {
        // Half a tree is of no use to anyone and may be large: the next attempt starts afresh.
        let _ = remove_any(&tmp);
        return Err(e);
    }
    if dest.exists() {
        // The checkout link may point at the old copy right now: exchange the two in one step
        // instead of a remove-then-rename that would leave it dangling.
        renameat2(
            AT_FDCWD,
            &tmp,
            AT_FDCWD,
            &dest,
            RenameFlags::RENAME_EXCHANGE,
        )
        .with_context(|| format!("could not swap {} into place", dest.display()))?;
        remove_any(&tmp)?;
    } else {
        fs::rename(&tmp, &dest)
            .with_context(|| format!("could not move {} into place", dest.display()))?;
    }
    Ok(dest)
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
    let suffix = crate::pass::state::random_suffix().context("could not read /dev/urandom")?;
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

/// Remove every tree except those named in `keep` (and leftovers of interrupted passes).
pub fn prune(trees: &Path, keep: &[&str]) -> Result<()> {
    let entries = match fs::read_dir(trees) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("could not list {}", trees.display())),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if keep.iter().any(|k| name == **k) {
            continue;
        }
        remove_any(&entry.path())?;
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

/// Write the tree of `commit` into the empty directory `dest`, refusing any blob larger than
/// `max_file_size` before a byte of it is read, and stopping at a signal.
pub fn write_tree(
    repo: &gix::Repository,
    commit: ObjectId,
    dest: &Path,
    max_file_size: u64,
) -> Result<()> {
    let tree = repo
        .find_commit(commit)
        .with_context(|| format!("commit {commit} is not in the object store"))?
        .tree_id()?;
    let mut index = repo.index_from_tree(&tree)?;
    check_sizes(repo, &index, max_file_size)?;
    let mut options =
        repo.checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)?;
    options.destination_is_initially_empty = true;
    let interrupt = crate::signals::interrupt_flag();
    let outcome = gix::worktree::state::checkout(
        &mut index,
        dest,
        repo.objects.clone().into_arc()?,
        &gix::progress::Discard,
        &gix::progress::Discard,
        interrupt,
        options,
    )
    .with_context(|| {
        format!(
            "could not write the tree of {commit} into {}",
            dest.display()
        )
    })?;
    // An interrupted checkout still returns Ok with whatever it wrote so far.
    if let Some(signal) = crate::signals::received() {
        return Err(anyhow!(
            "gitops received {signal} while writing the tree of {commit}; stopped"
        ));
    }
    if let Some(first) = outcome.errors.first() {
        return Err(anyhow!(
            "could not write {} of {commit}: {}",
            first.path,
            first.error
        ));
    }
    Ok(())
}

/// Blob sizes from the object headers alone: checkout reads each blob whole into memory, so a
/// huge one would cost its size in RSS (and invite the OOM killer) before we could object.
fn check_sizes(repo: &gix::Repository, index: &gix::index::State, limit: u64) -> Result<()> {
    for entry in index.entries() {
        // A submodule's commit is not in our store and is not written.
        if entry.mode == gix::index::entry::Mode::COMMIT {
            continue;
        }
        let size = repo
            .find_header(entry.id)
            .with_context(|| format!("object {} is not in the object store", entry.id))?
            .size();
        if size > limit {
            return Err(fail(
                Exit::ApplyFailed,
                format!(
                    "{} is {} ({size} bytes), larger than --max-file-size {}: keep it out of the repository or raise --max-file-size",
                    entry.path(index),
                    crate::config::show_size(size),
                    crate::config::show_size(limit),
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_marker(text: &'static str) -> impl FnOnce(&Path) -> Result<()> {
        move |dir| Ok(fs::write(dir.join("marker"), text)?)
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
        for name in ["keep1", "keep2", "old", ".new-x"] {
            fs::create_dir(root.path().join(name)).unwrap();
        }
        prune(root.path(), &["keep1", "keep2"]).unwrap();
        let mut names: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["keep1", "keep2"]);
    }
}
