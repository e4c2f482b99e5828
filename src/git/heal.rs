//! A store that heals itself: what is found wrong with the local object store (a lock a killed
//! pass left, a truncated pack, an emptied loose object, a store gix cannot open) is told apart
//! from a failure of the remote, said in one warning, and mended in the same pass. The choice of
//! remedy is `remedy`, a pure function; looking and mending are at the edges.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use gix::ObjectId;

use crate::config::Settings;

use super::fetch::{fetch_into, Fetched};
use super::store::APPLIED_REF;

/// What a look at the store found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Lock files, relative to the store. We hold the pass lock, so whoever made them is gone.
    pub locks: Vec<String>,
    /// What makes the store unusable (objects damaged, a file gix needs missing or garbage).
    pub damage: Option<String>,
    /// How the fetch into the store failed, when it did.
    pub fetch: Option<Failure>,
}

/// How a fetch failed, as far as healing is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The network, the server, credentials, a full disk: a new store would not help, and a
    /// re-clone must never be what a network outage costs.
    Elsewhere,
    /// The store itself, as a closer look after the failure showed.
    Store(String),
}

/// What to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remedy {
    Nothing,
    RemoveLocks(Vec<String>),
    /// Fetch a fresh store beside it and swap it in; the words say what was wrong.
    Rebuild(String),
}

/// The decision, from what was seen. Damage wins over locks (they go with the old store); a
/// failure elsewhere never rebuilds, whatever else is true, unless the store is damaged itself.
pub fn remedy(seen: &Seen) -> Remedy {
    if let Some(what) = &seen.damage {
        return Remedy::Rebuild(what.clone());
    }
    match &seen.fetch {
        Some(Failure::Store(what)) => return Remedy::Rebuild(what.clone()),
        Some(Failure::Elsewhere) => return Remedy::Nothing,
        None => {}
    }
    if seen.locks.is_empty() {
        Remedy::Nothing
    } else {
        Remedy::RemoveLocks(seen.locks.clone())
    }
}

/// Fetch the followed branch into the store, healing it first or after a failure when it is
/// damaged. `applied` is state.json's applied commit: when the store is rebuilt and its own
/// record of the applied commit is lost with it, this is what is recorded in the new one, so
/// that a rewind is still refused.
/// `suspect`: the last pass failed in a way damage could explain, so the store gets the closer
/// look at once.
pub fn fetch(
    store: &Path,
    settings: &Settings,
    applied: Option<ObjectId>,
    suspect: bool,
) -> Result<Fetched> {
    sweep_leftovers(store);
    let mut seen = look(store, suspect);
    match remedy(&seen) {
        Remedy::Nothing => {}
        Remedy::RemoveLocks(locks) => {
            for lock in &locks {
                let _ = std::fs::remove_file(store.join(lock));
            }
            say!(
                "gitops: warning: the object store held lock files a killed pass left ({}): removed them",
                locks.join(", ")
            );
        }
        Remedy::Rebuild(what) => return rebuild(store, settings, applied, &what),
    }
    match fetch_into(store, settings, applied) {
        Ok(fetched) => Ok(fetched),
        // A pass asked to stop stops: no closer look, no second fetch.
        Err(e) if crate::signals::received().is_some() => Err(e),
        Err(e) => {
            // Only now the closer look (every pack read whole, the store opened): the failure
            // path can afford it, and it is what tells a damaged store from a server that is down.
            let closer = look(store, true);
            seen.fetch = Some(match closer.damage {
                Some(what) if !disk_full(&e) => Failure::Store(what),
                _ => Failure::Elsewhere,
            });
            seen.damage = None;
            match remedy(&seen) {
                Remedy::Rebuild(what) => rebuild(store, settings, applied, &what),
                _ => Err(e),
            }
        }
    }
}

/// After a read out of the store failed past the fetch (a tree that could not be written out
/// of it): the closer look and, when it finds damage, the store fetched again and swapped in,
/// so that the caller can read again in the same pass. Ok(None): the store is sound, the
/// failure was something else's.
pub fn after_read_failure(
    store: &Path,
    settings: &Settings,
    applied: Option<ObjectId>,
) -> Result<Option<Fetched>> {
    if crate::signals::received().is_some() {
        return Ok(None);
    }
    let seen = look(store, true);
    match remedy(&Seen {
        locks: Vec::new(),
        ..seen
    }) {
        Remedy::Rebuild(what) => rebuild(store, settings, applied, &what).map(Some),
        _ => Ok(None),
    }
}

/// A full disk is not mended by fetching everything again.
fn disk_full(e: &anyhow::Error) -> bool {
    let words = format!("{e:#}");
    words.contains("No space left on device") || words.contains("os error 28")
}

/// Fetch into a new store beside the old one, carry the applied record over, then swap the
/// two in one rename. A kill at any point leaves either store in place, whole, and a leftover
/// directory the next pass removes.
fn rebuild(
    store: &Path,
    settings: &Settings,
    applied: Option<ObjectId>,
    what: &str,
) -> Result<Fetched> {
    let fresh = beside(store, "new")?;
    let done = fetch_into(&fresh, settings, applied)
        .and_then(|fetched| {
            carry_record(store, &fresh, applied)?;
            swap(store, &fresh)?;
            Ok(fetched)
        })
        .inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&fresh);
            // The error that follows names its own cause (the network, say); that the store
            // needs mending is said too, or it would only show once the server is back.
            say!("gitops: warning: the object store is damaged ({what}): a fresh one could not be fetched, the next pass tries again");
        })?;
    // The old store, now under the fresh one's name.
    let _ = std::fs::remove_dir_all(&fresh);
    say!("gitops: warning: the object store was damaged ({what}): fetched it again into a fresh store");
    Ok(done)
}

/// A new directory `repo.git.<kind>-<random>` beside the store, created empty by us.
fn beside(store: &Path, kind: &str) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let name = store
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo.git".into());
    let parent = store.parent().unwrap_or(Path::new("."));
    let mut last = None;
    for attempt in 0u32..16 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let path = parent.join(format!(
            "{name}.{kind}-{:x}{:08x}",
            std::process::id(),
            nanos ^ attempt
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {
                gix::init_bare(&path).with_context(|| {
                    format!("could not create a fresh object store {}", path.display())
                })?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "could not create a fresh object store {}: check that the state directory is writable",
                        path.display()
                    )
                })
            }
        }
    }
    Err(anyhow::anyhow!(
        "could not create a fresh object store beside {}: {}",
        store.display(),
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// The record of the applied commit, into the fresh store: the old store's own when it can be
/// read (it may be newer than state.json), else state.json's. A record that exists but cannot
/// be read, with nothing in state.json to replace it, is copied as it is: unreadable is never
/// turned into "no record".
fn carry_record(old: &Path, fresh: &Path, applied: Option<ObjectId>) -> Result<()> {
    let bytes = match (super::store::recorded_applied(old), applied) {
        (Ok(Some(id)), _) => format!("{id}\n").into_bytes(),
        (_, Some(id)) => format!("{id}\n").into_bytes(),
        (Ok(None), None) => return Ok(()),
        (Err(_), None) => match std::fs::read(old.join(APPLIED_REF)) {
            Ok(bytes) => bytes,
            Err(_) => b"unreadable in the damaged store\n".to_vec(),
        },
    };
    let path = fresh.join(APPLIED_REF);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
    }
    std::fs::write(&path, bytes)
        .with_context(|| format!("could not record the applied commit in {}", path.display()))
}

/// Put `fresh` where `store` is, in one step: an exchange where the kernel offers it (the old
/// store ends up under the fresh one's name), else two renames, the old store moved aside
/// first. Either way a reader sees a whole store or, between the two renames, none, which the
/// next pass fetches again from the record it keeps in state.json.
fn swap(store: &Path, fresh: &Path) -> Result<()> {
    sync_tree(fresh);
    let exists = std::fs::symlink_metadata(store).is_ok();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if exists {
        use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
        match renameat2(
            AT_FDCWD,
            fresh,
            AT_FDCWD,
            store,
            RenameFlags::RENAME_EXCHANGE,
        ) {
            Ok(()) => return Ok(()),
            // EINVAL: a filesystem without the exchange; the two renames below.
            Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "could not put the fresh object store in place of {}",
                        store.display()
                    )
                })
            }
        }
    }
    if exists {
        let aside = fresh.with_file_name(format!(
            "{}.old-{}",
            store
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        std::fs::rename(store, &aside).with_context(|| {
            format!("could not move the damaged store {} aside", store.display())
        })?;
        std::fs::rename(fresh, store)
            .with_context(|| format!("could not move the fresh store to {}", store.display()))?;
        let _ = std::fs::remove_dir_all(&aside);
        return Ok(());
    }
    std::fs::rename(fresh, store)
        .with_context(|| format!("could not move the fresh store to {}", store.display()))
}

/// gix writes packs without fsync: what is swapped in must be on disk first, or a power cut
/// could leave an empty pack under the only store there is.
fn sync_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            sync_tree(&path);
        } else if let Ok(file) = std::fs::File::open(&path) {
            let _ = file.sync_all();
        }
    }
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Fresh or old stores a killed heal left beside the store. We hold the pass lock: nobody is
/// writing them.
fn sweep_leftovers(store: &Path) {
    let (Some(parent), Some(name)) = (store.parent(), store.file_name()) else {
        return;
    };
    let name = name.to_string_lossy();
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let found = entry.file_name();
        let found = found.to_string_lossy();
        if is_leftover(&name, &found) && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn is_leftover(store: &str, name: &str) -> bool {
    name.strip_prefix(store)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|rest| rest.starts_with("new-") || rest.starts_with("old-"))
}

/// Look at the store: its lock files, and anything that makes it unusable. The quick look is
/// what every pass pays (a stat per pack and per loose object, three small reads for a pack
/// that changed); the `closer` one, after a failed fetch or when the last pass failed, hashes
/// every pack whole and opens the store as gix does, reading every ref's object and every
/// loose object.
pub fn look(store: &Path, closer: bool) -> Seen {
    let mut seen = Seen::default();
    match std::fs::symlink_metadata(store) {
        // A first pass: the fetch creates it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return seen,
        // Not a directory: the state directory's guard has refused it before this.
        Ok(meta) if !meta.is_dir() => return seen,
        _ => {}
    }
    seen.locks = locks(store);
    seen.damage = structure(store)
        .or_else(|| packs(store, closer))
        .or_else(|| loose_objects(store))
        .or_else(|| closer.then(|| opened(store)).flatten());
    seen
}

/// Lock files at the top of the store and under refs/.
fn locks(store: &Path) -> Vec<String> {
    fn walk(store: &Path, dir: &Path, found: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && dir != store {
                walk(store, &path, found);
            } else if !is_dir && path.extension().is_some_and(|e| e == "lock") {
                if let Ok(relative) = path.strip_prefix(store) {
                    found.push(relative.display().to_string());
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(store, store, &mut found);
    walk(store, &store.join("refs"), &mut found);
    found.sort();
    found
}

/// The files and directories without which gix does not open a store.
fn structure(store: &Path) -> Option<String> {
    let head = store.join("HEAD");
    match std::fs::symlink_metadata(&head) {
        Ok(meta) if meta.is_file() => {
            let text = std::fs::read(&head).unwrap_or_default();
            let text = text.strip_suffix(b"\n").unwrap_or(&text);
            if !(text.starts_with(b"ref: refs/") || ObjectId::from_hex(text).is_ok()) {
                return Some("HEAD is not a reference".into());
            }
        }
        _ => return Some("HEAD is missing".into()),
    }
    for dir in ["objects", "refs"] {
        if !std::fs::symlink_metadata(store.join(dir)).is_ok_and(|m| m.is_dir()) {
            return Some(format!("{dir}/ is missing"));
        }
    }
    None
}

/// Each pack against its index: the index ends with the checksum of its pack, the pack with
/// its own. A truncated or overwritten pack no longer ends with what its index says; the closer
/// look also hashes the whole pack. A pack whose size and time are those it had when it last
/// passed (kept in `CHECKED`) is not read again: the usual pass pays one stat per pack, as the
/// state directory's guard does, not three reads.
fn packs(store: &Path, closer: bool) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dir = store.join("objects/pack");
    let entries = std::fs::read_dir(&dir).ok()?;
    let known = match closer {
        true => String::new(),
        false => std::fs::read_to_string(store.join(CHECKED)).unwrap_or_default(),
    };
    let known: std::collections::HashSet<&str> = known.lines().collect();
    let mut passed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(stem) = name.strip_suffix(".idx") else {
            continue;
        };
        let pack = dir.join(format!("{stem}.pack"));
        let line = match std::fs::symlink_metadata(&pack) {
            Ok(meta) => format!(
                "{stem} {} {}.{}",
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Some(format!(
                    "objects/pack/{stem}.pack is missing though its index is there"
                ))
            }
            Err(e) => return Some(format!("objects/pack/{stem}.pack cannot be read ({e})")),
        };
        if !known.contains(line.as_str()) {
            if let Err(why) = pack_matches_index(&pack, &entry.path(), closer) {
                return Some(format!("objects/pack/{stem}.pack {why}"));
            }
        }
        passed.push(line);
    }
    passed.sort();
    let mut now: Vec<&str> = known.into_iter().collect();
    now.sort();
    if passed != now {
        remember(&store.join(CHECKED), &passed);
    }
    None
}

/// The packs that passed the quick look, with their size and time.
const CHECKED: &str = "gitops-packs-checked";

/// Written whole under a new name and renamed over the old: a pass killed meanwhile leaves the
/// old list or none, and either only costs a read of each pack.
fn remember(path: &Path, lines: &[String]) {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let written = crate::files::create_new(&tmp).and_then(|mut file| {
        let mut text = lines.join("\n");
        text.push('\n');
        file.write_all(text.as_bytes())
    });
    if written.is_err() || std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

const HASH_LEN: u64 = 20;

fn pack_matches_index(pack: &Path, index: &Path, closer: bool) -> std::result::Result<(), String> {
    // The 20 bytes `from_end` before the end; None for a file too short to hold a header and
    // them, which no index or pack is.
    let tail = |path: &Path, from_end: u64| -> std::io::Result<(u64, Option<[u8; 20]>)> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        if len < from_end + 12 {
            return Ok((len, None));
        }
        let mut bytes = [0u8; 20];
        file.seek(SeekFrom::Start(len - from_end))?;
        file.read_exact(&mut bytes)?;
        Ok((len, Some(bytes)))
    };
    let expected = match tail(index, 2 * HASH_LEN) {
        Ok((_, Some(expected))) => expected,
        Ok((len, None)) => return Err(format!("has an index of {len} bytes, too short to be one")),
        Err(e) => return Err(format!("has an unreadable index ({e})")),
    };
    let (len, trailer) = match tail(pack, HASH_LEN) {
        Ok((len, Some(trailer))) => (len, trailer),
        Ok((len, None)) => return Err(format!("is truncated ({len} bytes)")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("is missing though its index is there".into())
        }
        Err(e) => return Err(format!("cannot be read ({e})")),
    };
    if trailer != expected {
        return Err(format!("is truncated or overwritten ({len} bytes)"));
    }
    if closer {
        let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
        let mut file = std::fs::File::open(pack).map_err(|e| format!("cannot be read ({e})"))?;
        let mut left = len - HASH_LEN;
        let mut buf = vec![0u8; 64 << 10];
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            file.read_exact(&mut buf[..want])
                .map_err(|e| format!("cannot be read ({e})"))?;
            hasher.update(&buf[..want]);
            left -= want as u64;
        }
        let sum = hasher
            .try_finalize()
            .map_err(|e| format!("cannot be hashed ({e})"))?;
        if sum.as_slice() != expected {
            return Err("does not match its checksum".into());
        }
    }
    Ok(())
}

/// A loose object is zlib data: never empty. An emptied one (a disk that filled up while it was
/// written, a crash before its data reached the disk) makes every read of it fail.
fn loose_objects(store: &Path) -> Option<String> {
    super::store::loose_object_entries(store)
        .into_iter()
        .find(|object| object.metadata().is_ok_and(|m| m.is_file() && m.len() == 0))
        .map(|object| {
            let path = object.path();
            let dir = path
                .parent()
                .and_then(|d| d.file_name())
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!(
                "the loose object {dir}{} is empty",
                object.file_name().to_string_lossy()
            )
        })
}

/// Open it as the pass does, and resolve every ref to an object that is there.
fn opened(store: &Path) -> Option<String> {
    let options = gix::open::Options::isolated().strict_config(false);
    let repo = match gix::open_opts(store, options) {
        Ok(repo) => repo,
        Err(e) => return Some(format!("gix cannot open it: {e}")),
    };
    let platform = match repo.references() {
        Ok(platform) => platform,
        Err(e) => return Some(format!("its refs cannot be read: {e}")),
    };
    let all = match platform.all() {
        Ok(all) => all,
        Err(e) => return Some(format!("its refs cannot be read: {e}")),
    };
    for reference in all {
        let reference = match reference {
            Ok(reference) => reference,
            Err(e) => return Some(format!("a ref cannot be read: {e}")),
        };
        let name = reference.name().as_bstr().to_string();
        if let Some(id) = reference.target().try_id() {
            // The applied commit may be gone from a branch that was force-pushed: that is the
            // rewind check's to judge, not damage.
            if name != APPLIED_REF && repo.find_object(id).is_err() {
                return Some(format!("{name} points at an object that cannot be read"));
            }
        }
    }
    // Loose objects are few (fetches write packs): each is read, which checks its zlib stream.
    let objects = store.join("objects");
    for dir in std::fs::read_dir(&objects).ok()?.flatten() {
        let prefix = dir.file_name().to_string_lossy().into_owned();
        if prefix.len() != 2 {
            continue;
        }
        let Ok(inner) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for object in inner.flatten() {
            let hex = format!("{prefix}{}", object.file_name().to_string_lossy());
            let Ok(id) = ObjectId::from_hex(hex.as_bytes()) else {
                continue;
            };
            if repo.find_object(id).is_err() {
                return Some(format!("the loose object {hex} cannot be read"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(locks: &[&str], damage: Option<&str>, fetch: Option<Failure>) -> Seen {
        Seen {
            locks: locks.iter().map(|l| l.to_string()).collect(),
            damage: damage.map(str::to_string),
            fetch,
        }
    }

    #[test]
    fn what_is_wrong_decides_what_is_done() {
        let rebuild = |w: &str| Remedy::Rebuild(w.to_string());
        let table = [
            (seen(&[], None, None), Remedy::Nothing),
            (
                seen(&["packed-refs.lock"], None, None),
                Remedy::RemoveLocks(vec!["packed-refs.lock".into()]),
            ),
            (seen(&[], Some("truncated"), None), rebuild("truncated")),
            // The locks go with the old store.
            (
                seen(&["HEAD.lock"], Some("truncated"), None),
                rebuild("truncated"),
            ),
            // A server that is down never costs a re-clone.
            (seen(&[], None, Some(Failure::Elsewhere)), Remedy::Nothing),
            (
                seen(&["HEAD.lock"], None, Some(Failure::Elsewhere)),
                Remedy::Nothing,
            ),
            (
                seen(&[], None, Some(Failure::Store("gix cannot open it".into()))),
                rebuild("gix cannot open it"),
            ),
        ];
        for (seen, remedy) in table {
            assert_eq!(super::remedy(&seen), remedy, "{seen:?}");
        }
    }

    #[test]
    fn only_our_own_leftovers_are_swept() {
        let table = [
            ("repo.git.new-1a2b", true),
            ("repo.git.old-77", true),
            ("repo.git", false),
            ("repo.git.tmp", false),
            ("repo.gitnew-1", false),
            ("trees", false),
            ("other.git.new-1", false),
        ];
        for (name, leftover) in table {
            assert_eq!(is_leftover("repo.git", name), leftover, "{name}");
        }
    }

    #[test]
    fn a_healthy_store_shows_nothing_and_each_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("repo.git");
        gix::init_bare(&store).unwrap();
        assert_eq!(look(&store, true), Seen::default());
        assert_eq!(look(&dir.path().join("absent"), true), Seen::default());

        std::fs::write(store.join("packed-refs.lock"), "").unwrap();
        std::fs::create_dir_all(store.join("refs/gitops")).unwrap();
        std::fs::write(store.join("refs/gitops/applied.lock"), "").unwrap();
        assert_eq!(
            look(&store, false).locks,
            vec!["packed-refs.lock", "refs/gitops/applied.lock"]
        );

        std::fs::create_dir_all(store.join("objects/ab")).unwrap();
        std::fs::write(store.join("objects/ab/cdef"), "").unwrap();
        assert!(look(&store, false)
            .damage
            .is_some_and(|d| d.contains("abcdef is empty")));
        std::fs::remove_dir_all(store.join("objects/ab")).unwrap();

        std::fs::write(store.join("objects/pack/pack-1.idx"), [0u8; 1100]).unwrap();
        assert!(look(&store, false)
            .damage
            .is_some_and(|d| d.contains("pack-1.pack is missing")));
        std::fs::write(store.join("objects/pack/pack-1.pack"), [0u8; 10]).unwrap();
        assert!(look(&store, true)
            .damage
            .is_some_and(|d| d.contains("is truncated (10 bytes)")));
        std::fs::write(store.join("objects/pack/pack-1.idx"), [0u8; 10]).unwrap();
        assert!(look(&store, true)
            .damage
            .is_some_and(|d| d.contains("too short")));
        std::fs::write(store.join("objects/pack/pack-1.idx"), [0u8; 1100]).unwrap();
        std::fs::write(store.join("objects/pack/pack-1.pack"), [1u8; 1100]).unwrap();
        assert!(look(&store, false)
            .damage
            .is_some_and(|d| d.contains("truncated")));
        std::fs::remove_dir_all(store.join("objects/pack")).unwrap();

        std::fs::write(store.join("HEAD"), "garbage").unwrap();
        assert_eq!(
            look(&store, false).damage.as_deref(),
            Some("HEAD is not a reference")
        );
        std::fs::remove_file(store.join("HEAD")).unwrap();
        assert_eq!(
            look(&store, false).damage.as_deref(),
            Some("HEAD is missing")
        );
    }

    #[test]
    fn the_applied_record_survives_a_rebuild_and_unreadable_stays_unreadable() {
        const OLD: &str = "0123456789abcdef0123456789abcdef01234567";
        const STATE: &str = "89abcdef0123456789abcdef0123456789abcdef";
        let state = ObjectId::from_hex(STATE.as_bytes()).ok();
        /// The old store's record file, state.json's commit, what the fresh store records.
        type Row<'a> = (Option<&'a [u8]>, Option<ObjectId>, Option<&'a str>);
        let table: [Row; 6] = [
            // The old store's own record wins: it may be newer than state.json.
            (
                Some(b"0123456789abcdef0123456789abcdef01234567\n"),
                state,
                Some(OLD),
            ),
            (
                Some(b"0123456789abcdef0123456789abcdef01234567\n"),
                None,
                Some(OLD),
            ),
            // Lost or unreadable with the store: state.json's commit is recorded again.
            (None, state, Some(STATE)),
            (Some(b"garbage\n"), state, Some(STATE)),
            (None, None, None),
            // Unreadable and nothing else knows: copied, still unreadable, never "no record".
            (Some(b"garbage\n"), None, Some("garbage")),
        ];
        for (old_record, applied, written) in table {
            let dir = tempfile::tempdir().unwrap();
            let (old, fresh) = (dir.path().join("old"), dir.path().join("fresh"));
            std::fs::create_dir_all(old.join("refs/gitops")).unwrap();
            std::fs::create_dir_all(&fresh).unwrap();
            if let Some(bytes) = old_record {
                std::fs::write(old.join(APPLIED_REF), bytes).unwrap();
            }
            carry_record(&old, &fresh, applied).unwrap();
            let got = std::fs::read_to_string(fresh.join(APPLIED_REF)).ok();
            assert_eq!(
                got.as_deref().map(str::trim),
                written,
                "{:?} {applied:?}",
                old_record.map(String::from_utf8_lossy)
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever bytes a pack, its index, HEAD or a loose object hold, looking never panics.
        #[test]
        fn looking_at_any_bytes_never_panics(
            pack in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            index in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            head in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..60),
            loose in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..60),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = dir.path().join("repo.git");
            gix::init_bare(&store).unwrap();
            std::fs::write(store.join("objects/pack/pack-1.pack"), &pack).unwrap();
            std::fs::write(store.join("objects/pack/pack-1.idx"), &index).unwrap();
            std::fs::create_dir_all(store.join("objects/ab")).unwrap();
            std::fs::write(store.join("objects/ab/cdef0123456789abcdef0123456789abcdef01"), &loose).unwrap();
            let _ = look(&store, false);
            let _ = look(&store, true);
            // Without the pack, the closer look reaches the loose object and reads it.
            std::fs::remove_file(store.join("objects/pack/pack-1.idx")).unwrap();
            let _ = look(&store, true);
            std::fs::write(store.join("HEAD"), &head).unwrap();
            let _ = look(&store, true);
        }
    }
}
