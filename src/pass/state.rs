//! The state directory: its layout and `state.json`, written atomically.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::exit::{Exit, ResultExt};
use crate::files::{random_suffix, write_atomic};

/// What `state.json` holds; `gitops status --json` prints it as is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub repo_url: Option<String>,
    pub branch: Option<String>,
    pub applied: Option<Applied>,
    pub last_pass: Option<LastPass>,
    /// When the last pass that ended up-to-date or applied finished: the metrics' last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    pub pending: Option<Pending>,
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Written, durably, before the entry point starts and cleared when the pass records its
    /// outcome: still there with no pass holding the lock means the pass was killed or crashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<InProgress>,
    /// Passes by outcome name since this state began: the metrics' counters, kept here so they
    /// only grow across the oneshot runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub passes_total: BTreeMap<String, u64>,
    /// How long the last entry point that ran took, whether it succeeded or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_apply_ms: Option<u64>,
    /// What the notifications did; none while none are configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyRecord>,
    /// The reboot plan last evaluated, and the reboot asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<RebootRecord>,
    /// The branch's tip was committed longer ago than --max-commit-age (set by every pass that
    /// fetched, cleared once the tip is fresh again or the option is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<Stale>,
    /// The branch's tip, when it concerned nothing this machine watches (`--watch`): nothing
    /// ran, and the tip is what the next one must descend from. Holds only while `applied` is
    /// the commit it was seen from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<Seen>,
    /// The branch's tip, waiting for this machine's rollout wave (set by the pass that saw it
    /// wait, cleared by the next pass that decides otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
}

/// A tip this machine applies once its rollout wave comes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    pub commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// This machine's wave, from 0 (the first, which does not wait).
    pub wave: usize,
    pub waves: usize,
    /// When the wave begins (RFC 3339).
    pub at: String,
    /// When this machine first saw the tip wait (RFC 3339): a rollout never starts later than
    /// that, whatever date the commit claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl State {
    /// The skipped tip, while the applied commit is still the one it was compared with: an
    /// apply since leaves it behind.
    pub fn current_seen(&self) -> Option<&Seen> {
        self.seen
            .as_ref()
            .filter(|s| self.applied.as_ref().is_some_and(|a| a.commit == s.applied))
    }
}

/// A tip that changed nothing this machine watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub commit: String,
    /// The applied commit it was compared with.
    pub applied: String,
    pub seen_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Why nothing ran: "no change under hosts/web-1/ common/".
    pub why: String,
    /// Its committer time, so that the stale check need not open the store for it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<String>,
    /// What it was judged against (`watch::scope_key`): under other options it is judged again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// A tip older than --max-commit-age: a Git host that withholds new commits looks like this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stale {
    pub commit: String,
    /// The tip's committer time (RFC 3339).
    pub committed_at: String,
    /// --max-commit-age when it was seen, in seconds.
    pub max_age_seconds: u64,
}

/// The reboot plan as the last pass (or `reboot-plan`) saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RebootRecord {
    /// none, satisfied, scheduled, reboot-now, blocked, invalid.
    pub decision: String,
    pub reason: String,
    pub requested_after: Option<String>,
    pub reboot_at: Option<String>,
    pub evaluated_at: String,
    /// Written, durably, before the reboot command runs: in another boot it proves the reboot
    /// happened; in the same boot it keeps gitops from asking again.
    pub asked: Option<crate::reboot::plan::Asked>,
    /// The reboot event last told (once per boot, or per commit for a bad request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub told: Option<String>,
    /// The fleet lock was granted for the reboot asked, in this group: released (steady-state)
    /// on the passes after it until the server takes the release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_lock_held: Option<String>,
}

/// The notifications' bookkeeping (the events themselves wait in `outbox/`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifyRecord {
    /// The last delivery that failed, masked, with when; cleared by the next one that succeeds.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub last_delivered_at: Option<String>,
    pub delivered_total: u64,
    /// Events dropped undelivered: past the outbox's bound, or refused by a destination (4xx).
    pub dropped_total: u64,
    /// The failure last told and when: while it lasts, a reminder at most once an hour.
    pub told: Option<Told>,
    /// Destinations (by key) that asked us to wait (429, `Retry-After`), and until when.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub wait_until: BTreeMap<String, String>,
}

/// A failure that was notified: `key` names it (outcome and commit, or the error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Told {
    pub key: String,
    pub at: String,
}

/// A pass that started applying `commit` and has not recorded its outcome yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InProgress {
    pub commit: String,
    pub started_at: String,
    pub pid: u32,
    /// The apply's log, which holds what the entry point said before the pass was killed.
    #[serde(default)]
    pub log: Option<String>,
    /// Set, durably, once `commit` failed and the pass starts going back to this applied
    /// commit (`--on-failure revert`): a pass killed from then on left a revert unfinished, and
    /// `commit`, whose failure was seen, is not tried again by the next pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverting_to: Option<String>,
}

/// The last commit whose entry point exited 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub commit: String,
    pub applied_at: String,
    pub log: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    /// The commit's committer time, as the repository says (the metrics' commit age).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<String>,
    /// Who signed it, when signatures are verified (--allowed-signers, --gpg-keyring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<crate::git::trust::Signer>,
    /// The entry point that ran, and why it was this machine's (hosts/, groups/, the repository's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<crate::fleet::entry::Choice>,
}

/// How the most recent pass ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastPass {
    pub started_at: String,
    pub finished_at: String,
    pub outcome: Outcome,
    pub remote_commit: Option<String>,
    pub error: Option<String>,
    /// Wall-clock time from start to outcome, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// A commit that was tried and failed; it is retried on every pass until it applies or the
/// branch moves on, unless it was reverted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub commit: String,
    pub attempts: u32,
    pub last_error: String,
    #[serde(default)]
    pub log: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `reverted` or `revert-failed` when `--on-failure revert` took the machine back from this
    /// commit: it is then held back until the branch moves (or `--retry-reverted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// When it was reverted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_at: Option<String>,
}

/// The outcome names of DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    UpToDate,
    Applied,
    ApplyFailed,
    FetchFailed,
    Refused,
    Untrusted,
    /// The pass stopped before fetching: a bad option, key, known_hosts or checkout path.
    ConfigError,
    /// The commit's entry point or health check failed, and the last applied commit was
    /// applied again (`--on-failure revert`); the commit is held back until the branch moves.
    Reverted,
    /// The commit failed, and so did applying the last applied commit again.
    RevertFailed,
    /// `gitops suspend` holds applies back: the pass fetched and ran nothing.
    Suspended,
    /// An outcome a newer gitops wrote: keeps such a state.json readable after a downgrade.
    #[serde(other)]
    Unknown,
}

impl Outcome {
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Outcome::UpToDate | Outcome::Applied | Outcome::Suspended
        )
    }

    /// Every outcome a pass can record, for counters that start at 0.
    pub const ALL: [Outcome; 10] = [
        Outcome::UpToDate,
        Outcome::Applied,
        Outcome::ApplyFailed,
        Outcome::FetchFailed,
        Outcome::Refused,
        Outcome::Untrusted,
        Outcome::ConfigError,
        Outcome::Reverted,
        Outcome::RevertFailed,
        Outcome::Suspended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::UpToDate => "up-to-date",
            Outcome::Applied => "applied",
            Outcome::ApplyFailed => "apply-failed",
            Outcome::FetchFailed => "fetch-failed",
            Outcome::Refused => "refused",
            Outcome::Untrusted => "untrusted",
            Outcome::ConfigError => "config-error",
            Outcome::Reverted => "reverted",
            Outcome::RevertFailed => "revert-failed",
            Outcome::Suspended => "suspended",
            Outcome::Unknown => "unknown",
        }
    }
}

/// The paths inside the state directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        // Rebuilt from its components, so `d/` is `d`: lstat of `link/` would follow the link.
        Layout {
            root: root.components().collect(),
        }
    }
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    pub fn repo(&self) -> PathBuf {
        self.root.join("repo.git")
    }
    pub fn trees(&self) -> PathBuf {
        self.root.join("trees")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// `gitops suspend`'s record; absent when applies are not suspended.
    pub fn suspension_file(&self) -> PathBuf {
        self.root.join("suspended.json")
    }

    /// Create the state directory (0700) and its sub-directories.
    pub fn create(&self) -> Result<()> {
        let unwritable = |what: &Path| {
            let what = what.display().to_string();
            move || {
                format!(
                    "cannot create the state directory {what}: point --state-dir at a writable directory (default /var/lib/gitops, run as root)"
                )
            }
        };
        // Only a directory we create gets its mode from us: chmod-ing an existing one would
        // lock everybody out of, say, /opt after a typo in --state-dir.
        if !self.root.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.root)
                .or_exit(Exit::Usage, unwritable(&self.root))?;
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
                .or_exit(Exit::Usage, unwritable(&self.root))?;
        }
        for dir in [self.trees(), self.logs()] {
            fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(&dir)
                .or_exit(Exit::Usage, unwritable(&dir))?;
        }
        Ok(())
    }
}

/// Read `state.json`. A missing file is a fresh machine; an unreadable one, or something that is
/// not a file (a FIFO would block the pass forever), is moved aside with a warning and the pass
/// starts from scratch rather than stopping the machine from converging.
pub fn load(layout: &Layout) -> Result<State> {
    let path = layout.state_file();
    let why = match open_state(&path)? {
        Opened::Missing => return Ok(State::default()),
        Opened::File(mut file) => {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .with_context(|| format!("could not read {}", path.display()))?;
            match serde_json::from_slice(&bytes) {
                Ok(state) => return Ok(state),
                Err(e) => format!("was unreadable ({e})"),
            }
        }
        Opened::NotAFile(kind) => format!("is a {kind}, not a file"),
    };
    let suffix = random_suffix().context("could not read /dev/urandom")?;
    let aside = path.with_extension(format!("json.corrupt-{suffix}"));
    fs::rename(&path, &aside)
        .with_context(|| format!("could not move the unreadable {} aside", path.display()))?;
    say!(
        "gitops: warning: {} {why}; moved it to {} and starting from a fresh state",
        path.display(),
        aside.display()
    );
    Ok(State::default())
}

/// How many `state.json.corrupt-*` files a pass leaves: enough to look into, not a growing pile.
pub const KEEP_CORRUPT: usize = 3;

/// Remove all but the newest `keep` files that `load` moved aside.
pub fn prune_corrupt(layout: &Layout, keep: usize) -> Result<()> {
    let entries: Vec<fs::DirEntry> = fs::read_dir(&layout.root)
        .with_context(|| format!("could not list {}", layout.root.display()))?
        .filter_map(|e| e.ok())
        .collect();
    // The temporary file of a state write killed before its rename: we hold the lock, so no
    // write is under way.
    for entry in &entries {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".state.json.tmp-")
        {
            let _ = fs::remove_file(entry.path());
        }
    }
    let mut aside: Vec<(std::time::SystemTime, PathBuf)> = entries
        .into_iter()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        })
        .map(|e| {
            let modified = fs::symlink_metadata(e.path())
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (modified, e.path())
        })
        .collect();
    aside.sort();
    let excess = aside.len().saturating_sub(keep);
    for (_, path) in aside.into_iter().take(excess) {
        // A FIFO or symlink moved aside is removed as a name, never opened or followed.
        let removed = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        removed.with_context(|| format!("could not remove {}", path.display()))?;
    }
    Ok(())
}

/// Read `state.json` without ever modifying anything (for `gitops status`).
pub fn read(layout: &Layout) -> Result<Option<State>> {
    let path = layout.state_file();
    let Some(bytes) = read_private(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).with_context(|| {
        format!(
            "{} is unreadable; the next gitops sync moves it aside",
            path.display()
        )
    })
}

/// A file of the state directory, read without following a link or blocking on a FIFO. None
/// when it is missing; an error when something other than a file is there.
pub fn read_private(path: &Path) -> Result<Option<Vec<u8>>> {
    match open_state(path)? {
        Opened::Missing => Ok(None),
        Opened::File(mut file) => {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .with_context(|| format!("could not read {}", path.display()))?;
            Ok(Some(bytes))
        }
        Opened::NotAFile(kind) => Err(anyhow::anyhow!(
            "{} is a {kind}, not a file; the next gitops sync moves it aside",
            path.display()
        )),
    }
}

/// Flags for every file gitops opens in the state directory: a symlink planted there is never
/// followed, and a FIFO or device never blocks the open.
pub(super) const SAFE_OPEN: i32 = nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK;

enum Opened {
    Missing,
    File(File),
    NotAFile(&'static str),
}

/// Open `state.json` for reading: lstat first so a device is never opened at all, then open
/// without following or blocking, then fstat, in case it was swapped in between.
fn open_state(path: &Path) -> Result<Opened> {
    match fs::symlink_metadata(path) {
        Ok(meta) => {
            if let Some(kind) = not_a_file(&meta.file_type()) {
                return Ok(Opened::NotAFile(kind));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Opened::Missing),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(SAFE_OPEN)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Opened::Missing),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Ok(Opened::NotAFile("symlink"))
        }
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("could not read {}", path.display()))?;
    Ok(match not_a_file(&meta.file_type()) {
        Some(kind) => Opened::NotAFile(kind),
        None => Opened::File(file),
    })
}

/// What a non-regular file is, in an operator's words; None for a regular file.
pub(super) fn not_a_file(kind: &fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    Some(if kind.is_file() {
        return None;
    } else if kind.is_symlink() {
        "symlink"
    } else if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else {
        "special file"
    })
}

/// Write `state.json` so that a crash leaves either the old or the new file, never a mix.
///
/// `durable` also syncs the directory, so the rename itself survives a power cut. A pass that
/// changed what is applied or pending asks for it; a pass that only moved timestamps does not:
/// losing its rename leaves the previous, equally valid file, and saves an fsync every 5 minutes.
pub fn save(layout: &Layout, state: &State, durable: bool) -> Result<()> {
    let path = layout.state_file();
    let mut json = serde_json::to_vec_pretty(state).context("could not serialize the state")?;
    json.push(b'\n');
    write_atomic(&path, &json, durable)
        .with_context(|| format!("could not write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_with_the_documented_names() {
        let state = State {
            repo_url: Some("git://h/r".into()),
            branch: Some("main".into()),
            applied: None,
            last_pass: Some(LastPass {
                started_at: "2026-01-01T00:00:00Z".into(),
                finished_at: "2026-01-01T00:00:01Z".into(),
                outcome: Outcome::ApplyFailed,
                remote_commit: None,
                error: Some("x".into()),
                duration_ms: None,
            }),
            pending: None,
            consecutive_failures: 2,
            in_progress: None,
            ..State::default()
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["last_pass"]["outcome"], "apply-failed");
        assert!(json["applied"].is_null());
        assert!(json["pending"].is_null());
        assert_eq!(json["consecutive_failures"], 2);
        let back: State = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn corrupt_state_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        fs::write(layout.state_file(), b"{\"applied\": tru").unwrap();
        assert_eq!(load(&layout).unwrap(), State::default());
        assert!(!layout.state_file().exists());
        let aside: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(aside.len(), 1);
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        save(&layout, &State::default(), true).unwrap();
        let state = State {
            consecutive_failures: 7,
            ..State::default()
        };
        save(&layout, &state, false).unwrap();
        assert_eq!(load(&layout).unwrap(), state);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn a_fifo_where_state_json_belongs_is_moved_aside_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        nix::unistd::mkfifo(
            &layout.state_file(),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let err = read(&layout).unwrap_err();
        assert!(format!("{err:#}").contains("is a FIFO"), "{err:#}");
        assert_eq!(load(&layout).unwrap(), State::default());
        assert!(!layout.state_file().exists());
    }
}
