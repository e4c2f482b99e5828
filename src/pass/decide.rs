//! The decision of a pass, from the facts alone: a pure function, tested as a table.

use super::state::{Pending, Stale};
use crate::config::ApplyPolicy;
use crate::git::Relation;

/// What a pass does once it knows where the remote stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing to run.
    UpToDate,
    /// Run the entry point on the tip; `attempt` counts tries of this commit, from 1.
    Apply { attempt: u32, reason: Reason },
    /// The tip does not descend from the applied commit and rewinds are not allowed.
    Refuse,
    /// The tip is the commit `--on-failure revert` took the machine back from: nothing runs
    /// until the branch moves or `--retry-reverted` has passed.
    HeldBack,
}

/// Why the entry point runs, for the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    FirstApply,
    NewCommit,
    Retry,
    Always,
    Rewind,
}

impl Reason {
    /// GITOPS_REASON, as the entry point sees it: apply, retry or always (revert is the
    /// revert's own).
    pub fn as_env(self) -> &'static str {
        match self {
            Reason::FirstApply | Reason::NewCommit | Reason::Rewind => "apply",
            Reason::Retry => "retry",
            Reason::Always => "always",
        }
    }
}

/// The decision of the pass, from the facts alone. `pending` is the commit that failed last;
/// `held` says it is a reverted commit still held back (see `health::held_back`).
pub fn decide(
    relation: Relation,
    tip: &str,
    pending: Option<&Pending>,
    held: bool,
    apply: ApplyPolicy,
    allow_rewind: bool,
) -> Action {
    let attempt = match pending {
        Some(p) if p.commit == tip => p.attempts.saturating_add(1),
        _ => 1,
    };
    // A rewind is refused whatever was reverted: the refusal is about the branch, not the commit.
    let refused = relation == Relation::Diverged && !allow_rewind;
    if held && attempt > 1 && relation != Relation::Same && !refused {
        return Action::HeldBack;
    }
    let retry_or = |reason| if attempt > 1 { Reason::Retry } else { reason };
    match relation {
        Relation::Same if apply == ApplyPolicy::Always => Action::Apply {
            attempt,
            reason: Reason::Always,
        },
        Relation::Same => Action::UpToDate,
        Relation::Fresh => Action::Apply {
            attempt,
            reason: retry_or(Reason::FirstApply),
        },
        Relation::Descends => Action::Apply {
            attempt,
            reason: retry_or(Reason::NewCommit),
        },
        Relation::Diverged if allow_rewind => Action::Apply {
            attempt,
            reason: retry_or(Reason::Rewind),
        },
        Relation::Diverged => Action::Refuse,
    }
}

/// The commit the tip must descend from: state.json's (`in_state`), or the store's record of the
/// applied commit when state.json lost it or is an older copy (`record_is_newer`: the record
/// descends from state.json's commit). A record behind state.json (its write failed) or on
/// another history (state.json is the operator's) does not count.
pub fn floor<T: PartialEq + Copy>(
    in_state: Option<T>,
    recorded: Option<T>,
    record_is_newer: bool,
) -> Option<T> {
    match (in_state, recorded) {
        (None, Some(r)) => Some(r),
        (Some(a), Some(r)) if a != r && record_is_newer => Some(r),
        _ => in_state,
    }
}

/// Whether the tip, committed at `committed_at`, is older than `max_age`. A tip whose time
/// cannot be read is not called stale: the message would be a guess.
pub fn stale(
    tip: &str,
    committed_at: Option<String>,
    max_age: std::time::Duration,
    now: time::OffsetDateTime,
) -> Option<Stale> {
    let committed_at = committed_at?;
    let at = time::OffsetDateTime::parse(
        &committed_at,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    let age = now - at;
    (age > max_age).then(|| Stale {
        commit: tip.to_string(),
        committed_at,
        max_age_seconds: max_age.as_secs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use ApplyPolicy::{Always, OnChange};
    use Relation::*;

    const TIP: &str = "1111111111111111111111111111111111111111";
    const OTHER: &str = "2222222222222222222222222222222222222222";

    fn pending(commit: &str, attempts: u32) -> Option<Pending> {
        Some(Pending {
            commit: commit.into(),
            attempts,
            last_error: "x".into(),
            log: None,
            subject: None,
            ..Default::default()
        })
    }

    #[test]
    fn decision_table() {
        #[rustfmt::skip]
        let table: &[(Relation, Option<Pending>, ApplyPolicy, bool, Action)] = &[
            // relation  pending           policy    rewind  action (the commit not held back)
            (Same,       None,             OnChange, false, UpToDate),
            (Same,       pending(OTHER, 3), OnChange, false, UpToDate),
            (Same,       None,             Always,   false, Apply { attempt: 1, reason: Reason::Always }),
            (Same,       pending(TIP, 1),  Always,   false, Apply { attempt: 2, reason: Reason::Always }),
            (Fresh,      None,             OnChange, false, Apply { attempt: 1, reason: Reason::FirstApply }),
            (Fresh,      pending(TIP, 2),  OnChange, false, Apply { attempt: 3, reason: Reason::Retry }),
            (Descends,   None,             OnChange, false, Apply { attempt: 1, reason: Reason::NewCommit }),
            (Descends,   pending(TIP, 1),  OnChange, false, Apply { attempt: 2, reason: Reason::Retry }),
            (Descends,   pending(OTHER, 5), OnChange, false, Apply { attempt: 1, reason: Reason::NewCommit }),
            (Descends,   None,             Always,   false, Apply { attempt: 1, reason: Reason::NewCommit }),
            (Diverged,   None,             OnChange, false, Refuse),
            (Diverged,   pending(TIP, 1),  Always,   false, Refuse),
            (Diverged,   None,             OnChange, true,  Apply { attempt: 1, reason: Reason::Rewind }),
            (Diverged,   pending(TIP, 1),  OnChange, true,  Apply { attempt: 2, reason: Reason::Retry }),
        ];
        for (relation, pending, policy, rewind, expected) in table {
            let got = decide(*relation, TIP, pending.as_ref(), false, *policy, *rewind);
            assert_eq!(
                got, *expected,
                "{relation:?} {pending:?} {policy:?} rewind={rewind}"
            );
        }
    }

    #[test]
    fn a_held_back_commit_runs_nothing_until_the_branch_moves() {
        #[rustfmt::skip]
        let table: &[(Relation, Option<Pending>, ApplyPolicy, bool, Action)] = &[
            // relation  pending           policy    rewind  action (the pending commit held back)
            (Descends,   pending(TIP, 1),  OnChange, false, HeldBack),
            (Fresh,      pending(TIP, 2),  OnChange, false, HeldBack),
            (Descends,   pending(TIP, 1),  Always,   false, HeldBack),
            (Diverged,   pending(TIP, 1),  OnChange, true,  HeldBack),
            // the branch moved on: the new tip is applied
            (Descends,   pending(OTHER, 1), OnChange, false, Apply { attempt: 1, reason: Reason::NewCommit }),
            // back at the applied commit (the bad one was force-pushed away): nothing to do
            (Same,       pending(TIP, 1),  OnChange, false, UpToDate),
            (Same,       pending(TIP, 1),  Always,   false, Apply { attempt: 2, reason: Reason::Always }),
            // a rewind is refused, held back or not
            (Diverged,   pending(TIP, 1),  OnChange, false, Refuse),
        ];
        for (relation, pending, policy, rewind, expected) in table {
            let got = decide(*relation, TIP, pending.as_ref(), true, *policy, *rewind);
            assert_eq!(
                got, *expected,
                "{relation:?} {pending:?} {policy:?} rewind={rewind}"
            );
        }
    }

    #[test]
    fn a_tip_is_stale_only_when_older_than_the_limit() {
        let now = time::macros::datetime!(2026-12-10 12:00 UTC);
        let week = std::time::Duration::from_secs(7 * 86400);
        #[rustfmt::skip]
        let table: &[(Option<&str>, bool)] = &[
            (Some("2026-12-03T12:00:00Z"), false), // exactly the limit
            (Some("2026-12-03T11:59:59Z"), true),
            (Some("2026-12-09T12:00:00Z"), false),
            (Some("2027-01-01T00:00:00Z"), false), // from the future: not stale
            (Some("not a time"), false),
            (None, false),
        ];
        for (at, want) in table {
            let got = stale(TIP, at.map(String::from), week, now);
            assert_eq!(got.is_some(), *want, "{at:?}");
            if let Some(s) = got {
                assert_eq!((s.commit.as_str(), s.max_age_seconds), (TIP, 7 * 86400));
            }
        }
    }

    #[test]
    fn the_floor_is_state_json_unless_the_store_knows_better() {
        type Row = (Option<u8>, Option<u8>, bool, Option<u8>);
        #[rustfmt::skip]
        let table: &[Row] = &[
            // state    record   record newer  floor
            (None,     None,    false,        None),
            (Some(1),  None,    false,        Some(1)),
            (None,     Some(2), false,        Some(2)), // state.json lost
            (Some(1),  Some(1), false,        Some(1)),
            (Some(1),  Some(2), true,         Some(2)), // state.json restored from an old copy
            (Some(2),  Some(1), false,        Some(2)), // the record's write failed
        ];
        for (state, record, newer, want) in table {
            assert_eq!(
                floor(*state, *record, *newer),
                *want,
                "{state:?} {record:?} {newer}"
            );
        }
    }
}
