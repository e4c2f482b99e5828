//! `gitops status --log`: choosing an apply log and printing it as it is.

use std::path::Path;

use anyhow::Result;

use crate::exit::Exit;
use crate::pass::state::{self, Layout};

/// `gitops status --log [COMMIT]`: print an apply's log as it is. Exit 1 when there is none.
pub(super) fn print_log(layout: &Layout, commit: Option<&str>) -> Result<Exit> {
    use crate::exit::fail;
    let logs = layout.logs();
    if let Some(prefix) = commit {
        let hex = prefix.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex || !(4..=64).contains(&prefix.len()) {
            return Err(fail(
                Exit::Usage,
                format!(
                    "--log {prefix:?} is not a commit: give 4 or more hex digits of one (gitops status --log 3f2a91c), or nothing for the last apply's log"
                ),
            ));
        }
    }
    let present = log_files(&logs)?;
    // What state.json names, by file name only: a log is read from logs/ and nowhere else.
    let state = state::read(layout).ok().flatten().unwrap_or_default();
    let recorded: Vec<String> = [
        state.applied.as_ref().and_then(|a| a.log.clone()),
        state.pending.as_ref().and_then(|p| p.log.clone()),
        state.in_progress.as_ref().and_then(|p| p.log.clone()),
    ]
    .into_iter()
    .flatten()
    .filter_map(|path| {
        Path::new(&path)
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
    })
    .collect();
    let Some(name) = choose_log(&recorded, &present, commit) else {
        return Err(fail(
            Exit::ApplyFailed,
            match commit {
                Some(prefix) => format!(
                    "no apply log for a commit starting {prefix} in {}: gitops keeps the logs of the last {} applies (ls {})",
                    logs.display(),
                    crate::pass::apply::KEEP_LOGS,
                    logs.display()
                ),
                None => format!(
                    "no apply log in {}: no pass has run an entry point yet",
                    logs.display()
                ),
            },
        ));
    };
    let unreadable = |e: std::io::Error| {
        let why = match e.raw_os_error() {
            Some(nix::libc::ELOOP) => {
                "it is a symlink, and status never follows one out of logs/".to_string()
            }
            _ => e.to_string(),
        };
        fail(
            Exit::ApplyFailed,
            format!(
                "could not read the apply log {}: {why}",
                logs.join(&name).display()
            ),
        )
    };
    let mut file = open_log(&logs, &name).map_err(unreadable)?;
    // Streamed: a chatty entry point's log can be large.
    match std::io::copy(&mut file, &mut std::io::stdout().lock()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(unreadable(e)),
        _ => Ok(Exit::Ok),
    }
}

/// A log file in logs/: its name and when it was last written.
pub type LogFile = (String, std::time::SystemTime);

/// The log files in logs/; none if there is no logs/ or it is not a directory of its own (a
/// symlink). One that cannot be listed (root's, read by another user) is an error.
fn log_files(logs: &Path) -> Result<Vec<LogFile>> {
    if !std::fs::symlink_metadata(logs).is_ok_and(|m| m.is_dir()) {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(logs).map_err(|e| {
        let fix = match e.kind() {
            std::io::ErrorKind::PermissionDenied if !nix::unistd::geteuid().is_root() => {
                "; run gitops as root (sudo gitops status --log)"
            }
            _ => "",
        };
        crate::exit::fail(
            Exit::ApplyFailed,
            format!(
                "could not list the apply logs in {}: {e}{fix}",
                logs.display()
            ),
        )
    })?;
    Ok(entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let modified = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((e.file_name().into_string().ok()?, modified))
        })
        .filter(|(name, _)| name.ends_with(".log"))
        .collect())
}

/// Which log to print. Names start with the second the apply started (apply.rs log_path:
/// `<stamp>-<commit>.log`); two applies in one second are told apart by when their logs were
/// last written. With a commit prefix: the newest log of a commit it starts; without: the
/// newest of those state.json names (applied, pending, in progress), else the newest there is.
pub fn choose_log(
    recorded: &[String],
    present: &[LogFile],
    commit: Option<&str>,
) -> Option<String> {
    let newest = |files: &mut dyn Iterator<Item = &LogFile>| {
        files
            .max_by_key(|(name, modified)| {
                (
                    name.split('-').next().map(str::to_string),
                    *modified,
                    name.clone(),
                )
            })
            .map(|(name, _)| name.clone())
    };
    match commit {
        Some(prefix) => {
            let prefix = prefix.to_ascii_lowercase();
            newest(&mut present.iter().filter(|(name, _)| {
                name.split_once('-')
                    .is_some_and(|(_, rest)| rest.starts_with(&prefix))
            }))
        }
        None => newest(&mut present.iter().filter(|(name, _)| recorded.contains(name)))
            .or_else(|| newest(&mut present.iter())),
    }
}

/// Open `logs/<name>`, relative to logs/ without following a link and without blocking
/// on a FIFO, and only if it is a regular file.
fn open_log(logs: &Path, name: &str) -> std::io::Result<std::fs::File> {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(logs)?;
    let fd = nix::fcntl::openat(
        &dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_log_shown_is_the_newest_asked_for() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let at = |secs| std::time::UNIX_EPOCH + Duration::from_secs(secs);
        let present: Vec<LogFile> = [
            ("20261201T100000Z-aaaa1111.log", 4),
            ("20261202T100000Z-bbbb2222.log", 3),
            ("20261202T110000Z-bbbb2222-2.log", 2),
            ("20261203T100000Z-cccc3333.log", 1),
            // Started in the same second as the one above and written before it.
            ("20261203T100000Z-ffff0000.log", 0),
        ]
        .into_iter()
        .map(|(name, secs)| (name.to_string(), at(secs)))
        .collect();
        let table: [(&[&str], Option<&str>, Option<&str>); 8] = [
            (&[], None, Some("20261203T100000Z-cccc3333.log")),
            (
                &[
                    "20261201T100000Z-aaaa1111.log",
                    "20261202T110000Z-bbbb2222-2.log",
                ],
                None,
                Some("20261202T110000Z-bbbb2222-2.log"),
            ),
            // A recorded log that is gone: the newest there is.
            (
                &["20261130T100000Z-ffff.log"],
                None,
                Some("20261203T100000Z-cccc3333.log"),
            ),
            (&[], Some("aaaa"), Some("20261201T100000Z-aaaa1111.log")),
            (&[], Some("BBBB22"), Some("20261202T110000Z-bbbb2222-2.log")),
            (&[], Some("dddd"), None),
            (&[], Some("ffff"), Some("20261203T100000Z-ffff0000.log")),
            (&[], Some("1000"), None),
        ];
        for (recorded, commit, want) in table {
            assert_eq!(
                choose_log(&names(recorded), &present, commit).as_deref(),
                want,
                "{recorded:?} {commit:?}"
            );
        }
        assert_eq!(choose_log(&[], &[], None), None);
    }
}
