//! One pass, orchestrated: lock, fetch, decide, apply, record.

use std::os::fd::RawFd;
use std::path::Path;

use anyhow::Result;
use time::OffsetDateTime;

use super::apply;
use super::commit::{
    apply_commit, create_log, heal_store, repair_checkout, revert, Progress, Target,
    APPLIED_TREE_WRITE_FAILED, TREE_WRITE_FAILED,
};
use super::decide::{Action, Reason};
use super::guard;
use super::health;
use super::hold::{held_back, note_wait, skip, stay_on_applied};
use super::lock::Held;
use super::observe::{gate, next_action, observe, Observed};
use super::state::{self, Applied, InProgress, LastPass, Layout, Outcome, Pending, State};
use crate::config::Settings;
use crate::exit::{fail, Exit, ResultExt};
use crate::fleet::gate::Gate;
use crate::git::{self, tree as checkout};
use crate::report::notify;
use crate::report::text::{one_line, rfc3339, shown};

/// One pass. Holds the lock throughout, records its outcome in state.json whatever happens after
/// the lock is taken, and returns the error that decides the exit code.
pub fn run(settings: &Settings, now: &dyn Fn() -> OffsetDateTime) -> Result<()> {
    // Our files are private; the entry point gets back the umask we were started with, so the
    // files it writes (an /etc/motd, say) get the modes an administrator's shell would give.
    let entry_umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    crate::signals::install();
    let layout = Layout::new(&settings.state_dir);
    guard::check_private(&layout)?;
    layout.create()?;
    let (lock, waited) = layout.lock(settings.lock_timeout)?;
    let lock = Held::new(lock);
    // Again after a wait for the lock, which can be long: what is run must come from the
    // directory that was checked. (Taken at once, there was no time for a change: the check
    // just made holds, and the usual pass does not pay for it twice.)
    if waited {
        guard::check_private(&layout)?;
    }
    let mut state = state::load(&layout)?;
    if let Err(e) = state::prune_corrupt(&layout, state::KEEP_CORRUPT) {
        say!("gitops: warning: {e:#}");
    }
    // The state as the last pass left it: what the notifications compare this pass with.
    let before = state.clone();
    let killed = take_unfinished(&mut state, &rfc3339(now()));
    let loaded = (state.applied.clone(), state.pending.clone());
    let started_at = rfc3339(now());
    let clock = std::time::Instant::now();

    let mut remote_commit = None;
    let result = pass(
        settings,
        &layout,
        &mut state,
        &mut remote_commit,
        entry_umask,
        lock.fd(),
        now,
    );
    let outcome = match &result {
        Ok(outcome) => *outcome,
        Err((outcome, _)) => *outcome,
    };
    state.repo_url = Some(settings.repo_url.redacted.clone());
    state.consecutive_failures = if outcome.is_success() {
        0
    } else {
        state.consecutive_failures.saturating_add(1)
    };
    count_pass(&mut state, outcome);
    state.last_pass = Some(LastPass {
        started_at,
        finished_at: rfc3339(now()),
        outcome,
        remote_commit,
        error: result.as_ref().err().map(|(_, e)| one_line(e)),
        duration_ms: Some(clock.elapsed().as_millis().try_into().unwrap_or(u64::MAX)),
    });
    if outcome.is_success() {
        state.last_success_at = state.last_pass.as_ref().map(|p| p.finished_at.clone());
    }
    state.in_progress = None;
    let exit_code = match &result {
        Ok(_) => 0,
        Err((_, e)) => i32::from(crate::exit::code_of(e)),
    };
    if let Err(e) = notify::queue_for_pass(
        &layout,
        Some(&settings.notifier),
        &before,
        &mut state,
        exit_code,
        now(),
    ) {
        say!(
            "gitops: warning: could not queue this pass's notification: {}",
            one_line(&e)
        );
    }
    if let Some(stale) = &state.stale {
        let why = stale_error(stale, now());
        say!("gitops: warning: {why}");
        if notify::event::stale_is_news(before.stale.as_ref(), Some(stale)) {
            let queued = notify::deliver::queue_event(
                &layout,
                &settings.notifier,
                &mut state,
                notify::event::Kind::Stale,
                &why,
                now(),
            );
            if let Err(e) = queued {
                say!(
                    "gitops: warning: could not queue the stale branch's notification: {}",
                    one_line(&e)
                );
            }
        }
    }
    let changed = killed || loaded != (state.applied.clone(), state.pending.clone());
    if let Err(e) = state::save(&layout, &state, changed) {
        let e = match e.chain().find_map(|c| c.downcast_ref::<std::io::Error>()) {
            Some(io) if io.raw_os_error() == Some(nix::libc::ENOSPC) => e.context(fail(
                Exit::Internal,
                "could not record this pass: the disk holding the state directory (--state-dir) is full; free space on it",
            )),
            _ => e,
        };
        // A pass that failed keeps its own exit code and error line; the record's failure is
        // said beside it.
        return match result {
            Err((_, pass_error)) => {
                say!("gitops: warning: {}", one_line(&e));
                Err(pass_error)
            }
            Ok(_) => Err(e),
        };
    }
    // The store's packs, consolidated when fetches left too many: after the record, so a kill
    // here costs the pass nothing; only after a fetch that worked, on a store it just read.
    if state
        .last_pass
        .as_ref()
        .is_some_and(|p| p.remote_commit.is_some())
    {
        let applied = state.applied.as_ref().map(|a| a.commit.as_str());
        let pending = state.pending.as_ref().map(|p| p.commit.as_str());
        git::pack::after_pass(&layout.repo(), settings, applied, pending);
    }
    let reboot_due = plan_reboot(settings, &layout, &mut state, now());
    // Under the lock, so two passes never send the same event; after the record, so a receiver
    // that hangs cannot cost the pass its outcome.
    if !settings.notifier.is_empty() {
        send_notifications(&layout, &settings.notifier, &mut state, now());
    }
    // The metrics from what was just recorded and delivered, still under the lock so that the
    // last pass's file is the one left; a failure to write them is a warning, never the pass's
    // outcome.
    crate::report::metrics::after_pass(settings, &layout, &state, now());
    // Released here, not only when the descriptor closes: a daemon the entry point left
    // running holds a copy of it and must not keep later passes out.
    drop(lock);
    if reboot_due {
        // Recorded as asked (durably) before this: whatever happens now, never asked again in
        // this boot. A command that fails is said; the next pass reports it and tells it.
        if let Err(why) = crate::reboot::act::run_command(&settings.reboot.reboot_command) {
            say!("gitops: error: {why}");
        }
    }
    result.map(|_| ()).map_err(|(_, e)| e)
}

/// The applied commit's reboot request, evaluated after every pass that has a commit applied
/// (a machine down for a week still reboots). Returns whether the reboot command is to run:
/// only once the reboot is recorded as asked, durably.
fn plan_reboot(
    settings: &Settings,
    layout: &Layout,
    state: &mut State,
    now: OffsetDateTime,
) -> bool {
    let was = state.reboot.clone();
    let (due, tell) = crate::reboot::act::for_pass(&settings.reboot, layout, state, now);
    if let Some((kind, why)) = tell {
        let queued =
            notify::deliver::queue_event(layout, &settings.notifier, state, kind, &why, now);
        if let Err(e) = queued {
            say!(
                "gitops: warning: could not queue the reboot's notification: {}",
                one_line(&e)
            );
        }
    }
    if state.reboot == was {
        return false;
    }
    // The copy beside state.json first: a reboot is asked for only once both are written.
    let recorded = match due {
        true => crate::reboot::act::write_marker(layout, state),
        false => Ok(()),
    };
    match recorded.and_then(|()| state::save(layout, state, due)) {
        Ok(()) => due,
        Err(e) => {
            say!(
                "gitops: error: not rebooting: the reboot could not be recorded first: {}",
                one_line(&e)
            );
            false
        }
    }
}

/// Deliver what waits in the outbox and record how that went. A notification never changes the
/// pass's exit code: its failure is a warning, and status shows it.
fn send_notifications(
    layout: &Layout,
    notifier: &notify::options::Notifier,
    state: &mut State,
    now: OffsetDateTime,
) {
    let was = state.notify.clone();
    let record = state.notify.get_or_insert_with(Default::default);
    notify::deliver(layout, notifier, record, now, notify::deliver::PER_PASS);
    if state.notify != was {
        if let Err(e) = state::save(layout, state, false) {
            say!("gitops: warning: {}", one_line(&e));
        }
    }
}

pub(super) type Staged<T> = std::result::Result<T, (Outcome, anyhow::Error)>;

fn pass(
    settings: &Settings,
    layout: &Layout,
    state: &mut State,
    remote_commit: &mut Option<String>,
    entry_umask: nix::sys::stat::Mode,
    lock_fd: RawFd,
    now: &dyn Fn() -> OffsetDateTime,
) -> Staged<Outcome> {
    let Observed {
        fetched,
        tip,
        in_state,
        recorded,
        applied_id,
        seen,
        relation,
        tip_committed_at,
        mut store,
    } = observe(settings, layout, state, remote_commit, now)?;
    let open_store = || -> Staged<gix::Repository> {
        git::open_store(&layout.repo(), settings).map_err(|e| (Outcome::FetchFailed, e))
    };
    let short = tip.get(..12).unwrap_or(&tip);
    let action = next_action(settings, state, relation, &tip, now());
    // Set again below while the tip still waits.
    let first_seen = super::observe::first_seen(state.waiting.take().as_ref(), &tip, now());
    // Whether an apply would run at all (--watch, the rollout, a reverted change): asked
    // before the suspension, which holds back only what would run. It only reads the store.
    let gate = match action {
        Action::Apply { reason, .. } => {
            let repo = match &store {
                Some(repo) => repo,
                None => store.insert(open_store().map_err(|(_, e)| (Outcome::ApplyFailed, e))?),
            };
            let gated = gate(
                settings,
                state,
                repo,
                applied_id,
                fetched.tip,
                reason,
                first_seen,
                now(),
            );
            gated
                .map_err(|why| (Outcome::ConfigError, fail(Exit::Usage, why)))?
                .0
        }
        _ => Gate::Run,
    };
    let always = settings.apply == crate::config::ApplyPolicy::Always;
    let (would_run, runs) = match (gate, action) {
        (Gate::Run, action) => (action, tip.clone()),
        // --apply always runs the applied commit while the tip waits: that one is what the
        // suspension holds back (no news), not the tip, which waits for its wave anyway.
        (Gate::Wait { .. }, Action::Apply { attempt, .. }) if always => (
            Action::Apply {
                attempt,
                reason: Reason::Always,
            },
            applied_id.map_or(tip.clone(), |a| a.to_string()),
        ),
        _ => (Action::UpToDate, tip.clone()),
    };
    if super::suspend::holds_back(settings, layout, state, &would_run, &runs, now()) {
        return Ok(Outcome::Suspended);
    }
    match action {
        Action::UpToDate => {
            state.pending = None;
            // The tip, or a later one that concerned nothing this machine watches: the
            // applied commit's tree is the one linked.
            let linked = match seen {
                Some(_) => state
                    .applied
                    .as_ref()
                    .map_or(tip.clone(), |a| a.commit.clone()),
                None => tip.clone(),
            };
            match seen {
                Some(_) if linked != tip => say!(
                    "gitops: up to date at {short} ({}): nothing this machine watches changed since {}",
                    fetched.branch,
                    linked.get(..12).unwrap_or(&linked)
                ),
                _ => say!("gitops: up to date at {short} ({})", fetched.branch),
            }
            let mut repaired = repair_checkout(settings, layout, &linked, entry_umask);
            // The applied tree, written again, could not be read out of a damaged store.
            if repaired
                .as_ref()
                .is_err_and(|e| e.to_string().starts_with(APPLIED_TREE_WRITE_FAILED))
                && heal_store(settings, layout, in_state, fetched.tip).is_some()
            {
                store = None;
                repaired = repair_checkout(settings, layout, &linked, entry_umask);
            }
            repaired.map_err(|e| {
                let outcome = match crate::exit::code_of(&e) {
                    Exit::Usage => Outcome::ConfigError,
                    _ => Outcome::ApplyFailed,
                };
                (outcome, e)
            })?;
            // A state directory from before the store kept its record: written once, here.
            if recorded.is_none() && in_state == Some(fetched.tip) {
                let recorded = match store.take() {
                    Some(repo) => Ok(repo),
                    None => open_store(),
                }
                .map_err(|(_, e)| e)
                .and_then(|repo| git::record_applied(&repo, fetched.tip));
                if let Err(e) = recorded {
                    say!("gitops: warning: {}", one_line(&e));
                }
            }
            Ok(Outcome::UpToDate)
        }
        Action::HeldBack => held_back(settings, layout, state, &tip, entry_umask),
        Action::Refuse => {
            let floor = seen
                .or(applied_id)
                .map(|a| a.to_string())
                .unwrap_or_default();
            let floor = floor.get(..12).unwrap_or(&floor);
            // Below a skipped tip, the commit the branch no longer holds is that one.
            let which = match seen {
                Some(_) => format!(
                    "the commit this machine last saw, {floor} (skipped here: it changed nothing this machine watches)"
                ),
                None => format!("the applied commit {floor}"),
            };
            Err((
                Outcome::Refused,
                fail(
                    Exit::Refused,
                    format!(
                        "refusing {short}: {} no longer descends from {which} (force-push or rollback); revert with a new commit, or pass --allow-rewind to apply it anyway",
                        fetched.branch,
                    ),
                ),
            ))
        }
        Action::Apply { attempt, reason } => {
            let repo = match store.take() {
                Some(repo) => repo,
                None => open_store().map_err(|(_, e)| (Outcome::ApplyFailed, e))?,
            };
            let repo = &repo;
            let signer = match &settings.trust {
                Some(trust) => Some(verify(repo, trust, applied_id, fetched.tip, now())?),
                None => None,
            };
            let mut rerun = false;
            // The applied commit's failed attempts, counted on by its run again under
            // --apply always: note_wait drops a pending commit that is not the tip.
            let applied_attempts = state
                .pending
                .as_ref()
                .filter(|p| {
                    applied_id.is_some()
                        && gix::ObjectId::from_hex(p.commit.as_bytes()).ok() == applied_id
                })
                .map(|p| p.attempts);
            match gate {
                Gate::Run => {}
                Gate::Held => return held_back(settings, layout, state, &tip, entry_umask),
                Gate::Wait { wave, waves, at } => {
                    note_wait(state, repo, &fetched, (wave, waves, at, first_seen));
                    if !always {
                        stay_on_applied(settings, layout, state, applied_id, entry_umask);
                        return Ok(Outcome::UpToDate);
                    }
                    rerun = true;
                }
                Gate::Skip => {
                    return Ok(skip(
                        settings,
                        layout,
                        state,
                        repo,
                        &fetched,
                        applied_id,
                        tip_committed_at,
                        entry_umask,
                        now(),
                    ));
                }
            }
            // --apply always while the tip waits for its wave: the applied commit runs again,
            // as on a pass with nothing new, held to today's signers as that one is.
            let (tip, target, attempt, reason, tip_committed_at, signer) = match (rerun, applied_id)
            {
                (true, Some(applied)) => {
                    let signer = match &settings.trust {
                        Some(trust) => Some(verify(repo, trust, Some(applied), applied, now())?),
                        None => None,
                    };
                    let applied_hex = applied.to_string();
                    let attempt = applied_attempts.map_or(1, |a| a.saturating_add(1));
                    let committed_at = state.applied.as_ref().and_then(|a| a.committed_at.clone());
                    (
                        applied_hex,
                        applied,
                        attempt,
                        Reason::Always,
                        committed_at,
                        signer,
                    )
                }
                _ => (
                    tip.clone(),
                    fetched.tip,
                    attempt,
                    reason,
                    tip_committed_at,
                    signer,
                ),
            };
            let short = tip.get(..12).unwrap_or(&tip);
            let what = match reason {
                Reason::FirstApply => "first apply",
                Reason::NewCommit => "new commit",
                Reason::Retry => "retry",
                Reason::Always => "--apply always",
                Reason::Rewind => "rewind allowed by --allow-rewind",
            };
            say!(
                "gitops: applying {short} ({}, {what}, attempt {attempt})",
                fetched.branch
            );
            let stamp = now()
                .format(time::macros::format_description!(
                    "[year][month][day]T[hour][minute][second]Z"
                ))
                .unwrap_or_default();
            // The log, then, durably, the record that this pass applies: a pass killed from
            // here on is reported as such by status, and the next pass retries the commit. A
            // failure of either (a full disk) is this commit's failed attempt, recorded as such.
            let prepared = create_log(&layout.logs(), &stamp, &tip)
                .and_then(|log| {
                    state.in_progress = Some(InProgress {
                        commit: tip.clone(),
                        started_at: rfc3339(now()),
                        pid: std::process::id(),
                        log: Some(log.display().to_string()),
                        reverting_to: None,
                    });
                    state::save(layout, state, true)?;
                    Ok(log)
                })
                .or_exit(Exit::ApplyFailed, || {
                    format!("could not start applying {short}")
                });
            let previous = state
                .applied
                .as_ref()
                .map(|a| a.commit.clone())
                .unwrap_or_default();
            let mut healed = None;
            let mut progress = Progress::default();
            let (log, result) = match prepared {
                Ok(log) => {
                    let target = Target {
                        commit: &tip,
                        previous: &previous,
                        reason: reason.as_env(),
                        branch: &fetched.branch,
                        log: &log,
                        umask: entry_umask,
                        lock_fd,
                    };
                    let mut result = apply_commit(settings, layout, repo, &target, &mut progress);
                    // A tree the store could not give whole: when the store is damaged, it is
                    // fetched again and the tree written from the fresh one, in this pass. The
                    // entry point has not run: the write comes before it.
                    if result
                        .as_ref()
                        .is_err_and(|e| e.to_string().starts_with(TREE_WRITE_FAILED))
                    {
                        if let Some(again) = heal_store(settings, layout, in_state, fetched.tip) {
                            let again = healed.insert(again);
                            result = apply_commit(settings, layout, again, &target, &mut progress);
                        }
                    }
                    if progress.apply_ms.is_some() {
                        state.last_apply_ms = progress.apply_ms;
                    }
                    // --on-failure revert: back to the applied commit, in this pass, once.
                    let back = health::revert_to(
                        settings.health.on_failure,
                        progress.switched,
                        state.applied.as_ref().map(|a| a.commit.as_str()),
                        &tip,
                        crate::signals::received().is_some(),
                    )
                    .map(str::to_string);
                    let result = match (result, back) {
                        (Err(e), Some(back)) => {
                            mark_reverting(layout, state, &back);
                            let (reverted, fresh) = revert(
                                settings,
                                layout,
                                healed.as_ref().unwrap_or(repo),
                                &back,
                                &target,
                                &e,
                                || heal_store(settings, layout, in_state, fetched.tip),
                                now(),
                            );
                            if fresh.is_some() {
                                healed = fresh;
                            }
                            Err((e, Some(reverted)))
                        }
                        (result, _) => result.map_err(|e| (e, None)),
                    };
                    (Some(log), result)
                }
                Err(e) => (None, Err((e, None))),
            };
            let repo = healed.as_ref().unwrap_or(repo);
            // The applied commit's log stays, however many failed retries came after it.
            let applied_log = state.applied.as_ref().and_then(|a| a.log.clone());
            let _ = apply::prune_logs(&layout.logs(), apply::KEEP_LOGS, applied_log.as_deref());
            // A log with nothing in it (the disk was full before a word was written) is not
            // named: status would point the operator at an empty file.
            let log_shown = log
                .filter(|l| std::fs::metadata(l).is_ok_and(|m| m.len() > 0))
                .map(|l| l.display().to_string());
            let subject = git::subject(repo, target).map(|s| shown(&s));
            let (e, reverted) = match result {
                Ok(()) => {
                    state.applied = Some(Applied {
                        commit: tip.clone(),
                        applied_at: rfc3339(now()),
                        log: log_shown,
                        subject,
                        committed_at: tip_committed_at.or_else(|| committed_at_of(repo, target)),
                        signer,
                        entrypoint: progress.entrypoint.clone(),
                    });
                    state.pending = None;
                    state.seen = None;
                    if let Err(e) = git::record_applied(repo, target) {
                        say!("gitops: warning: {}", one_line(&e));
                    }
                    if let Err(e) = checkout::prune(&layout.trees(), &[&tip]) {
                        say!("gitops: warning: {}", one_line(&e));
                    }
                    return Ok(Outcome::Applied);
                }
                Err(failed) => failed,
            };
            let back = previous.get(..12).unwrap_or(&previous);
            let reverted_at = rfc3339(now());
            let hold = health::held_until(settings.health.retry_reverted, Some(&reverted_at));
            let (outcome, e) = match reverted {
                None => {
                    let outcome = match crate::exit::code_of(&e) {
                        Exit::Usage => Outcome::ConfigError,
                        _ => Outcome::ApplyFailed,
                    };
                    (outcome, e)
                }
                Some(Ok(())) => {
                    say!("gitops: reverted to {back}; {short} is held back {hold}");
                    let e = e.context(crate::exit::Coded::new(
                        Exit::ApplyFailed,
                        format!("{short} failed and was reverted to {back} (held back {hold})"),
                    ));
                    (Outcome::Reverted, e)
                }
                Some(Err(again)) => {
                    let e = fail(
                        Exit::ApplyFailed,
                        format!(
                            "{short} failed and reverting to {back} failed too: {}; nothing more runs {hold}: repair the machine, then push a fix (the first failure: {})",
                            one_line(&again),
                            one_line(&e)
                        ),
                    );
                    (Outcome::RevertFailed, e)
                }
            };
            let was_reverted = matches!(outcome, Outcome::Reverted | Outcome::RevertFailed);
            state.pending = Some(Pending {
                commit: tip.clone(),
                attempts: attempt,
                last_error: one_line(&e),
                log: log_shown,
                subject,
                outcome: was_reverted.then_some(outcome),
                reverted_at: was_reverted.then_some(reverted_at),
            });
            // Whatever the link points at stays too: a failure before the switch must not
            // leave it dangling.
            let linked = checkout::linked_tree_name(&settings.checkout).unwrap_or_default();
            if let Err(e) = checkout::prune(&layout.trees(), &[&previous, &tip, &linked]) {
                say!("gitops: warning: {}", one_line(&e));
            }
            Err((outcome, e))
        }
    }
}

/// Record, durably, that the pass now reverts to `back`: killed during the revert, it is a
/// revert that did not finish, which the next pass holds back (see `take_unfinished`) rather
/// than trying the failed commit again. Unrecorded (a full disk), the revert runs all the same:
/// the machine comes first, and a kill then only costs one more try of the commit.
fn mark_reverting(layout: &Layout, state: &mut State, back: &str) {
    let Some(in_progress) = state.in_progress.as_mut() else {
        return;
    };
    in_progress.reverting_to = Some(back.to_string());
    if let Err(e) = state::save(layout, state, true) {
        say!(
            "gitops: warning: could not record that the revert starts: {}",
            one_line(&e)
        );
    }
}

/// A commit's committer time as state.json writes it.
pub(super) fn committed_at_of(repo: &gix::Repository, commit: gix::ObjectId) -> Option<String> {
    git::commit_time(repo, commit)
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .map(rfc3339)
}

/// Check the signatures --verify asks for; a refusal is the pass's outcome (exit 5), before
/// anything of the commit is written out or run.
fn verify(
    repo: &gix::Repository,
    trust: &crate::git::trust::Trust,
    applied: Option<gix::ObjectId>,
    tip: gix::ObjectId,
    now: OffsetDateTime,
) -> Staged<crate::git::trust::Signer> {
    match crate::git::trust::verify(repo, trust, applied, tip, now) {
        Ok(verified) => {
            let signer = verified.signer;
            let short = tip.to_string();
            say!(
                "gitops: {} is signed by {} ({} key {}){}",
                &short[..12],
                signer.principal,
                signer.method,
                signer.fingerprint,
                match verified.checked {
                    0 | 1 => String::new(),
                    n => format!("; {n} commits verified"),
                }
            );
            Ok(signer)
        }
        Err(untrusted) => Err((
            Outcome::Untrusted,
            fail(Exit::Untrusted, untrusted.to_string()),
        )),
    }
}

/// What status, the journal and the notification say of a stale tip.
pub fn stale_error(stale: &state::Stale, now: OffsetDateTime) -> String {
    let age = OffsetDateTime::parse(
        &stale.committed_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map(|at| {
        let secs = (now - at).whole_seconds().max(0) as u64;
        // Days are the unit an operator thinks of a frozen branch in.
        crate::config::format_duration(std::time::Duration::from_secs(secs / 3600 * 3600))
    })
    .unwrap_or_else(|_| "long".into());
    format!(
        "the branch's tip {} was committed {age} ago, longer than --max-commit-age {}: the Git host may be withholding newer commits; push a new (signed) commit, or check the host",
        stale.commit.get(..12).unwrap_or_default(),
        crate::config::format_duration(std::time::Duration::from_secs(stale.max_age_seconds)),
    )
}

/// A pass that recorded it was applying a commit and never recorded how that ended was killed
/// (kill -9, the OOM killer, a power cut) or crashed: count it as a failed attempt of that
/// commit, so this pass retries it as pending. Killed while reverting, the commit had failed
/// already and the revert did not finish: a failed revert (held back, `now` its time), never a
/// retry, or a revert that kills gitops would apply the failed commit again on every pass.
/// Returns whether there was one.
pub(super) fn take_unfinished(state: &mut State, now: &str) -> bool {
    let Some(unfinished) = state.in_progress.take() else {
        return false;
    };
    let error = unfinished_error(&unfinished);
    let previous = state
        .pending
        .take()
        .filter(|p| p.commit == unfinished.commit);
    let reverting = unfinished.reverting_to.is_some();
    state.pending = Some(Pending {
        attempts: previous
            .as_ref()
            .map_or(1, |p| p.attempts.saturating_add(1)),
        // What the entry point said before the kill: the one thing the operator needs.
        log: unfinished
            .log
            .filter(|l| std::fs::metadata(l).is_ok_and(|m| m.len() > 0)),
        subject: previous.and_then(|p| p.subject),
        commit: unfinished.commit,
        last_error: error,
        outcome: reverting.then_some(Outcome::RevertFailed),
        reverted_at: reverting.then(|| now.to_string()),
    });
    state.consecutive_failures = state.consecutive_failures.saturating_add(1);
    true
}

/// What status and the next pass say about a pass that never recorded its outcome.
pub fn unfinished_error(unfinished: &InProgress) -> String {
    let commit = unfinished.commit.get(..12).unwrap_or(&unfinished.commit);
    match &unfinished.reverting_to {
        Some(to) => format!(
            "{commit} failed and the pass started at {} was killed or crashed while reverting to {}: the revert did not finish",
            unfinished.started_at,
            to.get(..12).unwrap_or(to)
        ),
        None => format!(
            "the pass applying {commit} started at {} did not finish: killed or crashed",
            unfinished.started_at
        ),
    }
}

/// Record a configuration error that stopped `gitops sync` before its pass, so that status does
/// not keep reporting the last good pass. Only into a state directory that is already usable and
/// private, and only when no pass is running (never waiting for one): otherwise the error line
/// on stderr is all there is.
pub fn record_config_error(
    state_dir: &Path,
    error: &anyhow::Error,
    notifier: Option<&notify::options::Notifier>,
    now: OffsetDateTime,
) {
    let layout = Layout::new(&std::path::absolute(state_dir).unwrap_or(state_dir.to_path_buf()));
    // Never create one: a default state directory made by a config error would be wrong.
    if !layout.root.is_dir() || guard::private_problem(&layout).is_some() {
        return;
    }
    let Some(_lock) = layout.try_lock() else {
        return;
    };
    let Ok(mut state) = state::load(&layout) else {
        return;
    };
    let before = state.clone();
    let stamp = rfc3339(now);
    state.consecutive_failures = state.consecutive_failures.saturating_add(1);
    count_pass(&mut state, Outcome::ConfigError);
    state.last_pass = Some(LastPass {
        started_at: stamp.clone(),
        finished_at: stamp,
        outcome: Outcome::ConfigError,
        remote_commit: None,
        error: Some(one_line(error)),
        duration_ms: None,
    });
    let usage = i32::from(Exit::Usage);
    let _ = notify::queue_for_pass(&layout, notifier, &before, &mut state, usage, now);
    if state::save(&layout, &state, false).is_err() {
        return;
    }
    if let Some(notifier) = notifier.filter(|n| !n.is_empty()) {
        send_notifications(&layout, notifier, &mut state, now);
    }
}

/// One more pass with this outcome in the counters the metrics show.
fn count_pass(state: &mut State, outcome: Outcome) {
    let count = state
        .passes_total
        .entry(outcome.as_str().to_string())
        .or_default();
    *count = count.saturating_add(1);
}
