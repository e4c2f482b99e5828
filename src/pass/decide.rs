//! The decision of a pass, from the facts alone: a pure function, tested as a table.

use super::state::Pending;
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

/// The decision of the pass, from the facts alone. `pending` is the commit that failed last.
pub fn decide(
    relation: Relation,
    tip: &str,
    pending: Option<&Pending>,
    apply: ApplyPolicy,
    allow_rewind: bool,
) -> Action {
    let attempt = match pending {
        Some(p) if p.commit == tip => p.attempts.saturating_add(1),
        _ => 1,
    };
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
        })
    }

    #[test]
    fn decision_table() {
        #[rustfmt::skip]
        let table: &[(Relation, Option<Pending>, ApplyPolicy, bool, Action)] = &[
            // relation  pending           policy    rewind  action
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
            let got = decide(*relation, TIP, pending.as_ref(), *policy, *rewind);
            assert_eq!(
                got, *expected,
                "{relation:?} {pending:?} {policy:?} rewind={rewind}"
            );
        }
    }
}
