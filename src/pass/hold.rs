//! Passes that run nothing new: a tip that changes nothing this machine reads (skipped), one
//! waiting for the machine's rollout wave, and a reverted commit held back. Each keeps the
//! applied tree linked and says why.

use time::OffsetDateTime;

use super::commit::repair_checkout;
use super::health;
use super::run::{committed_at_of, Staged};
use super::state::{self, Layout, Outcome, State};
use crate::config::Settings;
use crate::exit::{fail, Exit};
use crate::git::{self, tree as checkout};
use crate::report::text::{one_line, rfc3339, shown};

/// The pending commit was reverted and is held back: nothing runs, the applied tree stays
/// linked, and the pass says why (exit 1). `tip` is the branch's: the pending commit itself,
/// or a later one that changes nothing else the machine reads (`--watch`).
pub(super) fn held_back(
    settings: &Settings,
    layout: &Layout,
    state: &mut State,
    tip: &str,
    entry_umask: nix::sys::stat::Mode,
) -> Staged<Outcome> {
    let pending = state.pending.clone().unwrap_or_default();
    let short = pending.commit.get(..12).unwrap_or(&pending.commit);
    let outcome = pending.outcome.unwrap_or(Outcome::Reverted);
    let at = pending.reverted_at.as_deref().unwrap_or("an earlier pass");
    let applied = state.applied.as_ref().map(|a| a.commit.clone());
    let back = applied.as_deref().map_or("", |a| a.get(..12).unwrap_or(a));
    let retry = settings.health.retry_reverted;
    let hold = health::held_until(retry, pending.reverted_at.as_deref());
    let since = match tip == pending.commit {
        true => String::new(),
        false => format!(
            " (the branch's tip {} changes nothing else this machine reads)",
            tip.get(..12).unwrap_or(tip)
        ),
    };
    let why = match outcome {
        Outcome::RevertFailed => format!(
            "{short} failed and reverting to {back} failed too (at {at}); nothing runs {hold}{since}: repair the machine, then push a fix"
        ),
        _ => format!(
            "{short} failed and was reverted to {back} at {at}; it is held back {hold}{since}: push a fix{}",
            match retry {
                health::RetryReverted::Never => " (or pass --retry-reverted to try it again)",
                health::RetryReverted::After(_) => "",
            }
        ),
    };
    // The applied tree stays linked, as on a pass with nothing new.
    if let Some(applied) = &applied {
        if let Err(e) = repair_checkout(settings, layout, applied, entry_umask) {
            say!("gitops: warning: {}", one_line(&e));
        }
    }
    // A revert killed halfway left half a tree (.new-<commit>, as large as the tree),
    // which only an apply would sweep: a commit is held back for days.
    let linked = checkout::linked_tree_name(&settings.checkout).unwrap_or_default();
    let keep = [
        applied.as_deref().unwrap_or_default(),
        &pending.commit,
        tip,
        &linked,
    ];
    if let Err(e) = checkout::prune(&layout.trees(), &keep) {
        say!("gitops: warning: {}", one_line(&e));
    }
    Err((outcome, fail(Exit::ApplyFailed, why)))
}

/// A tip that changes nothing this machine watches: nothing runs, the applied tree stays
/// linked, and the tip is recorded as seen (what the next one must descend from).
#[allow(clippy::too_many_arguments)]
pub(super) fn skip(
    settings: &Settings,
    layout: &Layout,
    state: &mut State,
    repo: &gix::Repository,
    fetched: &git::Fetched,
    applied: Option<gix::ObjectId>,
    committed_at: Option<String>,
    entry_umask: nix::sys::stat::Mode,
    now: OffsetDateTime,
) -> Outcome {
    let tip = fetched.tip.to_string();
    let applied = stay_on_applied(settings, layout, state, applied, entry_umask);
    let why = crate::fleet::watch::skip_why(&settings.watch, &settings.identity);
    say!(
        "gitops: skipped {} ({}): {why}; {} stays applied",
        tip.get(..12).unwrap_or(&tip),
        fetched.branch,
        applied.get(..12).unwrap_or(&applied)
    );
    state.pending = None;
    state.seen = Some(state::Seen {
        commit: tip,
        applied,
        seen_at: rfc3339(now),
        subject: git::subject(repo, fetched.tip).map(|s| shown(&s)),
        why,
        committed_at: committed_at.or_else(|| committed_at_of(repo, fetched.tip)),
        scope: Some(super::observe::scope_key(settings)),
    });
    Outcome::UpToDate
}

/// A tip whose rollout wave has not come for this machine: recorded (status and plan say when
/// it applies) and said. `since`: when this machine first saw it wait.
pub(super) fn note_wait(
    state: &mut State,
    repo: &gix::Repository,
    fetched: &git::Fetched,
    (wave, waves, at, since): (usize, usize, OffsetDateTime, OffsetDateTime),
) {
    let tip = fetched.tip.to_string();
    let at = rfc3339(at);
    say!(
        "gitops: waiting for wave {wave} at {at}: {} ({}) is applied here then (this machine's wave of 0 to {})",
        tip.get(..12).unwrap_or(&tip),
        fetched.branch,
        waves.saturating_sub(1),
    );
    // A failed commit the branch has moved past is no longer anyone's to retry.
    if state.pending.as_ref().is_some_and(|p| p.commit != tip) {
        state.pending = None;
    }
    state.waiting = Some(state::Waiting {
        subject: git::subject(repo, fetched.tip).map(|s| shown(&s)),
        commit: tip,
        wave,
        waves,
        at,
        since: Some(rfc3339(since)),
    });
}

/// The applied commit (`applied`: state.json's, or the store's record when state.json lost
/// it), whose tree stays linked on a pass that runs nothing new: set right when the link or
/// the tree is not as it should be; a failure to is a warning, since nothing runs.
pub(super) fn stay_on_applied(
    settings: &Settings,
    layout: &Layout,
    state: &State,
    applied: Option<gix::ObjectId>,
    entry_umask: nix::sys::stat::Mode,
) -> String {
    let applied = state
        .applied
        .as_ref()
        .map(|a| a.commit.clone())
        .or_else(|| applied.map(|a| a.to_string()))
        .unwrap_or_default();
    if applied.is_empty() {
        return applied;
    }
    if let Err(e) = repair_checkout(settings, layout, &applied, entry_umask) {
        say!("gitops: warning: {}", one_line(&e));
    }
    applied
}
