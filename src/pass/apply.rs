//! Running the entry point: environment, process group, timeout, output to the journal and a log.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How many apply logs to keep.
pub const KEEP_LOGS: usize = 20;

/// gitops' own settings that are secrets themselves (a webhook URL's path is its token): the
/// entry point has no use for them, and a `set -x` or `env` in it would put them in its log,
/// the journal and the log attached to the Discord message.
const NOT_PASSED_ON: [&str; 1] = ["GITOPS_NOTIFY_URL"];

/// What the entry point is run with.
pub struct Run<'a> {
    /// The checkout path (the symlink) the entry point runs in.
    pub checkout: &'a Path,
    /// The real tree behind it, where we look for the entry point.
    pub tree: &'a Path,
    pub entrypoint: &'a str,
    pub env: Vec<(&'static str, String)>,
    pub timeout: Duration,
    pub log: &'a Path,
    pub umask: nix::sys::stat::Mode,
    /// The pass lock's descriptor, left open in the entry point (and so in everything it
    /// starts): if gitops dies, the lock stays held until the last of them exits, and the next
    /// pass waits instead of starting the entry point a second time beside them.
    pub lock_fd: Option<RawFd>,
    /// What the program is to the operator, for its messages.
    pub role: Role,
}

/// The program's part in the pass: how messages name it and the options that change it.
#[derive(Debug, Clone, Copy)]
pub struct Role {
    /// "entry point", "health check".
    pub name: &'static str,
    /// The option that names the program.
    pub set_by: &'static str,
    /// The option that bounds its run.
    pub timeout_flag: &'static str,
}

/// The entry point's role.
pub const ENTRY_POINT: Role = Role {
    name: "entry point",
    set_by: "--entrypoint",
    timeout_flag: "--apply-timeout",
};

/// How the entry point ended; `Ok(())` only for exit status 0.
pub type RunResult = std::result::Result<(), String>;

/// Run the entry point to completion. Only problems with the log file are errors of ours; what
/// happens to the entry point itself comes back as the `RunResult`.
pub fn run(spec: &Run<'_>) -> Result<RunResult> {
    // The pass created it new; never follow a link swapped in since.
    let mut log = OpenOptions::new()
        .append(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(spec.log)
        .with_context(|| format!("could not create the apply log {}", spec.log.display()))?;
    let tee_log = log
        .try_clone()
        .context("could not duplicate the apply log")?;
    // Why the apply failed goes into the log only: the pass ends with it as its error line, so
    // the journal shows the reason once.
    let reason_log = log
        .try_clone()
        .context("could not duplicate the apply log")?;
    let record = |why: &str| {
        let _ = writeln!(&reason_log, "gitops: {why}");
    };
    let mut note = |line: String| {
        say!("gitops: {line}");
        let _ = writeln!(log, "gitops: {line}");
    };
    let shown = spec.checkout.join(spec.entrypoint);
    let meta = match entry_point(spec.tree, spec.entrypoint, spec.role.set_by) {
        Ok(meta) => meta,
        Err(why) => {
            let why = format!("{} {}: {why}", spec.role.name, shown.display());
            record(&why);
            return Ok(Err(why));
        }
    };
    let expression = if meta.permissions().mode() & 0o111 == 0 {
        note(format!(
            "{} is not executable; running it with /bin/sh (commit it with mode 755 to silence this)",
            spec.entrypoint
        ));
        duct::cmd("/bin/sh", [&shown])
    } else {
        duct::cmd(&shown, std::iter::empty::<&str>())
    };
    if let Some(signal) = crate::signals::received() {
        let why = format!(
            "gitops received {signal} before running {}",
            spec.entrypoint
        );
        record(&why);
        return Ok(Err(why));
    }
    note(format!("running {}", shown.display()));

    let umask = spec.umask;
    let lock_fd = spec.lock_fd;
    let (reader, writer) =
        std::io::pipe().context("could not create a pipe for the entry point's output")?;
    let mut expression = expression
        .dir(spec.checkout)
        .stdin_null()
        .stdout_file(
            writer
                .try_clone()
                .context("could not duplicate the output pipe")?,
        )
        .stderr_file(writer)
        .unchecked()
        // Its own process group, so a timeout kills everything it started, not just the shell.
        .before_spawn(move |command| {
            command.process_group(0);
            // SAFETY: umask(2), close_range(2) and fcntl(2) are async-signal-safe system calls,
            // and nothing below allocates or touches memory another thread could hold locked.
            unsafe {
                command.pre_exec(move || {
                    nix::sys::stat::umask(umask);
                    // Only 0-2 and the pass lock reach the entry point: a descriptor gitops
                    // inherited (cron's flock(1) lock, a caller's pipe) would otherwise pass on
                    // to every daemon it starts and stay held for as long as they run.
                    close_others_on_exec();
                    if let Some(fd) = lock_fd {
                        // In the child only: gitops's own copy stays close-on-exec for the
                        // other programs it runs (ssh). fcntl(2) is async-signal-safe.
                        if keep_across_exec(fd) == -1 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
            Ok(())
        });
    for key in NOT_PASSED_ON {
        expression = expression.env_remove(key);
    }
    for (key, value) in &spec.env {
        expression = expression.env(key, value);
    }
    let handle = match expression.start() {
        Ok(handle) => handle,
        Err(e) => {
            let why = format!("could not start {}: {e}", shown.display());
            record(&why);
            return Ok(Err(why));
        }
    };
    // `expression` holds the last copies of the pipe's write end; drop it or EOF never comes.
    drop(expression);

    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        tee(reader, tee_log);
        let _ = done_tx.send(());
    });

    let pgid = handle.pids().first().map(|&p| Pid::from_raw(p as i32));
    let deadline = std::time::Instant::now() + spec.timeout;
    // Wait in short slices: a SIGTERM (systemctl stop, shutdown) or Ctrl-C must reach the
    // entry point's own process group, not only us.
    let status = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let slice = left.min(Duration::from_millis(200));
        let waited = match handle.wait_timeout(slice) {
            Ok(waited) => waited,
            Err(e) => {
                // Never leave it running unwatched once the pass gives up on it.
                stop_group(&handle, pgid);
                return Err(e).context("could not wait for the entry point");
            }
        };
        if let Some(output) = waited {
            break Ok(output.status);
        }
        if let Some(signal) = crate::signals::received() {
            stop_group(&handle, pgid);
            break Err(format!(
                "gitops received {signal} and stopped {} with its process group",
                spec.entrypoint
            ));
        }
        if left.is_zero() {
            stop_group(&handle, pgid);
            break Err(format!(
                "{} did not finish within {} and was killed with its process group; raise {} if it needs longer",
                spec.entrypoint,
                crate::config::format_duration(spec.timeout),
                spec.role.timeout_flag
            ));
        }
    };
    // Background children that inherited the output keep the pipe open; don't wait on them long.
    if done_rx.recv_timeout(Duration::from_secs(2)).is_err() {
        note("the entry point left processes holding its output open; not capturing them any further".into());
    }
    let result = match status {
        Err(why) => Err(why),
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(match (status.code(), status.signal()) {
            (Some(code), _) => format!("{} exited with status {code}", spec.entrypoint),
            (None, Some(signal)) => format!("{} was killed by signal {signal}", spec.entrypoint),
            _ => format!("{} failed: {status}", spec.entrypoint),
        }),
    };
    match &result {
        Ok(()) => note(format!("{} succeeded", spec.entrypoint)),
        Err(why) => record(why),
    }
    Ok(result)
}

/// Mark every descriptor from 3 up close-on-exec, with close_range(2) (Linux 5.11). A kernel
/// without it (ENOSYS) leaves them as they are: the pass still runs, as it did before.
fn close_others_on_exec() {
    const CLOSE_RANGE_CLOEXEC: nix::libc::c_uint = 1 << 2;
    // SAFETY: a raw system call on descriptor numbers only, async-signal-safe; it touches no
    // memory of ours.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            3 as nix::libc::c_uint,
            nix::libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        );
    }
}

/// fcntl(fd, F_SETFD, 0): keep `fd` open across exec.
fn keep_across_exec(fd: RawFd) -> i32 {
    // SAFETY: F_SETFD on a descriptor number touches no memory; a bad fd only returns -1.
    match nix::fcntl::fcntl(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    ) {
        Ok(_) => 0,
        Err(_) => -1,
    }
}

/// The entry point must be a regular file of the commit's own tree: a symlink leading out of
/// it would run whatever happens to be at its target on this machine.
fn entry_point(
    tree: &Path,
    entrypoint: &str,
    set_by: &str,
) -> std::result::Result<fs::Metadata, String> {
    let path = tree.join(entrypoint);
    let fix = format!("add it to the repository as a regular file or set {set_by}");
    if fs::symlink_metadata(&path).is_err() {
        return Err(format!("not found in this commit: {fix}"));
    }
    let (Ok(real), Ok(root)) = (fs::canonicalize(&path), fs::canonicalize(tree)) else {
        return Err(format!(
            "is a symlink to {} that does not exist in this commit: {fix}",
            fs::read_link(&path)
                .map(|t| t.display().to_string())
                .unwrap_or_default()
        ));
    };
    if !real.starts_with(&root) {
        return Err(format!(
            "resolves to {}, outside the commit's tree; refusing to run it: {fix}",
            real.display()
        ));
    }
    let meta = fs::metadata(&real).map_err(|e| format!("cannot be read ({e}): {fix}"))?;
    if meta.is_dir() {
        return Err(format!("is a directory in this commit, not a file: {fix}"));
    }
    if !meta.is_file() {
        return Err(format!("is not a regular file: {fix}"));
    }
    Ok(meta)
}

/// Write why an apply failed before its entry point could run into the apply's log, so the
/// log that state.json names exists and says it. False if the log could not be written.
pub fn note_in_log(log: &Path, why: &str) -> bool {
    // The log exists (the pass created it, O_EXCL): opened, never created or followed here.
    OpenOptions::new()
        .append(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(log)
        .and_then(|mut file| writeln!(file, "gitops: {why}"))
        .is_ok()
}

/// How long the entry point's process group gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// SIGTERM to the whole group, then SIGKILL to whatever of it is left after `STOP_GRACE`: a
/// child that traps TERM must not outlive the apply just because the shell above it exited.
fn stop_group(handle: &duct::Handle, pgid: Option<Pid>) {
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = std::time::Instant::now() + STOP_GRACE;
        loop {
            // Reap the leader so that, once the rest is gone, the group is empty, not a zombie.
            let _ = handle.try_wait();
            if killpg(pgid, None).is_err() {
                // Gone: its number may be reused from now on, so send it nothing more.
                break;
            }
            if std::time::Instant::now() >= deadline {
                // Members left keep the group's number reserved: this reaches only them.
                let _ = killpg(pgid, Signal::SIGKILL);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = handle.kill();
    let _ = handle.wait_timeout(Duration::from_secs(10));
}

/// Copy the entry point's output to our stdout (the journal) and to the log, as it comes.
fn tee(mut reader: std::io::PipeReader, mut log: File) {
    let mut buf = [0u8; 8192];
    let stdout = std::io::stdout();
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut out = stdout.lock();
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
                let _ = log.write_all(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

/// Log file name for an apply started at `stamp`: names sort in time order.
pub fn log_path(logs: &Path, stamp: &str, commit: &str) -> PathBuf {
    logs.join(format!("{stamp}-{commit}.log"))
}

/// Keep the newest `keep` logs, and `also` (the applied commit's log) whatever its age.
pub fn prune_logs(logs: &Path, keep: usize, also: Option<&str>) -> Result<()> {
    let mut names: Vec<PathBuf> = fs::read_dir(logs)
        .with_context(|| format!("could not list {}", logs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .filter(|p| also.is_none_or(|kept| p.as_path() != Path::new(kept)))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    for old in &names[..excess] {
        fs::remove_file(old)
            .with_context(|| format!("could not remove the old log {}", old.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_logs_stay() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..25 {
            fs::write(dir.path().join(format!("2026010{:02}-c.log", i)), "").unwrap();
        }
        fs::write(dir.path().join("notes.txt"), "").unwrap();
        let oldest = dir.path().join("202601000-c.log");
        prune_logs(dir.path(), 20, Some(oldest.to_str().unwrap())).unwrap();
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), 22);
        assert_eq!(left[0], "202601000-c.log", "the applied commit's log stays");
        assert_eq!(left[1], "202601005-c.log");
        assert!(left.contains(&"notes.txt".to_string()));
    }
}
