//! The pass lock: one pass at a time, and what status can learn about who holds it.

use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

use super::state::{not_a_file, Layout, SAFE_OPEN};
use crate::exit::{fail, Exit, ResultExt};

impl Layout {
    pub(super) fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// The lock file, created if missing. It persists between passes, so it cannot be created
    /// with O_EXCL; O_NOFOLLOW and the check that it is a regular file keep a planted link or
    /// FIFO from redirecting or blocking us.
    fn open_lock(&self) -> Result<File> {
        let path = self.lock_file();
        let refuse = |kind: &str| {
            fail(
                Exit::Usage,
                format!(
                    "the lock file {} is a {kind}, not a file; remove it (gitops creates it again)",
                    path.display()
                ),
            )
        };
        if let Some(kind) = fs::symlink_metadata(&path)
            .ok()
            .and_then(|m| not_a_file(&m.file_type()))
        {
            return Err(refuse(kind));
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(SAFE_OPEN)
            .open(&path);
        let file = match file {
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => return Err(refuse("symlink")),
            other => other.or_exit(Exit::Usage, || {
                format!(
                    "cannot open the lock file {}: make the state directory writable",
                    path.display()
                )
            })?,
        };
        if let Some(kind) = file
            .metadata()
            .ok()
            .and_then(|m| not_a_file(&m.file_type()))
        {
            return Err(refuse(kind));
        }
        Ok(file)
    }

    /// Take the pass lock only if nobody holds it: for recording a configuration error, which
    /// must never wait for, or race with, a running pass.
    pub fn try_lock(&self) -> Option<Flock<File>> {
        let file = self.open_lock().ok()?;
        Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()
    }

    /// Whether a pass holds the lock now, found without creating or modifying anything (for
    /// `gitops status`): a shared lock attempt on the existing file, released at once.
    pub fn pass_running(&self) -> bool {
        let path = self.lock_file();
        let regular = |m: &fs::Metadata| m.file_type().is_file();
        if !fs::symlink_metadata(&path).is_ok_and(|m| regular(&m)) {
            return false;
        }
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(SAFE_OPEN)
            .open(&path)
        else {
            return false;
        };
        if !file.metadata().is_ok_and(|m| regular(&m)) {
            return false;
        }
        matches!(
            Flock::lock(file, FlockArg::LockSharedNonblock),
            Err((_, nix::errno::Errno::EWOULDBLOCK))
        )
    }

    /// The processes holding the lock when no live gitops pass took it, named for an operator
    /// (for `gitops status`); `None` when a gitops pass holds it, nobody does, or /proc cannot
    /// tell.
    pub fn lock_holders(&self) -> Option<String> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(SAFE_OPEN)
            .open(self.lock_file())
            .ok()?;
        orphan_holders(&file)
    }

    /// Why every pass would stop at the lock file, if it would: something other than a regular
    /// file is there (for `gitops status`, which must not call that healthy).
    pub fn lock_problem(&self) -> Option<String> {
        let path = self.lock_file();
        let kind = not_a_file(&fs::symlink_metadata(&path).ok()?.file_type())?;
        Some(format!(
            "the lock file {} is a {kind}, not a file, so every gitops sync stops there; remove it (rm {}; gitops creates it again)",
            path.display(),
            path.display()
        ))
    }

    /// Take the pass lock, waiting up to `timeout` for a running pass to finish.
    /// Also says whether it had to wait: what was checked before may have changed meanwhile.
    pub fn lock(&self, timeout: Duration) -> Result<(Flock<File>, bool)> {
        let file = self.open_lock()?;
        wait_for(
            &self.lock_file(),
            file,
            Taker::Pass,
            FlockArg::LockExclusiveNonblock,
            Instant::now() + timeout,
            timeout,
        )
    }

    /// The read lock of `gitops plan`: no pass runs while it is held, and no other plan.
    ///
    /// The pass lock is taken shared, so a pass (which takes it exclusive) waits for the plan
    /// and a plan waits for a running pass, while `gitops status` still sees no pass running.
    /// Plans among themselves are serialised by an exclusive lock on the state directory
    /// itself (no file is created for it): a plan fetches into `repo.git`, and two fetches at
    /// once would sweep each other's temporary pack files as leftovers, race for the refs'
    /// lock files, clobber the ssh log, or, when the store is damaged, rebuild it under each
    /// other. With both held, a plan is the store's only writer, exactly as a pass is.
    /// The state directory is taken first: plans queued behind each other do not hold the
    /// shared lock meanwhile, so a pass is not kept waiting by a queue of plans.
    /// Also says whether it had to wait.
    pub fn read_lock(&self, timeout: Duration) -> Result<(ReadLock, bool)> {
        let deadline = Instant::now() + timeout;
        let root = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
            .open(&self.root)
            .or_exit(Exit::Usage, || {
                format!(
                    "cannot open the state directory {}: point --state-dir at a directory this user can read",
                    self.root.display()
                )
            })?;
        let (plans, waited_plan) = wait_for(
            &self.root,
            root,
            Taker::Plan,
            FlockArg::LockExclusiveNonblock,
            deadline,
            timeout,
        )?;
        let plans = Held::new(plans);
        let file = self.open_lock()?;
        let (shared, waited_pass) = wait_for(
            &self.lock_file(),
            file,
            Taker::Pass,
            FlockArg::LockSharedNonblock,
            deadline,
            timeout,
        )?;
        Ok((
            ReadLock {
                _shared: Held::new(shared),
                _plans: plans,
            },
            waited_plan || waited_pass,
        ))
    }
}

/// What `Layout::read_lock` holds, released when dropped (the pass lock first).
pub struct ReadLock {
    _shared: Held,
    _plans: Held,
}

/// Who takes the lock waited for, for the messages: the pass lock is held by passes (or what
/// a killed one left running), the state directory's by plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taker {
    Pass,
    Plan,
}

/// Lock `file` (`path` names it in messages) with `how`, a non-blocking flock, trying again
/// until `deadline`; `timeout` is what the messages say was waited. Says whether it waited.
fn wait_for(
    path: &Path,
    mut file: File,
    taker: Taker,
    how: FlockArg,
    deadline: Instant,
    timeout: Duration,
) -> Result<(Flock<File>, bool)> {
    let plan = taker == Taker::Plan;
    let mut waiting = false;
    loop {
        match Flock::lock(file, how) {
            Ok(lock) => return Ok((lock, waiting)),
            Err((returned, nix::errno::Errno::EWOULDBLOCK)) => {
                file = returned;
                if !waiting {
                    waiting = true;
                    match (plan, orphan_holders(&file)) {
                        (true, _) => say!(
                            "gitops: another gitops plan is fetching into {}; waiting up to {} for it",
                            path.display(),
                            crate::config::format_duration(timeout)
                        ),
                        (false, Some(holders)) => say!(
                            "gitops: the lock {} is held by {holders}: a program other than a gitops pass, for instance the entry point of a pass that was killed; waiting up to {} for it",
                            path.display(),
                            crate::config::format_duration(timeout)
                        ),
                        (false, None) => say!(
                            "gitops: another pass holds {}; waiting up to {} for it",
                            path.display(),
                            crate::config::format_duration(timeout)
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
                    if plan {
                        return Err(fail(
                            Exit::Locked,
                            format!(
                                "another gitops plan holds the state directory {} (waited {}): let it finish, or raise --lock-timeout",
                                path.display(),
                                crate::config::format_duration(timeout)
                            ),
                        ));
                    }
                    if let Some(holders) = orphan_holders(&file) {
                        return Err(fail(
                            Exit::Locked,
                            format!(
                                "the lock {} is held by {holders}: a program other than a gitops pass, for instance the entry point of a pass that was killed (waited {}); let it finish or stop it, or raise --lock-timeout",
                                path.display(),
                                crate::config::format_duration(timeout)
                            ),
                        ));
                    }
                    return Err(fail(
                        Exit::Locked,
                        format!(
                            "another gitops pass holds the lock {} (waited {}): let it finish, or raise --lock-timeout",
                            path.display(),
                            crate::config::format_duration(timeout)
                        ),
                    ));
                }
                std::thread::sleep(
                    Duration::from_millis(50)
                        .min(deadline.saturating_duration_since(Instant::now())),
                );
            }
            Err((_, errno)) => {
                return Err(anyhow::Error::from(errno))
                    .with_context(|| format!("could not lock {}", path.display()))
            }
        }
    }
}

/// The pass lock, released on every way out of the pass. nix's `Flock` panics in its `Drop`
/// when unlocking fails; a pass must never panic, and the lock goes with the process anyway.
pub struct Held(Option<Flock<File>>);

impl Held {
    pub fn new(lock: Flock<File>) -> Held {
        Held(Some(lock))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_ref().map_or(-1, |lock| lock.as_raw_fd())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(Err((lock, _))) = self.0.take().map(|lock| lock.unlock()) {
            std::mem::forget(lock);
        }
    }
}

/// Whether the pass recorded under `pid` is still alive: the process is there and not a zombie.
/// Not judged by its name: the binary may be installed under another one than the `status`
/// that asks. (A pid reused after a kill could pass for the pass; pids wrap slowly enough for
/// that to be rare, and the next pass tells the truth.) Without /proc nobody can tell, and the
/// pass is taken to be alive, as before.
pub fn pid_is_live_gitops(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "303 (gitops) S 1 …": the name may hold spaces or parentheses, the state follows the last ')'.
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| rest.split_whitespace().next() != Some("Z"))
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
    // Named as this binary is: here the asker is a pass, the same program as the holder.
    let own = fs::read_to_string("/proc/self/comm").ok();
    if u32::try_from(taker).is_ok_and(pid_is_live_gitops)
        && comm(taker).is_some_and(|c| own.as_deref().map(str::trim) == Some(c.as_str()))
    {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_probe_sees_a_held_lock_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        assert!(!layout.pass_running());
        assert!(
            !layout.lock_file().exists(),
            "the probe created the lock file"
        );
        let (held, _) = layout.lock(Duration::from_secs(1)).unwrap();
        assert!(layout.pass_running());
        assert!(layout.try_lock().is_none());
        drop(held);
        assert!(!layout.pass_running());
        assert!(layout.try_lock().is_some());
    }
}
