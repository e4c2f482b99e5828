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
    /// A reboot the repository requested is being carried out (told before the command runs).
    Reboot,
    /// The reboot command ran and the machine did not reboot, or the command failed.
    RebootFailed,
    /// The applied commit's reboot request cannot be read: no reboot until it is fixed.
    RebootInvalid,
    /// The branch's tip is older than --max-commit-age (told once per tip).
    Stale,
    /// A commit failed and the last applied commit was applied again (`--on-failure revert`).
    Reverted,
    /// A commit failed, and applying the last applied commit again failed too.
    RevertFailed,
    /// `gitops suspend` began holding applies back.
    Suspended,
    /// A suspension ended: `gitops resume`, or its expiry.
    Resumed,
    /// A new commit arrived while applies are suspended, and was not applied.
    SuspendBlocked,
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
            Kind::Reboot => "reboot",
            Kind::RebootFailed => "reboot-failed",
            Kind::RebootInvalid => "reboot-invalid",
            Kind::Stale => "stale",
            Kind::Reverted => "reverted",
            Kind::RevertFailed => "revert-failed",
            Kind::Suspended => "suspended",
            Kind::Resumed => "resumed",
            Kind::SuspendBlocked => "suspend-blocked",
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
                | Kind::RebootFailed
                | Kind::RebootInvalid
                | Kind::Stale
                | Kind::Reverted
                | Kind::RevertFailed
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

use time::OffsetDateTime;

use crate::pass::state::{Outcome, State};

/// A failure that lasts is told again at most this often.
pub const REMIND_EVERY: time::Duration = time::Duration::hours(1);

/// The event a pass tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Telling {
    pub kind: Kind,
    pub reminder: bool,
}

impl Telling {
    fn first(kind: Kind) -> Option<Telling> {
        Some(Telling {
            kind,
            reminder: false,
        })
    }
}

/// Which event, if any, a pass tells, from the state before it (`before`, as loaded) and after
/// it (`after`, its outcome recorded). An up-to-date pass never tells anything unless it ends a
/// run of failures; a failure that lasts is told once, then reminded at most once an hour; a
/// fetch failure only when it breaks a run of successes (networks blink; a lasting one shows in
/// status and the metrics).
pub fn tell(before: &State, after: &State, now: OffsetDateTime) -> Option<Telling> {
    let pass = after.last_pass.as_ref()?;
    let failing_before = before.consecutive_failures > 0 || before.in_progress.is_some();
    let kind = match pass.outcome {
        Outcome::Applied => return Telling::first(Kind::Applied),
        Outcome::UpToDate if failing_before => return Telling::first(Kind::Recovered),
        Outcome::FetchFailed if !failing_before => return Telling::first(Kind::FetchFailed),
        Outcome::UpToDate | Outcome::FetchFailed | Outcome::Unknown => return None,
        Outcome::ApplyFailed => Kind::ApplyFailed,
        Outcome::Refused => Kind::Refused,
        Outcome::Untrusted => Kind::Untrusted,
        Outcome::ConfigError => Kind::ConfigError,
        Outcome::Reverted => Kind::Reverted,
        Outcome::RevertFailed => Kind::RevertFailed,
        // A suspension's events are told by the suspension, not by each pass it holds back.
        Outcome::Suspended => return None,
    };
    let key = failure_key(after)?;
    match before.notify.as_ref().and_then(|n| n.told.as_ref()) {
        Some(told) if told.key == key => {
            let at = time::OffsetDateTime::parse(
                &told.at,
                &time::format_description::well_known::Rfc3339,
            );
            // A time in the future is a clock that was set back: remind, and start again from now.
            let due = at.map_or(true, |at| now - at >= REMIND_EVERY || at > now);
            due.then_some(Telling {
                kind,
                reminder: true,
            })
        }
        _ => Telling::first(kind),
    }
}

/// Whether a stale tip is news: told once per tip that is stale, not on every pass it stays so.
pub fn stale_is_news(
    before: Option<&crate::pass::state::Stale>,
    after: Option<&crate::pass::state::Stale>,
) -> bool {
    match (before, after) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(b), Some(a)) => b.commit != a.commit,
    }
}

/// What makes two failing passes the same failure: the outcome and the commit it is about, or,
/// for a configuration error, its message.
pub fn failure_key(after: &State) -> Option<String> {
    let pass = after.last_pass.as_ref()?;
    let about = match pass.outcome {
        Outcome::ConfigError => pass.error.clone().unwrap_or_default(),
        Outcome::ApplyFailed | Outcome::Reverted | Outcome::RevertFailed => after
            .pending
            .as_ref()
            .map(|p| p.commit.clone())
            .or_else(|| pass.remote_commit.clone())
            .unwrap_or_default(),
        _ => pass.remote_commit.clone().unwrap_or_default(),
    };
    Some(format!("{}:{about}", pass.outcome.as_str()))
}

/// What the machine and the pass's edges supply: the rest of an event comes from the states.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub id: String,
    pub host: String,
    pub machine_id: Option<String>,
    pub exit_code: i32,
    pub log_tail: Option<String>,
}

/// The commit an event is about, its subject, and the apply's log file.
pub fn subject_of(kind: Kind, after: &State) -> (Option<String>, Option<String>, Option<String>) {
    let pass = after.last_pass.as_ref();
    let remote = pass.and_then(|p| p.remote_commit.clone());
    let applied = after.applied.as_ref();
    // The failed commit is the branch's tip, or one a pass may try while the tip is another:
    // the applied commit run again (--apply always while the tip waits for its wave) or a
    // reverted commit held back while the branch moves elsewhere (--watch).
    let pending = after.pending.as_ref().filter(|p| {
        remote.is_none()
            || remote.as_deref() == Some(p.commit.as_str())
            || p.outcome.is_some()
            || applied.is_some_and(|a| a.commit == p.commit)
    });
    match kind {
        Kind::Applied
        | Kind::Recovered
        | Kind::Reboot
        | Kind::RebootFailed
        | Kind::RebootInvalid
        | Kind::Stale => (
            applied.map(|a| a.commit.clone()),
            applied.and_then(|a| a.subject.clone()),
            applied.and_then(|a| a.log.clone()),
        ),
        Kind::ApplyFailed | Kind::Reverted | Kind::RevertFailed => match pending {
            Some(p) => (Some(p.commit.clone()), p.subject.clone(), p.log.clone()),
            None => (remote, None, None),
        },
        Kind::ConfigError | Kind::Test | Kind::Suspended | Kind::Resumed => (None, None, None),
        Kind::SuspendBlocked => (remote, None, None),
        Kind::Refused | Kind::Untrusted | Kind::FetchFailed => (remote, None, None),
    }
}

/// The event for `telling`, built from the states around the pass and the facts.
pub fn build(telling: Telling, before: &State, after: &State, facts: Facts) -> Event {
    let pass = after
        .last_pass
        .clone()
        .unwrap_or_else(|| crate::pass::state::LastPass {
            started_at: String::new(),
            finished_at: String::new(),
            outcome: Outcome::Unknown,
            remote_commit: None,
            error: None,
            duration_ms: None,
        });
    let (commit, subject, _) = subject_of(telling.kind, after);
    // The commit that was in place before this one: for an apply, what it replaced; otherwise
    // what stays applied.
    let previous_commit = match telling.kind {
        Kind::Applied => before.applied.as_ref().map(|a| a.commit.clone()),
        _ => after.applied.as_ref().map(|a| a.commit.clone()),
    }
    .filter(|previous| Some(previous) != commit.as_ref());
    let attempt = match telling.kind {
        Kind::ApplyFailed => after
            .pending
            .as_ref()
            .filter(|p| Some(&p.commit) == commit.as_ref())
            .map(|p| p.attempts),
        _ => None,
    };
    Event {
        version: 1,
        id: facts.id,
        event: telling.kind,
        reminder: telling.reminder,
        host: facts.host,
        machine_id: facts.machine_id,
        outcome: pass.outcome.as_str().to_string(),
        repo_url: after.repo_url.clone(),
        branch: after.branch.clone(),
        commit,
        subject,
        previous_commit,
        attempt,
        started_at: pass.started_at,
        finished_at: pass.finished_at,
        duration_seconds: pass.duration_ms.unwrap_or(0) as f64 / 1000.0,
        exit_code: facts.exit_code,
        error: pass.error,
        log_tail: facts.log_tail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pass::state::{self, Applied, LastPass, NotifyRecord, Pending};

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn state(outcome: Option<Outcome>, failures: u32, told: Option<(&str, &str)>) -> State {
        State {
            applied: Some(Applied {
                commit: A.into(),
                applied_at: "2026-12-01T10:00:00Z".into(),
                log: None,
                subject: Some("first".into()),
                committed_at: None,
                signer: None,
                entrypoint: None,
            }),
            last_pass: outcome.map(|outcome| LastPass {
                started_at: "2026-12-02T10:00:00Z".into(),
                finished_at: "2026-12-02T10:00:01Z".into(),
                outcome,
                remote_commit: Some(B.into()),
                error: (!outcome.is_success()).then(|| "it broke".into()),
                duration_ms: Some(1500),
            }),
            pending: (outcome == Some(Outcome::ApplyFailed)).then(|| Pending {
                commit: B.into(),
                attempts: 2,
                last_error: "it broke".into(),
                log: Some("/s/logs/x.log".into()),
                subject: Some("second".into()),
                ..Default::default()
            }),
            consecutive_failures: failures,
            notify: told.map(|(key, at)| NotifyRecord {
                told: Some(state::Told {
                    key: key.into(),
                    at: at.into(),
                }),
                ..NotifyRecord::default()
            }),
            ..State::default()
        }
    }

    /// The failure told before the pass: its key and when.
    type Told<'a> = Option<(&'a str, &'a str)>;
    /// Before the pass (outcome, failures, told), this pass's outcome, and what it tells.
    type Row<'a> = (
        Option<Outcome>,
        u32,
        Told<'a>,
        Outcome,
        Option<(Kind, bool)>,
    );

    #[test]
    fn which_pass_tells_what() {
        use Outcome::*;
        let now = time::macros::datetime!(2026-12-02 10:00:00 UTC);
        let failed_b = format!("apply-failed:{B}");
        let refused_b = format!("refused:{B}");
        let recent = "2026-12-02T09:30:00Z";
        let hour_ago = "2026-12-02T09:00:00Z";
        let future = "2026-12-03T09:00:00Z";
        // (before: outcome, failures, told), after outcome → event, reminder
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            (Some(UpToDate), 0, None, UpToDate, None),
            (None, 0, None, UpToDate, None),
            (Some(UpToDate), 0, None, Applied, Some((Kind::Applied, false))),
            (Some(ApplyFailed), 3, Some((&failed_b, recent)), Applied, Some((Kind::Applied, false))),
            (Some(ApplyFailed), 1, None, UpToDate, Some((Kind::Recovered, false))),
            (Some(FetchFailed), 5, None, UpToDate, Some((Kind::Recovered, false))),
            (Some(UpToDate), 0, None, FetchFailed, Some((Kind::FetchFailed, false))),
            (None, 0, None, FetchFailed, Some((Kind::FetchFailed, false))),
            (Some(FetchFailed), 1, None, FetchFailed, None),
            (Some(ApplyFailed), 1, Some((&failed_b, recent)), FetchFailed, None),
            (Some(UpToDate), 0, None, ApplyFailed, Some((Kind::ApplyFailed, false))),
            (Some(ApplyFailed), 1, Some((&failed_b, recent)), ApplyFailed, None),
            (Some(ApplyFailed), 9, Some((&failed_b, hour_ago)), ApplyFailed, Some((Kind::ApplyFailed, true))),
            (Some(ApplyFailed), 9, Some((&failed_b, future)), ApplyFailed, Some((Kind::ApplyFailed, true))),
            (Some(ApplyFailed), 9, Some((&failed_b, "garbage")), ApplyFailed, Some((Kind::ApplyFailed, true))),
            (Some(Refused), 1, Some((&refused_b, recent)), ApplyFailed, Some((Kind::ApplyFailed, false))),
            (Some(UpToDate), 0, None, Refused, Some((Kind::Refused, false))),
            (Some(Refused), 4, Some((&refused_b, recent)), Refused, None),
            (Some(Refused), 4, Some((&refused_b, hour_ago)), Refused, Some((Kind::Refused, true))),
            (Some(UpToDate), 0, None, Untrusted, Some((Kind::Untrusted, false))),
            (Some(UpToDate), 0, None, ConfigError, Some((Kind::ConfigError, false))),
            (Some(ConfigError), 1, Some(("config-error:it broke", recent)), ConfigError, None),
            (Some(ConfigError), 1, Some(("config-error:other", recent)), ConfigError, Some((Kind::ConfigError, false))),
            (Some(UpToDate), 0, None, Unknown, None),
        ];
        for (i, (was, failures, told, outcome, want)) in table.into_iter().enumerate() {
            let before = state(was, failures, told);
            let after = state(Some(outcome), 0, told);
            let got = tell(&before, &after, now).map(|t| (t.kind, t.reminder));
            assert_eq!(got, want, "row {i}: {was:?} → {outcome:?}");
        }
    }

    #[test]
    fn a_pass_killed_while_applying_counts_as_a_failure_before() {
        let now = time::macros::datetime!(2026-12-02 10:00:00 UTC);
        let mut before = state(Some(Outcome::UpToDate), 0, None);
        before.in_progress = Some(crate::pass::state::InProgress {
            commit: B.into(),
            started_at: "2026-12-02T09:55:00Z".into(),
            pid: 1,
            log: None,
            reverting_to: None,
        });
        let after = state(Some(Outcome::UpToDate), 0, None);
        assert_eq!(
            tell(&before, &after, now).map(|t| t.kind),
            Some(Kind::Recovered)
        );
    }

    #[test]
    fn events_name_the_commit_they_are_about() {
        let before = state(Some(Outcome::UpToDate), 0, None);
        let failed = state(Some(Outcome::ApplyFailed), 1, None);
        let facts = || Facts {
            id: "0123".into(),
            host: "web-1".into(),
            exit_code: 4,
            ..Facts::default()
        };
        let telling = Telling {
            kind: Kind::ApplyFailed,
            reminder: false,
        };
        let event = build(telling, &before, &failed, facts());
        assert_eq!(event.commit.as_deref(), Some(B));
        assert_eq!(event.subject.as_deref(), Some("second"));
        assert_eq!(event.previous_commit.as_deref(), Some(A));
        assert_eq!(event.attempt, Some(2));
        assert_eq!(event.duration_seconds, 1.5);
        assert_eq!(event.outcome, "apply-failed");
        assert_eq!(event.error.as_deref(), Some("it broke"));

        let mut applied = state(Some(Outcome::Applied), 0, None);
        applied.applied.as_mut().unwrap().commit = B.into();
        let telling = Telling {
            kind: Kind::Applied,
            reminder: false,
        };
        let event = build(telling, &before, &applied, facts());
        assert_eq!(event.commit.as_deref(), Some(B));
        assert_eq!(event.previous_commit.as_deref(), Some(A));
        assert_eq!(event.attempt, None);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event"], "applied");
        assert_eq!(json["version"], 1);
    }

    #[test]
    fn a_stale_tip_is_told_once_per_tip() {
        let stale = |commit: &str| crate::pass::state::Stale {
            commit: commit.into(),
            committed_at: "2026-11-01T00:00:00Z".into(),
            max_age_seconds: 86400,
        };
        let (a, b) = (stale("a"), stale("b"));
        #[rustfmt::skip]
        let table = [
            (None,     None,     false),
            (None,     Some(&a), true),
            (Some(&a), Some(&a), false),
            (Some(&a), Some(&b), true),
            (Some(&a), None,     false),
        ];
        for (before, after, want) in table {
            assert_eq!(stale_is_news(before, after), want, "{before:?} {after:?}");
        }
    }

    #[test]
    fn a_failure_names_the_commit_that_failed_even_when_the_tip_is_another() {
        const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
        let with = |commit: &str, outcome: Option<Outcome>| {
            let mut after = state(Some(Outcome::ApplyFailed), 1, None);
            // The branch's tip is C; the pending record is `commit`'s.
            after.last_pass.as_mut().unwrap().remote_commit = Some(C.into());
            let pending = after.pending.as_mut().unwrap();
            pending.commit = commit.into();
            pending.outcome = outcome;
            after
        };
        #[rustfmt::skip]
        let table: &[(&str, Option<Outcome>, Kind, &str)] = &[
            // pending  its outcome               event             named
            // the applied commit run again while the tip waits (--apply always)
            (A,         None,                     Kind::ApplyFailed, A),
            // a reverted commit held back while the branch moves elsewhere (--watch)
            (B,         Some(Outcome::Reverted),  Kind::Reverted,    B),
            // a stale record of a commit the branch moved past: the tip
            (B,         None,                     Kind::ApplyFailed, C),
        ];
        for (commit, outcome, kind, named) in table {
            let (got, _, _) = subject_of(*kind, &with(commit, *outcome));
            assert_eq!(
                got.as_deref(),
                Some(*named),
                "{commit} {outcome:?} {kind:?}"
            );
        }
    }
}
