//! A store that stays small and fast: every fetch adds a pack and nothing else ever merges
//! them, so past a threshold the packs are consolidated into one, written by gix itself, that
//! holds exactly what the store's refs (and the applied and pending commits) reach.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gix::odb::pack::{self, data::output};
use gix::ObjectId;

use crate::config::Settings;

use super::store::{alloc_limit, open_store, remove_pack_leftovers};

/// More packs than this and the pass consolidates them. Each pack costs a no-op pass CPU (gix
/// lists and stats it when the store opens, the heal's look and the state directory's guard
/// stat it too): measured by benches/growth.sh on a busy 2-core machine, 16 packs cost 1.125x
/// the pass with one, over issue 18's 1.1x; 8 cost 1.06x. One fetch adds one pack, so a store
/// is rewritten once per 8 fetches, not every pass.
pub const MAX_PACKS: usize = 8;

/// What a consolidation did, for the line the pass prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consolidated {
    pub packs: usize,
    pub objects: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// The number of packs (their indices: what gix opens) in the store: the one cost a pass with
/// few packs pays here.
pub fn pack_count(store: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(store.join("objects/pack")) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().as_encoded_bytes().ends_with(b".idx"))
        .count()
}

/// The pass's call: consolidate when needed and say what happened, in one line. A failure is a
/// warning; the packs stay as they are and the pass's outcome is not changed.
pub fn after_pass(store: &Path, settings: &Settings, applied: Option<&str>, pending: Option<&str>) {
    let id = |c: Option<&str>| c.and_then(|c| ObjectId::from_hex(c.as_bytes()).ok());
    match consolidate_if_needed(store, settings, id(applied), id(pending)) {
        Ok(Some(done)) => say!(
            "gitops: consolidated the object store's {} packs into one ({} objects, {} to {})",
            done.packs,
            done.objects,
            crate::config::show_size(done.bytes_before),
            crate::config::show_size(done.bytes_after)
        ),
        Ok(None) => {}
        Err(e) => say!(
            "gitops: warning: the object store's packs could not be consolidated, they are kept as they are: {}",
            crate::pass::one_line(&e)
        ),
    }
}

/// Consolidate the store's packs when there are more than `MAX_PACKS`. `applied` and `pending`
/// are state.json's commits: they stay, with their history, whatever the refs say. Ok(None):
/// nothing to do, or the store was found damaged and fetched afresh (one pack) instead. Run
/// under the pass lock, with no other handle on the store writing.
pub fn consolidate_if_needed(
    store: &Path,
    settings: &Settings,
    applied: Option<ObjectId>,
    pending: Option<ObjectId>,
) -> Result<Option<Consolidated>> {
    if pack_count(store) <= MAX_PACKS {
        return Ok(None);
    }
    let keep: Vec<ObjectId> = applied.into_iter().chain(pending).collect();
    match consolidate(store, settings, &keep) {
        Ok(done) => Ok(Some(done)),
        Err(e) if crate::signals::received().is_some() => Err(e),
        // Consolidating reads every object the store needs, which no other pass does: damage
        // found here gets the heal's closer look, or every pass from now on would warn.
        Err(e) => match super::heal::after_read_failure(store, settings, applied) {
            Ok(Some(_)) => Ok(None),
            _ => Err(e),
        },
    }
}

/// Write one pack holding everything reachable and, once it and its index are in place (and on
/// disk), remove the packs and loose objects it replaces. A kill at any point leaves the old
/// packs, or the new one, or both (which only duplicates objects) usable; the temporary file,
/// a `.keep` and packs without an index it may leave are swept by the next pass.
pub fn consolidate(store: &Path, settings: &Settings, keep: &[ObjectId]) -> Result<Consolidated> {
    let dir = store.join("objects/pack");
    remove_pack_leftovers(store);
    // What is there now is what gets replaced: anything that appears later is not ours to remove.
    let old = listing(store)?;
    seam("start");
    let repo = open_store(store, settings)?;
    let inputs = reachable(&repo, keep)?;

    let interrupt = crate::signals::interrupt_flag();
    let mut db = repo
        .objects
        .clone()
        .into_inner()
        .into_arc()
        .context("could not open the object store's packs to consolidate them")?;
    // The same packs for counting and for copying entries out of them.
    db.prevent_pack_unload();
    db.ignore_replacements = true;
    let (counts, _) = output::count::objects_unthreaded(
        &db,
        &mut inputs.into_iter().map(Ok),
        &gix::progress::Discard,
        interrupt,
        output::count::objects::ObjectExpansion::TreeContents,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
    .context("could not count the objects to keep")?;
    // Blobs are counted by id only: one missing would be skipped silently by the pack writer,
    // leaving a pack whose header promises more than it holds.
    {
        use gix::odb::pack::Find;
        if let Some(missing) = counts.iter().find(|c| !db.contains(&c.id)) {
            bail!(
                "object {} is reachable but missing from the store, so it was not consolidated; the heal of a later pass fetches it again",
                missing.id
            );
        }
    }
    let objects = counts.len();
    let num_entries = u32::try_from(objects).context("too many objects for one pack")?;
    seam("counted");

    let tmp = dir.join(format!(".tmp-gitops-consolidate-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let hash = repo.object_hash();
    let written = write_pack(&tmp, counts, db, num_entries, hash, interrupt);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    seam("written");
    let bundle = index_into_place(&tmp, &dir, settings, hash, interrupt);
    let _ = std::fs::remove_file(&tmp);
    let (pack_path, index_path, keep_path) = bundle?;
    // gix renames without syncing: the new pack must be on disk before the old ones go, or a
    // power cut could leave neither.
    for file in [&pack_path, &index_path] {
        std::fs::File::open(file)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("could not sync {}", file.display()))?;
    }
    sync_dir(&dir);
    seam("in-place");
    drop(repo);

    let new_stem = stem_of(&pack_path);
    // A multi-pack index would name the packs about to go; gix reads the .idx files without it.
    let _ = std::fs::remove_file(dir.join("multi-pack-index"));
    let mut first = true;
    for stem in old
        .packs
        .iter()
        .filter(|s| Some(s.as_str()) != new_stem.as_deref())
    {
        // The index first: a pack without one is invisible and swept; an index without its
        // pack would be damage.
        let _ = std::fs::remove_file(dir.join(format!("{stem}.idx")));
        if first {
            seam("removing");
            first = false;
        }
        for ext in ["pack", "keep", "rev", "bitmap", "mtimes"] {
            let _ = std::fs::remove_file(dir.join(format!("{stem}.{ext}")));
        }
    }
    for object in &old.loose {
        let _ = std::fs::remove_file(object);
        if let Some(parent) = object.parent() {
            // Only when empty: fails otherwise, which is what is wanted.
            let _ = std::fs::remove_dir(parent);
        }
    }
    seam("removed");
    if let Some(keep) = keep_path {
        let _ = std::fs::remove_file(keep);
    }
    sync_dir(&dir);
    Ok(Consolidated {
        packs: old.packs.len(),
        objects,
        bytes_before: old.bytes,
        bytes_after: store_bytes(store),
    })
}

/// The store's packs (by stem) and loose objects before consolidation, and their size.
struct Listing {
    packs: Vec<String>,
    loose: Vec<PathBuf>,
    bytes: u64,
}

fn listing(store: &Path) -> Result<Listing> {
    let dir = store.join("objects/pack");
    let mut packs = Vec::new();
    let entries =
        std::fs::read_dir(&dir).with_context(|| format!("could not list {}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if let Some(stem) = name.to_string_lossy().strip_suffix(".idx") {
            packs.push(stem.to_string());
        }
    }
    packs.sort();
    let loose = super::store::loose_object_entries(store)
        .into_iter()
        .filter(|o| o.file_type().is_ok_and(|t| t.is_file()))
        .map(|o| o.path())
        .collect();
    Ok(Listing {
        packs,
        loose,
        bytes: store_bytes(store),
    })
}

/// Bytes of objects on disk: packs, their indices and loose objects.
pub fn store_bytes(store: &Path) -> u64 {
    fn sum(dir: &Path, depth: u32) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_file() => m.len(),
                Ok(m) if m.is_dir() && depth > 0 => sum(&e.path(), depth - 1),
                _ => 0,
            })
            .sum()
    }
    sum(&store.join("objects"), 1)
}

/// Every object id the new pack starts from: each ref's target (a tag object stays with its
/// ref) and every commit reachable from the refs and from `keep`. The walk is gix's, which
/// stops at the commits a shallow store lists, so a shallow boundary is not a missing parent.
fn reachable(repo: &gix::Repository, keep: &[ObjectId]) -> Result<Vec<ObjectId>> {
    let mut inputs = Vec::new();
    let mut tips = Vec::new();
    let references = repo
        .references()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("could not read the store's refs")?;
    for reference in references
        .all()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("could not read the store's refs")?
    {
        let reference = reference
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("could not read one of the store's refs")?;
        // A symbolic ref names another ref, which is listed itself.
        let Some(id) = reference.target().try_id().map(ToOwned::to_owned) else {
            continue;
        };
        let object = repo.find_object(id).with_context(|| {
            format!(
                "the ref {} points at {id}, which is not in the store",
                reference.name().as_bstr()
            )
        })?;
        inputs.push(id);
        if let Ok(commit) = object.peel_to_commit() {
            tips.push(commit.id);
        }
    }
    // state.json's commits: the store may lack them (a store fetched afresh), which is fine.
    tips.extend(keep.iter().copied().filter(|id| repo.has_object(id)));
    tips.sort();
    tips.dedup();
    if tips.is_empty() {
        return Ok(inputs);
    }
    let walk = repo
        .rev_walk(tips)
        .all()
        .context("could not walk the store's history")?;
    for info in walk {
        let info = info.context("could not walk the store's history")?;
        inputs.push(info.id);
    }
    Ok(inputs)
}

/// The pack, from gix's pack generator, into `tmp`.
fn write_pack(
    tmp: &Path,
    counts: Vec<output::Count>,
    db: gix::odb::Cache<gix::odb::store::Handle<std::sync::Arc<gix::odb::Store>>>,
    num_entries: u32,
    hash: gix::hash::Kind,
    interrupt: &std::sync::atomic::AtomicBool,
) -> Result<()> {
    use gix::parallel::Finalize;
    let file = crate::files::create_new(tmp)
        .with_context(|| format!("could not create {}", tmp.display()))?;
    let mut out = BufWriter::new(file);
    let entries = output::entry::iter_from_counts(
        counts,
        db,
        Box::new(gix::progress::Discard),
        output::entry::iter_from_counts::Options {
            // Two cores shared with everything else the machine does: one is enough.
            thread_limit: Some(1),
            allow_thin_pack: false,
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
    .context("could not prepare the consolidated pack")?;
    let mut entries = gix::parallel::InOrderIter::from(entries);
    let mut bytes = output::bytes::FromEntriesIter::new(
        &mut entries,
        &mut out,
        num_entries,
        pack::data::Version::V2,
        hash,
    );
    let mut chunks = 0u64;
    for chunk in bytes.by_ref() {
        chunk
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("could not write the consolidated pack")?;
        if interrupt.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("consolidating the store's packs was interrupted by a signal");
        }
        chunks += 1;
        if chunks == 1 {
            seam("writing");
        }
    }
    drop(bytes);
    out.flush()
        .and_then(|()| out.get_ref().sync_all())
        .with_context(|| format!("could not write {}", tmp.display()))?;
    let outcome = entries
        .inner
        .finalize()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("could not write the consolidated pack")?;
    if outcome.missing_objects != 0 {
        bail!(
            "{} objects went missing while they were consolidated; the old packs are kept",
            outcome.missing_objects
        );
    }
    Ok(())
}

/// Index the pack and move it into place as gix does for a fetch: `.keep`, then `.pack`, then
/// `.idx`, each by a rename. Returns the pack's path, its index's and the `.keep`'s (None when
/// an identical pack was already there).
fn index_into_place(
    tmp: &Path,
    dir: &Path,
    settings: &Settings,
    hash: gix::hash::Kind,
    interrupt: &std::sync::atomic::AtomicBool,
) -> Result<(PathBuf, PathBuf, Option<PathBuf>)> {
    let file =
        std::fs::File::open(tmp).with_context(|| format!("could not read {}", tmp.display()))?;
    let outcome = pack::Bundle::write_to_directory(
        &mut std::io::BufReader::new(file),
        Some(dir),
        &mut gix::progress::Discard,
        interrupt,
        None::<gix::objs::find::Never>,
        hash,
        pack::bundle::write::Options {
            thread_limit: Some(1),
            alloc_limit_bytes: usize::try_from(alloc_limit(settings.max_file_size)).ok(),
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
    .context("could not index the consolidated pack")?;
    match (outcome.data_path, outcome.index_path) {
        (Some(pack), Some(index)) => Ok((pack, index, outcome.keep_path)),
        _ => bail!("the consolidated pack holds no objects; the old packs are kept"),
    }
}

/// `pack-<hash>` of `.../pack-<hash>.pack`.
fn stem_of(path: &Path) -> Option<String> {
    path.file_stem().map(|s| s.to_string_lossy().into_owned())
}

/// The renames into and removals from the directory, on disk.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Test builds only: `GITOPS_TEST_PACK_PAUSE=<point>:<marker file>` writes the marker and waits
/// at that point, so a test can kill the pass there and check what the next pass finds.
#[cfg(debug_assertions)]
fn seam(point: &str) {
    let Some(spec) = std::env::var_os("GITOPS_TEST_PACK_PAUSE") else {
        return;
    };
    let spec = spec.to_string_lossy();
    if let Some((at, marker)) = spec.split_once(':') {
        if at == point {
            let _ = std::fs::write(marker, point);
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
    }
}

#[cfg(not(debug_assertions))]
fn seam(_point: &str) {}
