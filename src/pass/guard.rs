//! Who may change what a pass trusts: the state directory, its object store and trees, and
//! every directory and symlink above it and above the checkout link. Refused as ssh refuses a
//! loose ~/.ssh, with the chmod, chown or rm that fixes it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::state::{not_a_file, Layout};
use crate::exit::{fail, Exit};

/// Check that the state directory and what a pass trusts in it (`repo.git`, `trees`, `spare`,
/// `logs`) belong to the user running gitops and only that user can write them: whoever can write
/// there can plant objects or trees that gitops runs, so, as ssh does with ~/.ssh, refuse.
pub fn check_private(layout: &Layout) -> Result<()> {
    match private_problem(layout) {
        Some(problem) => Err(fail(Exit::Usage, problem)),
        None => Ok(()),
    }
}

/// The first reason the state directory cannot be trusted, as one sentence with its fix, as
/// `gitops sync` says it.
pub fn private_problem(layout: &Layout) -> Option<String> {
    private_problem_for(layout, "sync")
}

/// The first reason the state directory cannot be trusted, its fix phrased for `gitops
/// <command>`.
///
/// The state directory itself must grant group and others nothing, and `repo.git`, `trees`,
/// `spare` and `logs` are checked too. That is not enough once the directory has been open, even
/// briefly: another user may have planted objects deep in the object store under ids the next
/// fetch trusts, so the object store is walked entry by entry (see `store_problem`). Its
/// ancestors must not let another user swap it: checked as ssh's StrictModes does.
pub fn private_problem_for(layout: &Layout, command: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    // Looked up only for a message: a passwd lookup (NSS) is no cost every pass should pay.
    let user = || user_name(me);
    let root = std::path::absolute(&layout.root).unwrap_or_else(|_| layout.root.clone());
    let parent = root.parent().unwrap_or(Path::new("/"));
    if let Some(problem) = ancestor_problem(parent, "the state directory") {
        return Some(problem);
    }
    let shown_root = root.display();
    for (index, dir) in [
        root.clone(),
        root.join("repo.git"),
        root.join("trees"),
        root.join("logs"),
        root.join("spare"),
    ]
    .into_iter()
    .enumerate()
    {
        let is_root = index == 0;
        let shown = dir.display();
        let meta = match fs::symlink_metadata(&dir) {
            Ok(meta) => meta,
            // Missing, or under a file: creating it fails next, with its own message.
            Err(_) => continue,
        };
        if is_root && meta.file_type().is_symlink() {
            return Some(format!(
                "the state directory {shown} is a symlink, so whoever can change it decides what gitops runs; point --state-dir at the real directory ({})",
                fs::canonicalize(&dir)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "it leads nowhere".into())
            ));
        }
        if let Some(kind) = not_a_file(&meta.file_type()).filter(|_| !meta.is_dir()) {
            return Some(format!(
                "{shown} in the state directory is a {kind}, not a directory, so it could lead anywhere; remove it (rm {shown}) and gitops creates a directory"
            ));
        }
        if !meta.is_dir() {
            return Some(format!(
                "{shown} in the state directory is a file, not a directory; remove it (rm {shown}) and gitops creates a directory"
            ));
        }
        // An object store others could write may hold their objects already: a chmod would
        // not take them out, so the advice is the one the walk gives.
        let store = index == 1;
        if store && (meta.uid() != me || meta.mode() & 0o022 != 0) {
            return Some(store_advice(&dir, &dir, &store_fault(&meta, me)));
        }
        // The same for the trees: the applied one is what the checkout shows, and the spare
        // becomes the next one.
        if (index == 2 || index == 4) && (meta.uid() != me || meta.mode() & 0o022 != 0) {
            return Some(format!(
                "{shown} {}: the checked-out trees may have been changed while the state directory was open; remove them (rm -rf {shown}), the next pass writes the applied one again",
                store_fault(&meta, me)
            ));
        }
        if meta.uid() == 0 && me != 0 {
            return Some(format!(
                "the state directory {shown} belongs to root, not to {}: {}",
                user(),
                owner_fix(0, me, "", command)
            ));
        }
        if meta.uid() != me {
            return Some(format!(
                "the state directory {shown} belongs to uid {}, not to {} who runs gitops, and its owner could make gitops run any code; {}",
                meta.uid(),
                user(),
                owner_fix(meta.uid(), me, &format!("chown -R {} {shown_root}", user()), command)
            ));
        }
        let mode = meta.mode() & 0o7777;
        if is_root && mode & 0o077 != 0 {
            return Some(format!(
                "the state directory {shown} is open to others (mode {mode:04o}), who could make gitops run any code; run chmod 700 {shown}"
            ));
        }
        if mode & 0o022 != 0 {
            return Some(format!(
                "the state directory {shown} is writable by group or others (mode {mode:04o}), who could make gitops run any code; run chmod go-w {shown}"
            ));
        }
    }
    store_problem(&root.join("repo.git"), me)
}

/// Why another user could have written an entry of the object store, for `store_advice`.
fn store_fault(meta: &fs::Metadata, me: u32) -> String {
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != me {
        format!("belongs to {} (uid {})", user_name(meta.uid()), meta.uid())
    } else {
        format!(
            "is writable by group or others (mode {:04o})",
            meta.mode() & 0o7777
        )
    }
}

fn store_advice(repo: &Path, entry: &Path, why: &str) -> String {
    format!(
        "{} {why}: the object store may have been changed while the state directory was open; remove it (rm -rf {}), the next pass fetches it again",
        entry.display(),
        repo.display()
    )
}

/// Whether anything in the object store could have been written by another user: every entry
/// must belong to `me`, grant group and others no write, and be a directory or a plain file.
///
/// Only `repo.git` is walked. Its objects are trusted by id, so a planted object survives a
/// chmod and is run when its id is fetched. `trees/` and `spare/` need no walk: a tree is reused
/// only when every entry still has the inode, size, mode and change time its manifest recorded
/// (a change by anyone moves the change time, which only root can set back), and is written
/// afresh otherwise; `logs/` holds only what passes wrote and nothing in it is ever run. The walk is cheap, as gix writes packs, not loose objects.
fn store_problem(repo: &Path, me: u32) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let advice = |entry: &Path, why: String| store_advice(repo, entry, &why);
    // Missing (a fresh state directory) or not a directory (checked above, or under a file
    // where creating it fails next, with its own message): nothing to walk.
    if !fs::symlink_metadata(repo).is_ok_and(|m| m.is_dir()) {
        return None;
    }
    let mut pending = vec![repo.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed since it was listed (a running fetch's temporary directory); anything
            // else we cannot vouch for.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Some(advice(&dir, format!("cannot be read ({e})"))),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // lstat: a symlink is judged as itself, never followed.
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // Gone since the listing: a temporary file of a running fetch.
                Err(_) => continue,
            };
            let kind = meta.file_type();
            if let Some(kind) = not_a_file(&kind).filter(|_| !kind.is_dir()) {
                return Some(advice(&path, format!("is a {kind}")));
            }
            if meta.uid() != me || meta.mode() & 0o022 != 0 {
                return Some(advice(&path, store_fault(&meta, me)));
            }
            if kind.is_dir() {
                pending.push(path);
            }
        }
    }
    None
}

/// The fix for a directory that belongs to `owner` and not to `me`: handing root's directory to
/// an ordinary user would give that user root, so then the fix is to run gitops as root.
fn owner_fix(owner: u32, me: u32, chown: &str, command: &str) -> String {
    if owner == 0 && me != 0 {
        format!("run gitops as root (sudo gitops {command})")
    } else {
        format!("run {chown}")
    }
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// Whether another user could rename or replace `what` (the state directory, the checkout link)
/// through one of the directories above it, as ssh's StrictModes asks. The path is resolved
/// by hand, one component at a time, so that every symlink on the way is inspected as itself
/// before it is followed: a link must belong to root or to the running user (its owner can
/// point it anywhere). Every directory passed through, the real ones and those holding a link,
/// must belong to root or to the running user, and must not be writable by group or others
/// unless its sticky bit is set (as on /tmp, where nobody can rename an entry they do not own).
/// `dir` need not exist yet: the walk stops at the first missing component.
pub fn ancestor_problem(dir: &Path, what: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let start = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let directory_problem = |shown: &Path| -> Option<String> {
        let meta = fs::metadata(shown).ok()?;
        let shown = shown.display();
        let owner = meta.uid();
        if owner != 0 && owner != me {
            return Some(format!(
                "the directory {shown} above {what} belongs to uid {owner}, who could swap {what} for one that runs their code; run chown root {shown}, or choose a path that {}",
                only_root_and(me)
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Some(format!(
                "the directory {shown} above {what} is writable by group or others (mode {mode:04o}), who could swap {what} for one that runs their code; run chmod go-w {shown} (or chmod +t {shown}), or choose a path elsewhere"
            ));
        }
        None
    };
    // Components still to resolve, next one last; links push their target's in front.
    let mut todo: Vec<std::ffi::OsString> = start
        .components()
        .rev()
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    let mut here = PathBuf::from("/");
    let mut links = 0;
    if let Some(problem) = directory_problem(&here) {
        return Some(problem);
    }
    while let Some(name) = todo.pop() {
        match name.to_str() {
            Some("/") => {
                here = PathBuf::from("/");
                continue;
            }
            Some(".") | Some("") => continue,
            Some("..") => {
                here.pop();
                continue;
            }
            _ => {}
        }
        let next = here.join(&name);
        let Ok(meta) = fs::symlink_metadata(&next) else {
            // Not there yet (or not reachable): what gitops creates below is checked as created.
            return None;
        };
        if meta.file_type().is_symlink() {
            let owner = meta.uid();
            if owner != 0 && owner != me {
                let real = fs::canonicalize(&next)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "it leads nowhere".into());
                return Some(format!(
                    "the symlink {} above {what} belongs to {} (uid {owner}), who could point it elsewhere and swap {what} for one that runs their code; use the real path ({real}), or choose a path that {}",
                    next.display(),
                    user_name(owner),
                    only_root_and(me)
                ));
            }
            links += 1;
            let Ok(target) = fs::read_link(&next) else {
                return None;
            };
            // The kernel's limit; beyond it nothing resolves, and creating fails with its own error.
            if links > 40 {
                return None;
            }
            todo.extend(
                target
                    .components()
                    .rev()
                    .map(|c| c.as_os_str().to_os_string()),
            );
            continue;
        }
        if !meta.is_dir() {
            return None;
        }
        here = next;
        if let Some(problem) = directory_problem(&here) {
            return Some(problem);
        }
    }
    None
}

/// Who may control a path gitops trusts: "root and alice", or just "root" when root runs it.
fn only_root_and(me: u32) -> String {
    if me == 0 {
        "only root controls".to_string()
    } else {
        format!("only root and {} control", user_name(me))
    }
}

/// `path` as the kernel would resolve it, for a path that may not exist yet: the nearest
/// existing ancestor canonicalized, the rest appended.
pub fn canonical_prefix(path: &Path) -> PathBuf {
    let mut head = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = fs::canonicalize(&head) {
            let mut out = real;
            out.extend(tail.iter().rev());
            return out;
        }
        match (head.file_name().map(|n| n.to_os_string()), head.parent()) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                head = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn root_s_directory_is_never_handed_to_another_user() {
        let chown = "chown -R alice /s";
        let table = [
            (0, 1000, "run gitops as root (sudo gitops sync)"),
            (1000, 0, "run chown -R alice /s"),
            (1001, 1000, "run chown -R alice /s"),
        ];
        for (owner, me, fix) in table {
            assert_eq!(owner_fix(owner, me, chown, "sync"), fix, "{owner} {me}");
        }
    }

    #[test]
    fn ancestors_others_can_write_are_refused_unless_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let below = open.join("not/yet");
        let problem = ancestor_problem(&below, "the state directory").unwrap();
        assert!(problem.contains("(mode 0777)"), "{problem}");
        assert!(
            problem.contains(&format!("chmod go-w {}", open.display())),
            "{problem}"
        );
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(ancestor_problem(&below, "the state directory"), None);
        // Through a link, the real directory counts.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(&open, &alias).unwrap();
        let problem = ancestor_problem(&alias.join("x"), "the state directory").unwrap();
        assert!(problem.contains(&open.display().to_string()), "{problem}");
    }

    #[test]
    fn a_link_kept_in_a_directory_others_can_write_is_refused() {
        // dir/open (0777) holds a link to dir/safe: open is not above the real path, yet whoever
        // writes it can repoint the link.
        let dir = tempfile::tempdir().unwrap();
        let safe = dir.path().join("safe");
        fs::create_dir(&safe).unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::symlink(&safe, open.join("lnk")).unwrap();
        let problem = ancestor_problem(&open.join("lnk/st"), "the state directory").unwrap();
        assert!(problem.contains(&open.display().to_string()), "{problem}");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            ancestor_problem(&open.join("lnk/st"), "the state directory"),
            None
        );
        // A relative link, and `..` through it, resolve as the kernel would.
        std::os::unix::fs::symlink("../safe", open.join("rel")).unwrap();
        assert_eq!(
            ancestor_problem(&open.join("rel/../x"), "the state directory"),
            None
        );
    }

    #[test]
    fn the_object_store_is_walked_for_entries_others_could_have_written() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo.git");
        let me = nix::unistd::geteuid().as_raw();
        let pack = repo.join("objects/pack");
        fs::create_dir_all(&pack).unwrap();
        fs::write(pack.join("p.pack"), "").unwrap();
        fs::set_permissions(pack.join("p.pack"), fs::Permissions::from_mode(0o444)).unwrap();
        assert_eq!(store_problem(&repo, me), None);
        assert_eq!(store_problem(&dir.path().join("missing"), me), None);
        let loose = repo.join("objects/ab");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o777)).unwrap();
        let problem = store_problem(&repo, me).unwrap();
        assert!(
            problem.starts_with(&format!(
                "{} is writable by group or others (mode 0777)",
                loose.display()
            )),
            "{problem}"
        );
        assert!(
            problem.ends_with(&format!(
                "remove it (rm -rf {}), the next pass fetches it again",
                repo.display()
            )),
            "{problem}"
        );
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", loose.join("cdef")).unwrap();
        let problem = store_problem(&repo, me).unwrap();
        assert!(problem.contains("cdef is a symlink"), "{problem}");
        fs::remove_file(loose.join("cdef")).unwrap();
        assert_eq!(
            store_problem(&repo, me + 1).map(|p| p.contains(&format!("(uid {me})"))),
            Some(true)
        );
    }

    #[test]
    fn canonical_prefix_resolves_what_exists_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(dir.path()).unwrap().join("real");
        fs::create_dir(&real).unwrap();
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(&real, &alias).unwrap();
        assert_eq!(
            canonical_prefix(&alias.join("trees/co")),
            real.join("trees/co")
        );
        assert_eq!(canonical_prefix(&alias), real);
    }

    #[test]
    fn a_trailing_slash_does_not_hide_a_symlinked_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("d.real");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
        let link = dir.path().join("d");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let with_slash = format!("{}/", link.display());
        let problem = private_problem(&Layout::new(Path::new(&with_slash))).unwrap();
        assert!(problem.contains("is a symlink"), "{problem}");
        assert_eq!(private_problem(&Layout::new(&real)), None);
    }
}
