//! The events a pass tells: what they hold (the `json` format's body, version 1) and which
//! pass outcomes make one.

use serde::{Deserialize, Serialize};

/// What happened, as the event's `event` field names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A commit's entry point exited 0.
    Applied,
    /// A commit's entry point failed (first failure of the commit, or an hourly reminder).
    ApplyFailed,
    /// The branch no longer descends from the applied commit.
    Refused,
    /// The commit is not signed by an allowed key.
    Untrusted,
    /// The pass stopped before fetching: a bad option, key or path.
    ConfigError,
    /// The first fetch that failed after a success.
    FetchFailed,
    /// The first successful pass after failures, when nothing needed applying.
    Recovered,
    /// `gitops notify --test`.
    Test,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Applied => "applied",
            Kind::ApplyFailed => "apply-failed",
            Kind::Refused => "refused",
            Kind::Untrusted => "untrusted",
            Kind::ConfigError => "config-error",
            Kind::FetchFailed => "fetch-failed",
            Kind::Recovered => "recovered",
            Kind::Test => "test",
        }
    }

    /// Whether the event tells of something that needs an operator.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Kind::ApplyFailed
                | Kind::Refused
                | Kind::Untrusted
                | Kind::ConfigError
                | Kind::FetchFailed
        )
    }
}

/// The event as the `json` format sends it, and as the outbox keeps it. Version 1: fields are
/// only ever added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// 1.
    pub version: u32,
    /// 32 hex digits, random, the same on every resend: receivers drop duplicates by it.
    pub id: String,
    pub event: Kind,
    /// A reminder of a failure already told (at most one an hour while it lasts).
    #[serde(default)]
    pub reminder: bool,
    pub host: String,
    /// /etc/machine-id, when the machine has one.
    pub machine_id: Option<String>,
    /// The pass's outcome (DESIGN.md's names: applied, apply-failed, up-to-date, …).
    pub outcome: String,
    /// The repository URL, credentials masked.
    pub repo_url: Option<String>,
    pub branch: Option<String>,
    /// The commit the event is about (applied, failed, refused), full id.
    pub commit: Option<String>,
    /// Its subject line, control characters escaped, bounded.
    pub subject: Option<String>,
    /// The commit applied before this one, full id.
    pub previous_commit: Option<String>,
    /// For apply-failed: which attempt at this commit failed.
    pub attempt: Option<u32>,
    /// RFC 3339, UTC, to the second.
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: f64,
    /// The exit code of `gitops sync` for this pass (DESIGN.md's table).
    pub exit_code: i32,
    /// The pass's error line, credentials masked.
    pub error: Option<String>,
    /// The end of the apply's log, at most `LOG_TAIL_BYTES`, cut at a line start.
    pub log_tail: Option<String>,
}

/// How much of the apply's log an event carries itself (the Discord format attaches the log
/// file, up to 1 MiB, when it is still there).
pub const LOG_TAIL_BYTES: usize = 16 * 1024;
