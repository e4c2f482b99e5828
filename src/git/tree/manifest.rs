//! The stat manifest of a written tree (inode, mode, size, times of every entry): what lets
//! the spare be reused only while it is exactly as it was written.

use super::*;

/// The file in `spare/` whose change time tells where the file system's clock is.
pub(super) const CLOCK: &str = ".clock";

/// How long a manifest waits for the file system's clock to move on; beyond that the tree gets
/// no manifest (and is written afresh rather than reused).
pub(super) const CLOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether the file system's clock has moved past `newest` (a change time), waiting for it a
/// little. An entry changed in the clock's current tick is what git calls racily clean: an entry
/// point writing as many bytes in that same tick would leave its stat as recorded, and the
/// change would go unseen. Kernels that timestamp coarsely (a tick of 1-10 ms) need the wait;
/// with fine-grained timestamps the first probe is already past.
pub(super) fn clock_passed(spares: &Path, newest: (i64, i64)) -> bool {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let probe = spares.join(CLOCK);
    let deadline = std::time::Instant::now() + CLOCK_PATIENCE;
    loop {
        let written = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&probe)
            .and_then(|mut file| file.write_all(b"."));
        if written.is_err() {
            return false;
        }
        match fs::symlink_metadata(&probe) {
            Ok(meta) if (meta.ctime(), meta.ctime_nsec()) > newest => return true,
            Ok(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            _ => return false,
        }
    }
}

/// A tree's manifest is named after its top directory's inode, which renames keep: moving a
/// tree between `trees/` and `spare/` needs no second rename that a crash could separate.
pub(super) fn manifest_path(spares: &Path, ino: u64) -> PathBuf {
    spares.join(format!("{ino}.manifest"))
}

/// The flavor the tree whose top directory has inode `ino` (under `trees/`) was written with,
/// from one read of its manifest's head (a manifest lists every file: a no-op pass must not
/// read it whole). None when it has no manifest, which says nothing either way.
pub fn flavor_of(trees: &Path, ino: u64) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 4096];
    let n = fs::File::open(manifest_path(&super::spare_dir(trees), ino))
        .ok()?
        .read(&mut head)
        .ok()?;
    let rest = head[..n].strip_prefix(MANIFEST_MAGIC)?;
    let (_commit, rest) = rest.split_once_str(b"\n")?;
    let (flavor, _) = rest.split_once_str(b"\n")?;
    Some(flavor.to_str().ok()?.to_string())
}

/// The spare's manifest when the spare is exactly as that manifest says.
pub(super) fn usable_spare(spares: &Path, flavor: &str) -> Option<Manifest> {
    let meta = fs::symlink_metadata(spares.join(SPARE)).ok()?;
    if !meta.is_dir() {
        return None;
    }
    let bytes = fs::read(manifest_path(spares, meta.ino())).ok()?;
    let manifest = Manifest::parse(&bytes)?;
    (manifest.flavor == flavor
        && manifest.root_ino() == meta.ino()
        && manifest.matches(&spares.join(SPARE)))
    .then_some(manifest)
}

/// What lstat says of one entry: enough, as git's index has it, to notice a change made after.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Stat {
    ino: u64,
    mode: u32,
    size: u64,
    mtime: (i64, i64),
    pub(super) ctime: (i64, i64),
}

impl Stat {
    pub(super) fn of(meta: &fs::Metadata) -> Self {
        Stat {
            ino: meta.ino(),
            mode: meta.mode(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Every entry of a tree on disk (the top directory under the empty path) with its stat, for
/// the commit the tree holds.
#[derive(Debug)]
pub struct Manifest {
    pub(super) commit: String,
    pub(super) flavor: String,
    pub(super) entries: BTreeMap<BString, Stat>,
}

pub(super) const MANIFEST_MAGIC: &[u8] = b"gitops-manifest 1\n";

impl Manifest {
    /// The commit whose tree this is.
    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// The largest regular file's or symlink's size (a link's is its target, the blob a fresh
    /// checkout measures), for a --max-file-size lowered since.
    pub fn largest_file(&self) -> u64 {
        self.entries
            .values()
            .filter(|s| matches!(s.mode & 0o170000, 0o100000 | 0o120000))
            .map(|s| s.size)
            .max()
            .unwrap_or(0)
    }

    /// Paths of the tree, the top directory as the empty path.
    pub fn paths(&self) -> impl Iterator<Item = &BStr> {
        self.entries.keys().map(|k| k.as_bstr())
    }

    /// The latest change time of any entry.
    pub(super) fn newest_change(&self) -> (i64, i64) {
        self.entries
            .values()
            .map(|s| s.ctime)
            .max()
            .unwrap_or_default()
    }

    pub(super) fn root_ino(&self) -> u64 {
        self.entries.get(b"".as_bstr()).map_or(0, |s| s.ino)
    }

    /// Read every entry below `dir` as it is now.
    pub(super) fn walk(dir: &Path, commit: &str, flavor: &str) -> Result<Manifest> {
        let mut entries = BTreeMap::new();
        let meta = fs::symlink_metadata(dir)
            .with_context(|| format!("could not inspect {}", dir.display()))?;
        entries.insert(BString::default(), Stat::of(&meta));
        let mut pending = vec![(dir.to_path_buf(), BString::default())];
        while let Some((abs, rel)) = pending.pop() {
            let listing =
                fs::read_dir(&abs).with_context(|| format!("could not list {}", abs.display()))?;
            for entry in listing {
                let entry = entry?;
                // DirEntry::metadata does not follow a symlink.
                let meta = entry.metadata()?;
                let mut path = rel.clone();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(entry.file_name().as_bytes());
                if meta.is_dir() {
                    pending.push((entry.path(), path.clone()));
                }
                entries.insert(path, Stat::of(&meta));
            }
        }
        Ok(Manifest {
            commit: commit.to_string(),
            flavor: flavor.to_string(),
            entries,
        })
    }

    /// Whether every entry is on disk exactly as recorded. A file added anywhere changes its
    /// directory's mtime and ctime; a change to a file, its own. The top directory's ctime is
    /// left out: our own renames of the tree change it. So its listing is compared instead: an
    /// entry added at the top with the mtime put back (`touch -r`, `tar` or `rsync -a` into
    /// the tree do it) changes nothing else.
    pub(super) fn matches(&self, dir: &Path) -> bool {
        let Ok(listing) = fs::read_dir(dir) else {
            return false;
        };
        // Each name listed is in the manifest, and below each entry of it is checked there.
        for entry in listing {
            let Ok(entry) = entry else {
                return false;
            };
            if !self
                .entries
                .contains_key(entry.file_name().as_bytes().as_bstr())
            {
                return false;
            }
        }
        self.entries.iter().all(|(path, want)| {
            let Ok(meta) = fs::symlink_metadata(join(dir, path.as_bstr())) else {
                return false;
            };
            let got = Stat::of(&meta);
            if path.is_empty() {
                Stat {
                    ctime: want.ctime,
                    ..got
                } == *want
            } else {
                got == *want
            }
        })
    }

    /// This manifest after `touched` paths changed in `dir`, which now holds `commit`'s tree:
    /// those paths and their directories read again, whatever is gone dropped with all below it.
    pub(super) fn updated(
        mut self,
        dir: &Path,
        commit: &str,
        touched: &[BString],
    ) -> Result<Manifest> {
        let mut again = BTreeSet::new();
        again.insert(BString::default());
        for path in touched {
            again.insert(path.clone());
            let mut end = path.len();
            while let Some(slash) = path[..end].rfind_byte(b'/') {
                again.insert(BString::from(&path[..slash]));
                end = slash;
            }
        }
        for path in again {
            match fs::symlink_metadata(join(dir, path.as_bstr())) {
                Ok(meta) => {
                    self.entries.insert(path, Stat::of(&meta));
                }
                // Gone, or a directory above it is a file now.
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    let mut below = path.clone();
                    below.push(b'/');
                    let mut end = path.clone();
                    end.push(b'/' + 1);
                    let gone: Vec<BString> = self
                        .entries
                        .range(below..end)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in gone {
                        self.entries.remove(&key);
                    }
                    self.entries.remove(&path);
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("could not inspect {path} in the tree"))
                }
            }
        }
        self.commit = commit.to_string();
        Ok(self)
    }

    pub(super) fn save(&self, spares: &Path) -> Result<()> {
        if !clock_passed(spares, self.newest_change()) {
            // Without a manifest the tree is written afresh next time instead of reused.
            return Ok(());
        }
        let mut out = Vec::with_capacity(64 * self.entries.len() + 128);
        out.extend_from_slice(MANIFEST_MAGIC);
        out.extend_from_slice(format!("{}\n{}\n", self.commit, self.flavor).as_bytes());
        for (path, s) in &self.entries {
            out.extend_from_slice(
                format!(
                    "{} {} {} {} {} {} {} ",
                    s.ino, s.mode, s.size, s.mtime.0, s.mtime.1, s.ctime.0, s.ctime.1
                )
                .as_bytes(),
            );
            // Git allows any byte but NUL in a name, newlines included.
            out.extend_from_slice(path);
            out.push(0);
        }
        let path = manifest_path(spares, self.root_ino());
        crate::files::write_atomic(&path, &out, false)
            .with_context(|| format!("could not write {}", path.display()))
    }

    /// None for anything but a manifest this version wrote whole.
    pub(super) fn parse(bytes: &[u8]) -> Option<Manifest> {
        let rest = bytes.strip_prefix(MANIFEST_MAGIC)?;
        let (commit, rest) = rest.split_once_str(b"\n")?;
        let (flavor, mut rest) = rest.split_once_str(b"\n")?;
        let mut entries = BTreeMap::new();
        while !rest.is_empty() {
            let (record, tail) = rest.split_once_str(b"\0")?;
            rest = tail;
            let mut fields = record.splitn(8, |b| *b == b' ');
            let mut num = || -> Option<i64> { fields.next()?.to_str().ok()?.parse().ok() };
            let (ino, mode, size) = (num()?, num()?, num()?);
            let mtime = (num()?, num()?);
            let ctime = (num()?, num()?);
            let path = fields.next()?;
            let stat = Stat {
                ino: u64::try_from(ino).ok()?,
                mode: u32::try_from(mode).ok()?,
                size: u64::try_from(size).ok()?,
                mtime,
                ctime,
            };
            entries.insert(BString::from(path), stat);
        }
        if !entries.contains_key(b"".as_bstr()) {
            return None;
        }
        Some(Manifest {
            commit: commit.to_str().ok()?.to_string(),
            flavor: flavor.to_str().ok()?.to_string(),
            entries,
        })
    }
}

pub(super) fn join(dir: &Path, path: &BStr) -> PathBuf {
    if path.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(std::ffi::OsStr::from_bytes(path))
    }
}
