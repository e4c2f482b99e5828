//! Whether this machine runs a new commit now: the decision, from facts alone, that
//! `--watch` and `.gitops/rollout` put between "the branch moved" and "apply".

use time::OffsetDateTime;

/// What the machine does with a tip it would otherwise apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Run,
    /// The pending commit was reverted and is held back, and the tip changes nothing else the
    /// machine reads: the tip is that commit again, as far as this machine can tell.
    Held,
    /// Nothing it watches changed: nothing runs, and the tip is recorded as seen.
    Skip,
    /// Its rollout wave has not come yet: nothing runs until `at`.
    Wait {
        wave: usize,
        waves: usize,
        at: OffsetDateTime,
    },
}

/// Where the commit stands in its rollout, for this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// The commit changes .gitops/rollout itself: it goes to every machine at once, so that a
    /// broken rollout can always be fixed.
    pub changes_rollout: bool,
    /// This machine's wave (from 0) of `waves`.
    pub wave: usize,
    pub waves: usize,
    /// When this machine's wave begins.
    pub due: OffsetDateTime,
}

/// The facts the gate decides from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Whether the commit may be held at all: a new commit, a retry or an allowed rewind over
    /// an applied one. A first apply (a machine being built needs its configuration) and
    /// `--apply always` on the applied commit are never held.
    pub gated: bool,
    /// Whether a watched path changed; None when the whole tree is watched.
    pub watched_changed: Option<bool>,
    /// None when the commit has no .gitops/rollout.
    pub rollout: Option<Rollout>,
    /// The commit changes nothing but this machine's own hosts/<host>/: it is addressed to this
    /// machine alone, so no wave holds it back.
    pub own_only: bool,
    /// A reverted commit is held back (`health::held_back`) and the tip differs from it in
    /// nothing the machine reads.
    pub held_unchanged: bool,
    /// `--apply always`: the entry point runs every pass, so a tip that changes nothing the
    /// machine reads is run, not skipped (in a busy repository, another host's commit before
    /// every pass would otherwise keep it from ever running).
    pub always: bool,
}

/// The gate from the facts: nothing held unless gated; a reverted commit's change again, held;
/// nothing watched changed, skip (run under --apply always); the wave not begun (and the
/// commit neither the rollout's nor this machine's alone), wait.
pub fn decide(facts: &Facts, now: OffsetDateTime) -> Gate {
    if !facts.gated {
        return Gate::Run;
    }
    if facts.held_unchanged {
        return Gate::Held;
    }
    if facts.watched_changed == Some(false) {
        return match facts.always {
            true => Gate::Run,
            false => Gate::Skip,
        };
    }
    match &facts.rollout {
        Some(r) if !r.changes_rollout && !facts.own_only && r.due > now => Gate::Wait {
            wave: r.wave,
            waves: r.waves,
            at: r.due,
        },
        _ => Gate::Run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-03 12:00 UTC);

    fn rollout(changes_rollout: bool, wave: usize, due: OffsetDateTime) -> Option<Rollout> {
        Some(Rollout {
            changes_rollout,
            wave,
            waves: 4,
            due,
        })
    }

    #[test]
    fn gate_table() {
        let later = datetime!(2026-12-03 12:30 UTC);
        let earlier = datetime!(2026-12-03 11:30 UTC);
        let wait = Gate::Wait {
            wave: 2,
            waves: 4,
            at: later,
        };
        #[rustfmt::skip]
        let table: &[(bool, Option<bool>, Option<Rollout>, Gate)] = &[
            // gated  watched changed  rollout                          gate (not own only)
            (false,   Some(false),     rollout(false, 2, later),        Gate::Run),
            (true,    None,            None,                            Gate::Run),
            (true,    Some(true),      None,                            Gate::Run),
            (true,    Some(false),     None,                            Gate::Skip),
            // nothing watched changed: no need to wait for the wave either
            (true,    Some(false),     rollout(false, 2, later),        Gate::Skip),
            (true,    None,            rollout(false, 2, later),        wait),
            (true,    Some(true),      rollout(false, 2, later),        wait),
            (true,    Some(true),      rollout(false, 2, earlier),      Gate::Run),
            (true,    Some(true),      rollout(false, 0, NOW),          Gate::Run),
            // a commit that changes the rollout goes everywhere at once
            (true,    Some(true),      rollout(true, 3, later),         Gate::Run),
        ];
        for (gated, watched_changed, rollout, expected) in table {
            let facts = Facts {
                gated: *gated,
                watched_changed: *watched_changed,
                rollout: rollout.clone(),
                own_only: false,
                held_unchanged: false,
                always: false,
            };
            assert_eq!(decide(&facts, NOW), *expected, "{facts:?}");
        }
    }

    #[test]
    fn a_commit_to_the_machines_own_directory_waits_for_no_wave() {
        let later = datetime!(2026-12-03 12:30 UTC);
        let facts = |own_only, watched_changed| Facts {
            gated: true,
            watched_changed,
            rollout: rollout(false, 2, later),
            own_only,
            held_unchanged: false,
            always: false,
        };
        assert_eq!(decide(&facts(true, Some(true)), NOW), Gate::Run);
        assert_eq!(decide(&facts(true, None), NOW), Gate::Run);
        assert!(matches!(
            decide(&facts(false, Some(true)), NOW),
            Gate::Wait { .. }
        ));
    }

    #[test]
    fn a_reverted_change_is_held_and_always_runs_what_it_would_skip() {
        let later = datetime!(2026-12-03 12:30 UTC);
        let wait = Gate::Wait {
            wave: 1,
            waves: 4,
            at: later,
        };
        #[rustfmt::skip]
        type Row = (bool, bool, Option<bool>, Option<Rollout>, Gate);
        let table: &[Row] = &[
            // held  always  watched changed  rollout                    gate
            (true, false, Some(true), None, Gate::Held),
            (true, true, Some(true), rollout(false, 1, later), Gate::Held),
            (false, true, Some(false), None, Gate::Run),
            (false, false, Some(false), None, Gate::Skip),
            // --apply always waits for the wave like any apply (the pass runs the applied
            // commit meanwhile)
            (false, true, Some(true), rollout(false, 1, later), wait),
        ];
        for (held, always, watched_changed, rollout, expected) in table {
            let facts = Facts {
                gated: true,
                watched_changed: *watched_changed,
                rollout: rollout.clone(),
                own_only: false,
                held_unchanged: *held,
                always: *always,
            };
            assert_eq!(decide(&facts, NOW), *expected, "{facts:?}");
        }
    }
}
