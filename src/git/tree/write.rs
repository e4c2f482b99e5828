//! Writing a commit's tree out of the store: whole into an empty directory, or by the tree
//! diff onto the spare, checked against what git itself would write.

use super::*;

/// Write the tree of `commit` into the empty directory `dest`, refusing any blob larger than
/// `max_file_size` before a byte of it is read, and stopping at a signal. With `only`, just the
/// files under those paths (`--sparse`).
pub fn write_tree(
    repo: &gix::Repository,
    commit: ObjectId,
    dest: &Path,
    max_file_size: u64,
    only: Option<&[String]>,
) -> Result<()> {
    let tree = repo
        .find_commit(commit)
        .with_context(|| format!("commit {commit} is not in the object store"))?
        .tree_id()?;
    let mut index = repo.index_from_tree(&tree)?;
    if let Some(only) = only {
        index.remove_entries(|_, path, _| !crate::fleet::watch::in_sparse_tree(only, path));
    }
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
pub(super) fn check_sizes(
    repo: &gix::Repository,
    index: &gix::index::State,
    limit: u64,
) -> Result<()> {
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

/// Bring `dir`, which holds the tree of `base`'s commit, to the tree of `commit` by the tree
/// diff between the two: changed and added files written, deleted ones removed with the
/// directories they leave empty, type changes (file, directory, symlink) replaced. Returns the
/// paths touched. Any error leaves `dir` half-changed: the caller writes the tree afresh.
///
/// Nothing it cannot do exactly as a fresh checkout would is tried: a tree with a
/// `.gitattributes` (filters may rewrite files), a submodule, a path gix would refuse, a file
/// over `max_file_size`, each is an error, and the fresh checkout then gives the verdict.
pub fn update_tree(
    repo: &gix::Repository,
    base: &Manifest,
    commit: ObjectId,
    dir: &Path,
    max_file_size: u64,
) -> Result<Vec<BString>> {
    let attributes = |p: &BStr| p.rsplit_str(b"/").next() == Some(b".gitattributes".as_slice());
    if base.paths().any(attributes) {
        bail!("the tree has a .gitattributes");
    }
    if base.largest_file() > max_file_size {
        bail!("a file of the tree is larger than --max-file-size");
    }
    let from = ObjectId::from_hex(base.commit().as_bytes())?;
    let old = repo.find_commit(from)?.tree()?;
    let new = repo.find_commit(commit)?.tree()?;
    let records = changes(repo, &old, &new)?;
    let validate = repo
        .checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)?
        .validate;
    use gix::diff::tree::recorder::Change;
    use gix::objs::tree::EntryKind;
    // The diff walks old and new trees side by side, assuming each sorted and naming every
    // entry once, as git writes them. A hostile tree that is not (`x` a link and a directory,
    // out of order) makes it miss a change a fresh checkout would make: every tree it walked
    // is checked, and any other is the fresh checkout's to settle.
    let mut walked = vec![old.id, new.id];
    for change in &records {
        match change {
            Change::Addition {
                entry_mode, oid, ..
            }
            | Change::Deletion {
                entry_mode, oid, ..
            } if entry_mode.is_tree() => walked.push(*oid),
            Change::Modification {
                previous_entry_mode,
                previous_oid,
                entry_mode,
                oid,
                ..
            } => {
                if previous_entry_mode.is_tree() {
                    walked.push(*previous_oid);
                }
                if entry_mode.is_tree() {
                    walked.push(*oid);
                }
            }
            _ => {}
        }
    }
    for id in walked {
        check_canonical(repo, id)?;
    }
    let mut removals = Vec::new();
    let mut writes = Vec::new();
    let mut touched = Vec::new();
    for change in records {
        let (path, write) = match change {
            Change::Addition {
                entry_mode,
                oid,
                path,
                ..
            } => (path, Some((entry_mode, oid, false))),
            Change::Deletion {
                entry_mode, path, ..
            } => {
                if entry_mode.kind() == EntryKind::Commit {
                    bail!("a submodule changed");
                }
                removals.push(path.clone());
                (path, None)
            }
            Change::Modification {
                entry_mode,
                oid,
                path,
                ..
            } => (path, Some((entry_mode, oid, true))),
        };
        if attributes(path.as_bstr()) {
            bail!("a .gitattributes changed");
        }
        if let Some((mode, oid, replaces)) = write {
            let link = mode.kind() == EntryKind::Link;
            let mut components = path.split_str(b"/").peekable();
            while let Some(name) = components.next() {
                let as_link = (link && components.peek().is_none())
                    .then_some(gix::validate::path::component::Mode::Symlink);
                gix::validate::path::component(name.as_bstr(), as_link, validate)?;
            }
            match mode.kind() {
                EntryKind::Tree => {}
                EntryKind::Commit => bail!("a submodule changed"),
                kind => {
                    if repo.find_header(oid)?.size() > max_file_size {
                        bail!("{path} is larger than --max-file-size");
                    }
                    writes.push((path.clone(), kind, oid, replaces));
                }
            }
        }
        touched.push(path);
    }
    for path in &removals {
        if parents_are_dirs(dir, path.as_bstr(), false)? {
            remove_any(&join(dir, path.as_bstr()))?;
        }
    }
    // Sorted, a directory comes before what is in it.
    writes.sort();
    for (path, kind, oid, replaces) in &writes {
        if let Some(signal) = crate::signals::received() {
            bail!("gitops received {signal} while updating the tree");
        }
        parents_are_dirs(dir, path.as_bstr(), true)?;
        let dest = join(dir, path.as_bstr());
        // What is there must be what the old tree had: a file or link replaced, nothing where
        // one is added. Anything else (a tree naming an entry twice, as only a hostile one
        // does) is the fresh checkout's to settle.
        match fs::symlink_metadata(&dest) {
            Ok(meta) if *replaces && !meta.is_dir() => fs::remove_file(&dest)
                .with_context(|| format!("could not remove {}", dest.display()))?,
            Err(e) if !*replaces && e.kind() == ErrorKind::NotFound => {}
            _ => bail!("{} is not as the old tree left it", dest.display()),
        }
        let blob = repo.find_blob(*oid)?;
        if *kind == EntryKind::Link {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&blob.data), &dest)
                .with_context(|| format!("could not create {}", dest.display()))?;
        } else {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mode = if *kind == EntryKind::BlobExecutable {
                0o777
            } else {
                0o666
            };
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&dest)
                .and_then(|mut f| f.write_all(&blob.data))
                .with_context(|| format!("could not write {}", dest.display()))?;
        }
    }
    // A fresh checkout has no empty directories: those a deletion emptied go too.
    for path in &removals {
        let mut end = path.len();
        while let Some(slash) = path[..end].rfind_byte(b'/') {
            if fs::remove_dir(join(dir, path[..slash].as_bstr())).is_err() {
                break;
            }
            end = slash;
        }
    }
    Ok(touched)
}

/// An error unless the tree `id` is as git writes trees: names neither empty nor holding a
/// slash, each once, in git's order (a tree's name compared as if it ended in `/`).
pub(super) fn check_canonical(repo: &gix::Repository, id: ObjectId) -> Result<()> {
    let tree = repo.find_tree(id)?;
    let mut seen = std::collections::HashSet::new();
    let mut last: Option<(BString, bool)> = None;
    for entry in gix::objs::TreeRefIter::from_bytes(&tree.data, repo.object_hash()) {
        let entry = entry?;
        let (name, is_tree) = (entry.filename, entry.mode.is_tree());
        if name.is_empty() || name.contains(&b'/') || !seen.insert(name.to_owned()) {
            bail!("tree {id} names {name:?} twice or in a form git never writes");
        }
        if let Some((before, before_tree)) = &last {
            if git_order(before, *before_tree, name, is_tree) != std::cmp::Ordering::Less {
                bail!("tree {id} is not in git's order at {name:?}");
            }
        }
        last = Some((name.to_owned(), is_tree));
    }
    Ok(())
}

/// Git's order of tree entries (base_name_compare): a tree's name compared as if it ended in `/`.
pub(super) fn git_order(a: &[u8], a_tree: bool, b: &[u8], b_tree: bool) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    a[..n].cmp(&b[..n]).then_with(|| {
        let end =
            |name: &[u8], tree: bool| name.get(n).copied().unwrap_or(if tree { b'/' } else { 0 });
        end(a, a_tree).cmp(&end(b, b_tree))
    })
}

/// Whether every directory above `path` in `dir` is a directory (never a symlink), creating
/// the missing ones when `create`; false when one is missing and not created.
pub(super) fn parents_are_dirs(dir: &Path, path: &BStr, create: bool) -> Result<bool> {
    let mut at = dir.to_path_buf();
    let mut components = path.split_str(b"/").peekable();
    while let Some(name) = components.next() {
        if components.peek().is_none() {
            break;
        }
        at.push(std::ffi::OsStr::from_bytes(name));
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => bail!("{} is not a directory", at.display()),
            Err(e) if e.kind() == ErrorKind::NotFound && create => {
                fs::create_dir(&at).with_context(|| format!("could not create {}", at.display()))?
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("could not inspect {}", at.display())),
        }
    }
    Ok(true)
}

/// Every change between two trees, directories walked into (their entries are changes of
/// their own), as gix's tree diff records them: what an apply by the diff and `gitops plan`
/// both read.
pub fn changes(
    repo: &gix::Repository,
    old: &gix::Tree<'_>,
    new: &gix::Tree<'_>,
) -> Result<Vec<gix::diff::tree::recorder::Change>> {
    let mut recorder = gix::diff::tree::Recorder::default();
    gix::diff::tree(
        gix::objs::TreeRefIter::from_bytes(&old.data, repo.object_hash()),
        gix::objs::TreeRefIter::from_bytes(&new.data, repo.object_hash()),
        &mut gix::diff::tree::State::default(),
        &repo.objects,
        &mut recorder,
    )?;
    Ok(recorder.records)
}
