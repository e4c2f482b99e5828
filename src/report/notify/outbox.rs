//! `STATE/outbox/`: each event waits here, one file per event written atomically, until every
//! destination has it. Bounded: past `MAX_EVENTS` or `MAX_AGE` the oldest are dropped, counted.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::event::Event;
use crate::pass::state::Layout;

/// The most events that wait; a machine whose receiver has been gone for weeks must not fill
/// its disk with them.
pub const MAX_EVENTS: usize = 200;
/// The oldest an event gets before it is dropped undelivered.
pub const MAX_AGE: time::Duration = time::Duration::days(7);
/// An outbox file larger than this is not ours (an event with its log tail is under 64 KiB).
const MAX_FILE: u64 = 1024 * 1024;

/// One event and the destinations that have it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queued {
    /// RFC 3339: when the pass queued it.
    pub queued_at: String,
    /// The apply's log, attached by the formats that carry a file while it is still there.
    #[serde(default)]
    pub log: Option<String>,
    /// The keys of the destinations that have the event, or refused it for good (4xx).
    #[serde(default)]
    pub done: Vec<String>,
    pub event: Event,
}

/// A queued event and the file that holds it.
#[derive(Debug)]
pub struct Entry {
    pub path: PathBuf,
    pub queued: Queued,
}

pub fn dir(layout: &Layout) -> PathBuf {
    layout.root.join("outbox")
}

/// File names sort as the events were queued: the time to the nanosecond (two events of one
/// pass are queued within the same second), then the random id.
fn file_name(queued: &Queued, at: OffsetDateTime) -> String {
    let stamp: String = queued
        .queued_at
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let stamp = format!("{stamp}-{:09}", at.nanosecond());
    let id: String = queued
        .event
        .id
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    format!("{stamp}-{id}.json")
}

/// Write the event into the outbox, durably: from here on it survives a crash or a reboot.
/// `at` is when it is queued, to the nanosecond (`queued_at` says it to the second).
pub fn queue(layout: &Layout, queued: &Queued, at: OffsetDateTime) -> Result<PathBuf> {
    let dir = dir(layout);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .with_context(|| format!("could not create {}", dir.display()))?;
    let path = dir.join(file_name(queued, at));
    write(&path, queued)?;
    Ok(path)
}

/// Replace an entry's file with what it now holds.
pub fn write(path: &Path, queued: &Queued) -> Result<()> {
    let mut json = serde_json::to_vec(queued).context("could not serialize an event")?;
    json.push(b'\n');
    crate::files::write_atomic(path, &json, true)
        .with_context(|| format!("could not write {}", path.display()))
}

/// The events waiting, oldest first, and how many files were not events (removed: the state
/// directory is private, so they are leftovers of a crash or of a newer gitops, never a
/// delivery to keep).
pub fn list(layout: &Layout) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut removed = 0;
    let Ok(names) = fs::read_dir(dir(layout)) else {
        return (entries, removed);
    };
    let mut paths: Vec<PathBuf> = names
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.'))
        })
        .collect();
    paths.sort();
    for path in paths {
        match read(&path) {
            Some(queued) => entries.push(Entry { path, queued }),
            None => {
                if fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
        }
    }
    (entries, removed)
}

/// An outbox file, if it is a regular file of ours holding an event.
fn read(path: &Path) -> Option<Queued> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE || meta.uid() != nix::unistd::geteuid().as_raw() {
        return None;
    }
    let bytes = crate::config::read_regular_file(path, MAX_FILE).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// How many events wait: what status and the metrics show.
pub fn len(layout: &Layout) -> usize {
    fs::read_dir(dir(layout)).map_or(0, |names| {
        names
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.'))
            })
            .count()
    })
}

/// Which of the events (oldest first, by their `queued_at`) the bound drops: those older than
/// `MAX_AGE`, then the oldest beyond `keep`. An unreadable time counts as old.
pub fn over_bound(queued_at: &[&str], keep: usize, now: OffsetDateTime) -> Vec<usize> {
    let parse =
        |t: &str| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok();
    let mut drop: Vec<usize> = queued_at
        .iter()
        .enumerate()
        .filter(|(_, t)| parse(t).is_none_or(|t| now - t > MAX_AGE))
        .map(|(i, _)| i)
        .collect();
    let kept = queued_at.len() - drop.len();
    let excess = kept.saturating_sub(keep);
    drop.extend(
        (0..queued_at.len())
            .filter(|i| !drop.contains(i))
            .take(excess)
            .collect::<Vec<_>>(),
    );
    drop.sort_unstable();
    drop
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_drops_the_old_and_the_oldest_beyond_the_count() {
        let now = time::macros::datetime!(2026-12-09 12:00:00 UTC);
        let fresh = "2026-12-09T11:00:00Z";
        let week = "2026-12-02T12:00:00Z";
        let older = "2026-12-02T11:59:59Z";
        assert_eq!(
            over_bound(&[fresh, week, fresh], MAX_EVENTS, now),
            Vec::<usize>::new()
        );
        assert_eq!(over_bound(&[older, fresh], MAX_EVENTS, now), vec![0]);
        assert_eq!(over_bound(&["not a time", fresh], MAX_EVENTS, now), vec![0]);
        let many = vec![fresh; MAX_EVENTS + 3];
        assert_eq!(over_bound(&many, MAX_EVENTS, now), vec![0, 1, 2]);
        assert_eq!(over_bound(&many, MAX_EVENTS - 1, now), vec![0, 1, 2, 3]);
        let mut mixed = vec![older];
        mixed.extend(vec![fresh; MAX_EVENTS + 1]);
        assert_eq!(over_bound(&mixed, MAX_EVENTS, now), vec![0, 1]);
    }

    #[test]
    fn events_survive_in_order_and_strangers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let event = |id: &str| Event {
            version: 1,
            id: id.into(),
            event: super::super::event::Kind::Applied,
            reminder: false,
            host: "h".into(),
            machine_id: None,
            outcome: "applied".into(),
            repo_url: None,
            branch: None,
            commit: None,
            subject: None,
            previous_commit: None,
            attempt: None,
            started_at: String::new(),
            finished_at: String::new(),
            duration_seconds: 0.0,
            exit_code: 0,
            error: None,
            log_tail: None,
        };
        for (at, id) in [
            ("2026-12-02T10:00:01Z", "bb"),
            ("2026-12-02T10:00:00Z", "ff"),
        ] {
            let queued = Queued {
                queued_at: at.into(),
                log: None,
                done: vec![],
                event: event(id),
            };
            queue(&layout, &queued, OffsetDateTime::now_utc()).unwrap();
        }
        fs::write(super::dir(&layout).join("junk.json"), "{").unwrap();
        // A temp file being written and a directory are not events.
        fs::write(super::dir(&layout).join(".x.json.tmp-ab"), "{").unwrap();
        fs::create_dir(super::dir(&layout).join("d.json")).unwrap();
        assert_eq!(len(&layout), 3);
        let (entries, removed) = list(&layout);
        assert_eq!(removed, 1);
        let ids: Vec<&str> = entries.iter().map(|e| e.queued.event.id.as_str()).collect();
        assert_eq!(ids, ["ff", "bb"]);
        assert_eq!(len(&layout), 2);
    }
}
