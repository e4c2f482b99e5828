//! The state directory: `state.json` (written atomically) and the lock that keeps passes apart.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::exit::{fail, Exit, ResultExt};

/// What `state.json` holds; `gitops status --json` prints it as is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub repo_url: Option<String>,
    pub branch: Option<String>,
    pub applied: Option<Applied>,
    pub last_pass: Option<LastPass>,
    pub pending: Option<Pending>,
    #[serde(default)]
    pub consecutive_failures: u32,
}

/// The last commit whose entry point exited 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub commit: String,
    pub applied_at: String,
    pub log: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
}

/// How the most recent pass ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastPass {
    pub started_at: String,
    pub finished_at: String,
    pub outcome: Outcome,
    pub remote_commit: Option<String>,
    pub error: Option<String>,
}

/// A commit that was tried and failed; it is retried on every pass until it applies or the
/// branch moves on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub commit: String,
    pub attempts: u32,
    pub last_error: String,
    #[serde(default)]
    pub log: Option<String>,
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
    /// An outcome a newer gitops wrote: keeps such a state.json readable after a downgrade.
    #[serde(other)]
    Unknown,
}

impl Outcome {
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::UpToDate | Outcome::Applied)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::UpToDate => "up-to-date",
            Outcome::Applied => "applied",
            Outcome::ApplyFailed => "apply-failed",
            Outcome::FetchFailed => "fetch-failed",
            Outcome::Refused => "refused",
            Outcome::Untrusted => "untrusted",
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
        Layout {
            root: root.to_path_buf(),
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
    fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
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
        } else if let Ok(meta) = fs::metadata(&self.root) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                say!(
                    "gitops: warning: the state directory {} is open to others (mode {mode:04o}): chmod 700 it",
                    self.root.display()
                );
            }
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

    /// Take the pass lock, waiting up to `timeout` for a running pass to finish.
    pub fn lock(&self, timeout: Duration) -> Result<Flock<File>> {
        let path = self.lock_file();
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .or_exit(Exit::Usage, || {
                format!(
                    "cannot open the lock file {}: make the state directory writable",
                    path.display()
                )
            })?;
        let deadline = Instant::now() + timeout;
        let mut waiting = false;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(lock),
                Err((returned, nix::errno::Errno::EWOULDBLOCK)) => {
                    file = returned;
                    if !waiting {
                        waiting = true;
                        match orphan_holders(&file) {
                            Some(holders) => say!(
                                "gitops: the lock {} is held by {holders}, left running by a gitops pass that was killed; waiting up to {}s for them",
                                path.display(),
                                timeout.as_secs()
                            ),
                            None => say!(
                                "gitops: another pass holds {}; waiting up to {}s for it",
                                path.display(),
                                timeout.as_secs()
                            ),
                        }
                    }
                    // Stopped while queued (systemctl stop, Ctrl-C): nothing was done and
                    // nothing is recorded, so there is nothing to wait for.
                    if let Some(signal) = crate::signals::received() {
                        return Err(fail(
                            Exit::Locked,
                            format!(
                                "gitops received {signal} while waiting for the lock {}; this pass did nothing",
                                path.display()
                            ),
                        ));
                    }
                    if Instant::now() >= deadline {
                        if let Some(holders) = orphan_holders(&file) {
                            return Err(fail(
                                Exit::Locked,
                                format!(
                                    "the lock {} is held by {holders}, left running by a gitops pass that was killed (waited {}s): let them finish or stop them, or raise --lock-timeout",
                                    path.display(),
                                    timeout.as_secs()
                                ),
                            ));
                        }
                        return Err(fail(
                            Exit::Locked,
                            format!(
                                "another gitops pass holds the lock {} (waited {}s): let it finish, or raise --lock-timeout",
                                path.display(),
                                timeout.as_secs()
                            ),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(50).min(deadline - Instant::now()));
                }
                Err((_, errno)) => {
                    return Err(anyhow::Error::from(errno))
                        .with_context(|| format!("could not lock {}", path.display()))
                }
            }
        }
    }
}

/// The processes holding the lock when it is not a gitops pass: the entry point of a pass that
/// was killed keeps the lock's descriptor, and with it the lock, until the last of its
/// processes exits. Named so an operator knows what the next pass waits for; `None` when a
/// live gitops holds it, or nobody can tell (no /proc).
fn orphan_holders(lock: &File) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = lock.metadata().ok()?;
    let device = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(meta.dev()),
        nix::sys::stat::minor(meta.dev()),
        meta.ino()
    );
    // "1: FLOCK  ADVISORY  WRITE 28999 fe:00:10018916 0 EOF"; waiters have "->" after the number.
    let locks = fs::read_to_string("/proc/locks").ok()?;
    let taker = locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&device.as_str()))
            .then(|| fields.get(4)?.parse::<i32>().ok())
            .flatten()
    })?;
    let comm = |pid: i32| {
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|c| c.trim().to_string())
    };
    // The pid that took it: a running gitops is an ordinary pass, not an orphan. A killed one
    // nobody has reaped yet is a zombie that still shows its name.
    let zombie = fs::read_to_string(format!("/proc/{taker}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.split_whitespace().next() == Some("Z"))
    });
    if !zombie && comm(taker).as_deref() == Some("gitops") {
        return None;
    }
    let me = std::process::id().to_string();
    let mut holders = Vec::new();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            fs::metadata(fd.path()).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
        });
        if holds {
            let pid: i32 = pid.parse().ok()?;
            holders.push(format!("pid {pid} ({})", comm(pid).unwrap_or_default()));
        }
    }
    if holders.is_empty() {
        return None;
    }
    let more = holders.len().saturating_sub(5);
    holders.truncate(5);
    let mut text = format!("process {}", holders.join(", "));
    if holders.len() > 1 {
        text = format!("processes {}", holders.join(", "));
    }
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    Some(text)
}

/// Read `state.json`. A missing file is a fresh machine; an unreadable one is moved aside with a
/// warning and the pass starts from scratch rather than stopping the machine from converging.
pub fn load(layout: &Layout) -> Result<State> {
    let path = layout.state_file();
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    };
    match serde_json::from_slice(&bytes) {
        Ok(state) => Ok(state),
        Err(e) => {
            let aside = path.with_extension(format!("json.corrupt-{}", std::process::id()));
            fs::rename(&path, &aside).with_context(|| {
                format!("could not move the unreadable {} aside", path.display())
            })?;
            say!(
                "gitops: warning: {} was unreadable ({e}); moved it to {} and starting from a fresh state",
                path.display(),
                aside.display()
            );
            Ok(State::default())
        }
    }
}

/// Read `state.json` without ever modifying anything (for `gitops status`).
pub fn read(layout: &Layout) -> Result<Option<State>> {
    let path = layout.state_file();
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "{} is unreadable; the next gitops sync moves it aside",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("could not read {}", path.display())),
    }
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

/// Temp file, fsync, rename, and (if `durable`) fsync of the directory.
pub fn write_atomic(path: &Path, contents: &[u8], durable: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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
            }),
            pending: None,
            consecutive_failures: 2,
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
}
