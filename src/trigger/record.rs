//! What the trigger remembers between requests and between its runs: the replay keys of the
//! last hour, the counters status and metrics read, and when it last started a pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::files::{create_new, random_suffix, write_atomic};

/// A delivery is refused when seen within this long.
pub const REPLAY_WINDOW_SECS: i64 = 60 * 60;
/// At most this many keys are kept (two per request): only authentic requests add any, so
/// reaching it takes a forge sending more than one a second for an hour.
const MAX_KEYS: usize = 8192;

/// The replay keys seen, with when (unix seconds).
#[derive(Debug, Default)]
pub struct Seen {
    path: PathBuf,
    keys: BTreeMap<String, i64>,
}

impl Seen {
    /// The file as it is; a damaged one is started afresh (it only ever makes replays that
    /// the signature's own window has not already stopped harder).
    pub fn load(path: &Path) -> Seen {
        let keys = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Seen {
            path: path.to_path_buf(),
            keys,
        }
    }

    /// True (and the keys remembered) when none of them was seen in the last hour.
    pub fn admit(&mut self, keys: &[String], now_unix: i64) -> bool {
        self.keys.retain(|_, at| {
            now_unix.saturating_sub(*at) < REPLAY_WINDOW_SECS && *at <= now_unix + 60
        });
        if keys.iter().any(|k| self.keys.contains_key(k)) {
            return false;
        }
        for key in keys {
            self.keys.insert(key.clone(), now_unix);
        }
        while self.keys.len() > MAX_KEYS {
            let oldest = self
                .keys
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.keys.remove(&k),
                None => break,
            };
        }
        true
    }

    pub fn save(&self) -> std::io::Result<()> {
        let json = serde_json::to_vec(&self.keys).unwrap_or_default();
        write_atomic(&self.path, &json, false)
    }
}

/// The trigger's counters and its last request, in `stats.json` (read by status and metrics).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Authentic requests, whatever they asked for.
    pub accepted: u64,
    /// Accepted requests that started a pass, at once or at the end of the interval.
    pub started: u64,
    /// Passes that could not be asked for (the pulse file or the command failed).
    pub start_failed: u64,
    /// Accepted requests folded into a pass already started or due.
    pub coalesced: u64,
    /// Accepted requests for another branch or event (and pings).
    pub ignored: u64,
    /// Requests refused, by reason.
    pub refused: BTreeMap<String, u64>,
    /// The last accepted request.
    pub last: Option<Last>,
    /// When a pass was last started (unix seconds): the interval holds across the trigger's
    /// own restarts.
    pub last_start_unix: Option<i64>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Last {
    /// RFC 3339, UTC.
    pub time: String,
    pub source: String,
    pub forge: String,
    /// started, coalesced, ignored or pong.
    pub answer: String,
}

/// The largest stats file read for a report: ours stays far below it.
const MAX_STATS_FILE: u64 = 64 * 1024;

/// The trigger's counters as status and the metrics show them, or None when the trigger has
/// never run. The file is written by the trigger's unprivileged user and read here by root:
/// opened without following a link, bounded, and every string in it checked for what it can
/// only be (a known forge and answer, an address, a time), so a compromised trigger cannot put
/// words into status or labels into the metrics.
pub fn read_for_report(dir: &Path) -> Option<Stats> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(dir.join(super::options::STATS))
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_STATS_FILE).read_to_end(&mut bytes).ok()?;
    let mut stats: Stats = serde_json::from_slice(&bytes).ok()?;
    stats
        .refused
        .retain(|reason, _| REASONS.contains(&reason.as_str()));
    // Status adds the refusals up: counts whose sum does not fit were never counted.
    stats
        .refused
        .values()
        .try_fold(0u64, |sum, n| sum.checked_add(*n))?;
    stats.last = stats.last.filter(|last| {
        FORGES.contains(&last.forge.as_str())
            && ANSWERS.contains(&last.answer.as_str())
            && last.source.parse::<std::net::IpAddr>().is_ok()
            // Ours are 30 characters at most; RFC 3339 allows any number of fraction digits.
            && last.time.len() <= 40
            && time::OffsetDateTime::parse(
                &last.time,
                &time::format_description::well_known::Rfc3339,
            )
            .is_ok()
    });
    Some(stats)
}

/// Every reason a request is refused for (the `reason` label's values).
pub const REASONS: [&str; 14] = [
    "address",
    "busy",
    "closed",
    "deadline",
    "head-size",
    "length",
    "malformed",
    "method",
    "path",
    "replay",
    "signature",
    "size",
    "timestamp",
    "unsigned",
];
const FORGES: [&str; 6] = [
    "github",
    "gitea",
    "forgejo",
    "gitlab",
    "gitlab-signed",
    "gitops",
];
const ANSWERS: [&str; 5] = ["started", "coalesced", "ignored", "pong", "failed"];

impl Stats {
    pub fn load(path: &Path) -> Stats {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Written whole and renamed into place, so no reader sees half of it, but not flushed:
    /// anyone can make the trigger count a refusal, as fast as they can connect, and a flush
    /// each would hand them the machine's disk. A power cut loses only recent counts (a file
    /// it leaves empty reads as none).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut json = serde_json::to_vec_pretty(self).unwrap_or_default();
        json.push(b'\n');
        replace(path, &json)
    }

    pub fn refuse(&mut self, reason: &str) {
        *self.refused.entry(reason.to_string()).or_default() += 1;
    }
}

/// `path` replaced by a new file holding `contents`, through a private temporary file.
fn replace(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", random_suffix()?));
    let result = create_new(&tmp)
        .and_then(|mut file| file.write_all(contents))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// At most one pass per interval: the first valid request starts one at once, the ones within
/// the interval after it are coalesced into one more at its end (a push that landed just after
/// the pass fetched still gets its pass).
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    pub interval: Duration,
    pub last: Option<Instant>,
    pub pending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    StartNow,
    Coalesced,
}

impl Pacer {
    pub fn request(&mut self, now: Instant) -> Pace {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.pending = true;
                Pace::Coalesced
            }
            _ => {
                self.last = Some(now);
                Pace::StartNow
            }
        }
    }

    /// When the coalesced pass is due, if one is.
    pub fn due_at(&self) -> Option<Instant> {
        match (self.pending, self.last) {
            (true, Some(last)) => Some(last + self.interval),
            (true, None) => Some(Instant::now()),
            _ => None,
        }
    }

    /// Whether the coalesced pass is due now; if so it counts as started.
    pub fn take_due(&mut self, now: Instant) -> bool {
        if self.due_at().is_some_and(|at| at <= now) {
            self.pending = false;
            self.last = Some(now);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_starts_one_pass_per_interval_and_one_more_for_what_came_between() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Pacer {
            interval: s(10),
            last: None,
            pending: false,
        };
        // (seconds after t0, what happens: Some(request answer) or None for a tick)
        let table: [(u64, Option<Pace>, bool); 9] = [
            (0, Some(Pace::StartNow), false),
            (1, Some(Pace::Coalesced), false),
            (2, Some(Pace::Coalesced), false),
            (9, None, false),
            (10, None, true), // the coalesced pass, at the end of the interval
            (11, None, false),
            (15, Some(Pace::Coalesced), false),
            (20, None, true),
            (31, Some(Pace::StartNow), false),
        ];
        for (at, request, fires) in table {
            let now = t0 + s(at);
            if let Some(want) = request {
                assert_eq!(p.request(now), want, "request at {at}s");
            } else {
                assert_eq!(p.take_due(now), fires, "tick at {at}s");
            }
        }
        assert_eq!(p.due_at(), None);
    }

    #[test]
    fn a_delivery_is_admitted_once_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen.json");
        let mut seen = Seen::load(&path);
        let k = |s: &str| vec![s.to_string()];
        assert!(seen.admit(&k("a"), 1000));
        assert!(!seen.admit(&k("a"), 1001));
        assert!(!seen.admit(&["b".into(), "a".into()], 1002));
        assert!(
            seen.admit(&k("b"), 1003),
            "a refused request remembers nothing"
        );
        seen.save().unwrap();
        let mut again = Seen::load(&path);
        assert!(!again.admit(&k("a"), 1000 + REPLAY_WINDOW_SECS - 1));
        assert!(again.admit(&k("a"), 1000 + REPLAY_WINDOW_SECS));
        std::fs::write(&path, b"{not json").unwrap();
        assert!(Seen::load(&path).admit(&k("a"), 5000));
    }

    #[test]
    fn a_report_reads_only_what_the_trigger_can_have_written() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_for_report(dir.path()), None);
        let stats = dir.path().join(super::super::options::STATS);
        std::fs::write(
            &stats,
            r#"{"accepted":3,"refused":{"signature":2,"evil\"} 1\nx":9},
               "last":{"time":"2026-12-03T07:00:00Z","source":"192.0.2.1","forge":"github","answer":"started"}}"#,
        )
        .unwrap();
        let read = read_for_report(dir.path()).unwrap();
        assert_eq!(read.accepted, 3);
        assert_eq!(read.refused.keys().collect::<Vec<_>>(), ["signature"]);
        assert_eq!(read.last.unwrap().forge, "github");
        std::fs::write(
            &stats,
            r#"{"last":{"time":"2026-12-03T07:00:00Z","source":"not an address","forge":"github","answer":"started"}}"#,
        )
        .unwrap();
        assert_eq!(read_for_report(dir.path()).unwrap().last, None);
        std::fs::remove_file(&stats).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &stats).unwrap();
        assert_eq!(read_for_report(dir.path()), None, "a link is not followed");
    }
}
