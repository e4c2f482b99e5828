//! `gitops plan`: what the next `gitops sync` would do, without doing it. The plan fetches and
//! decides as the pass does (`observe::observe`, `observe::next_action`, on a copy of the state that is
//! never saved), then describes the decision from the object store alone: the commits, the
//! files changed, the entry point's diff, the signature verdict, the health policy, a
//! suspension and the reboot the commit asks for. It writes no tree, runs nothing from the
//! repository, and takes only the read lock (`Layout::read_lock`).
//!
//! What it changes is what a fetch changes: the object store (`repo.git`, created on a first
//! run with the state directory and its lock file), and `known_hosts` with `--ssh-accept-new`.
//! A damaged store is healed (fetched again) as the pass would heal it: under the read lock
//! the plan is the store's only writer, the store is a copy of the remote that keeps its record
//! of the applied commit across a rebuild, and a plan that stopped at the damage would predict
//! a failure the next pass does not have. The store's packs are never consolidated here: that
//! is the pass's, after it records its outcome.

use std::ops::Range;

use anyhow::Result;
use gix::objs::tree::{EntryKind, EntryMode};
use gix::ObjectId;
use serde::Serialize;
use time::OffsetDateTime;

use super::decide::{Action, Reason};
use super::guard;
use super::health::{HealthOptions, OnFailure, RetryReverted, DEFAULT_CHECK};
use super::observe::{self, Observed};
use super::run::{self};
use super::state::{self, Layout, Outcome, State};
use super::suspend;
use crate::config::{format_duration, Options, Settings};
use crate::exit::{fail, Exit};
use crate::fleet::gate::Gate;
use crate::git::{self, Relation};
use crate::report::text::one_line;

mod diff;
mod render;

use diff::*;
use render::*;

/// The options of `gitops plan`: those of `gitops sync`, and the output's form.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub options: Options,
    /// Print the plan as one JSON object, for scripts (the exit code is the same)
    #[arg(long)]
    pub json: bool,
}

/// Commits listed by subject; the range is counted up to `MAX_COMMITS_COUNTED`.
const MAX_COMMITS_SHOWN: usize = 50;
const MAX_COMMITS_COUNTED: usize = 10_000;
/// Files listed in the diff stat; the summary line counts them all.
const MAX_FILES_SHOWN: usize = 100;
/// A file larger than this (either side) gets no line counts: its size is shown instead.
const MAX_COUNTED_BLOB: u64 = 1 << 20;
/// How much file content all line counts together may read; past it, files are listed
/// without counts (a commit touching 50k files is summed up, not read whole).
const COUNT_BUDGET: u64 = 64 << 20;
/// A file with more lines than this (either side) gets no line counts and no diff: the lines
/// are listed instead. A diff's cost grows faster than its size once lines repeat (the
/// histogram diff falls back to Myers, about n^1.5): a commit of 1 MiB files of one-letter
/// lines kept a plan busy for minutes, holding the lock every pass waits for, deaf to Ctrl-C.
const MAX_COUNTED_LINES: usize = 20_000;
/// How many lines all line counts together may diff (both sides); past it, files are listed
/// without counts, as past `COUNT_BUDGET`. With `MAX_COUNTED_LINES`, the counting of any
/// commit stays within seconds.
const LINE_BUDGET: usize = 1_000_000;
/// The entry point's diff, at most this many lines.
const MAX_DIFF_LINES: usize = 400;
/// Characters of one diff line, path or subject shown.
const MAX_LINE_CHARS: usize = 300;
/// Lines of context around each change of the entry point's diff, as `git diff` shows.
const CONTEXT: u32 = 3;
/// git's own test for a binary file: a NUL byte in the first 8000 bytes.
const BINARY_PROBE: usize = 8000;

/// `gitops plan`. Exits 10 when the next pass would run the entry point, 0 when it would not
/// (up to date, refused, untrusted, suspended); errors keep the pass's codes (2, 3, 4, 70, 75).
pub fn run(args: &Args, now: &dyn Fn() -> OffsetDateTime) -> Result<Exit> {
    let settings = Settings::for_sync(&args.options)?;
    // What a plan creates (the state directory, the lock file, the object store) is private,
    // as the pass makes it.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    crate::signals::install();
    let layout = Layout::new(&settings.state_dir);
    check_private(&layout)?;
    create_root(&layout)?;
    let (lock, waited) = layout.read_lock(settings.lock_timeout)?;
    // Again after a wait, as the pass does: the store read must be the one that was checked.
    if waited {
        check_private(&layout)?;
    }
    let plan = make(&settings, &layout, now)?;
    drop(lock);
    stopped()?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        out!("{}", render(&plan).trim_end());
    }
    Ok(if plan.would_apply {
        Exit::WouldApply
    } else {
        Exit::Ok
    })
}

/// Stopped by a signal (Ctrl-C, systemctl stop) once the fetch is done: nothing is printed,
/// since a plan cut short would say less than the pass does, and the exit is 75, as for a
/// signal while waiting for the lock.
fn stopped() -> Result<()> {
    match crate::signals::received() {
        Some(signal) => Err(fail(
            Exit::Locked,
            format!("gitops plan received {signal} before it finished; nothing is planned: run it again"),
        )),
        None => Ok(()),
    }
}

fn check_private(layout: &Layout) -> Result<()> {
    match guard::private_problem_for(layout, "plan") {
        Some(problem) => Err(fail(Exit::Usage, problem)),
        None => Ok(()),
    }
}

/// The state directory itself, on a first run: the lock and the store go in it. Not `trees/`
/// nor `logs/`, which only a pass writes.
fn create_root(layout: &Layout) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if layout.root.is_dir() {
        return Ok(());
    }
    let unwritable = || {
        fail(
            Exit::Usage,
            format!(
                "cannot create the state directory {}: point --state-dir at a writable directory (default /var/lib/gitops, run as root)",
                layout.root.display()
            ),
        )
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&layout.root)
        .map_err(|_| unwritable())?;
    std::fs::set_permissions(&layout.root, std::fs::Permissions::from_mode(0o700))
        .map_err(|_| unwritable())
}

/// What the plan found, as `--json` prints it. Everything from the repository (subjects,
/// paths, diff lines) is printable (control characters written `\xNN`) and bounded.
#[derive(Debug, Serialize)]
struct Plan {
    /// apply, up-to-date or refuse: the pass's decision from the branch alone.
    decision: &'static str,
    /// For apply: first-apply, new-commit, retry, always or rewind.
    reason: Option<&'static str>,
    attempt: Option<u32>,
    /// The pass's outcome: applied (when the entry point and the health check pass),
    /// up-to-date, refused, untrusted or suspended.
    outcome: &'static str,
    /// Whether the entry point would run: `gitops plan` exits 10.
    would_apply: bool,
    repo_url: String,
    branch: String,
    tip: CommitShown,
    /// The commit the tip must descend from (state.json's, or the store's record).
    applied: Option<CommitShown>,
    pending: Option<PendingShown>,
    /// The commits the tip adds to the applied one (all of the branch on a first apply).
    commits: Commits,
    files: Files,
    entrypoint: EntryPoint,
    signature: Signature,
    health: Health,
    suspension: Option<SuspensionShown>,
    /// The reboot plan of the commit that would be applied afterwards.
    reboot: Option<Reboot>,
    /// --max-commit-age: the tip is older than that.
    stale: Option<String>,
    /// Things the pass would warn about (an unreadable state.json or suspension record).
    warnings: Vec<String>,
    /// For an apply: whether --watch and .gitops/rollout let it run now.
    gate: Option<GateShown>,
}

#[derive(Debug, Serialize)]
struct GateShown {
    /// run, skip (nothing watched changed) or wait (for the rollout wave).
    verdict: &'static str,
    /// The watched paths, filled in; None: the whole tree.
    watch: Option<String>,
    watched_changed: Option<bool>,
    rollout: Option<RolloutShown>,
    /// The commit changes only this machine's hosts/<host>/: no wave holds it back.
    own_only: bool,
}

#[derive(Debug, Serialize)]
struct RolloutShown {
    /// The commit changes .gitops/rollout: it reaches every machine at once.
    changes_rollout: bool,
    /// This machine's wave, from 0, of `waves`; when it begins.
    wave: Option<usize>,
    waves: Option<usize>,
    at: Option<String>,
}

fn gate_shown(settings: &Settings, gate: Gate, facts: crate::fleet::gate::Facts) -> GateShown {
    GateShown {
        verdict: match gate {
            Gate::Run => "run",
            Gate::Held => "held",
            Gate::Skip => "skip",
            Gate::Wait { .. } => "wait",
        },
        watch: settings
            .watch
            .templates
            .as_ref()
            .map(|_| crate::fleet::watch::shown(&settings.watch, &settings.identity)),
        watched_changed: facts.watched_changed,
        own_only: facts.own_only,
        rollout: facts.rollout.map(|r| RolloutShown {
            changes_rollout: r.changes_rollout,
            wave: (!r.changes_rollout).then_some(r.wave),
            waves: (!r.changes_rollout).then_some(r.waves),
            at: (!r.changes_rollout).then(|| crate::report::text::rfc3339(r.due)),
        }),
    }
}

#[derive(Debug, Clone, Serialize)]
struct CommitShown {
    commit: String,
    subject: Option<String>,
}

#[derive(Debug, Serialize)]
struct PendingShown {
    commit: String,
    attempts: u32,
    last_error: String,
}

#[derive(Debug, Default, Serialize)]
struct Commits {
    /// Counted up to 10,000 (`more` says there were more).
    total: usize,
    more: bool,
    /// The newest first, at most 50.
    list: Vec<CommitShown>,
    /// On a branch that no longer descends from the applied commit: how many of the applied
    /// history's commits it lost.
    dropped: Option<usize>,
}

#[derive(Debug, Default, Serialize)]
struct Files {
    /// Compared against: the applied commit, or nothing on a first apply.
    base: Option<String>,
    total: usize,
    insertions: u64,
    deletions: u64,
    /// Files whose lines could not be counted (binary, too large, past the read budget).
    uncounted: usize,
    /// Sorted by path, at most 100.
    list: Vec<FileChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct FileChange {
    path: String,
    /// added, modified, deleted, type-changed or mode-changed.
    change: &'static str,
    insertions: Option<u64>,
    deletions: Option<u64>,
    /// Why there are no line counts: binary, submodule, large (bytes), or not counted.
    note: Option<String>,
}

#[derive(Debug, Serialize)]
struct EntryPoint {
    path: String,
    /// Why this machine runs that one (hosts/, groups/, the repository's): `--entrypoint`'s
    /// first template the tip has, {host} and {group} filled in.
    why: String,
    /// added, modified, deleted, unchanged, missing, type-changed or mode-changed.
    change: &'static str,
    /// The tip's entry: file, executable, symlink, directory or submodule; None when missing.
    kind: Option<&'static str>,
    /// The unified diff (3 lines of context), at most 400 lines.
    diff: Option<Vec<String>>,
    truncated: bool,
    /// Why no diff is shown for a change (binary, large).
    note: Option<String>,
}

#[derive(Debug, Serialize)]
struct Signature {
    /// trusted, untrusted, not-checked (nothing to apply) or not-configured.
    verdict: &'static str,
    signer: Option<crate::git::trust::Signer>,
    checked: Option<usize>,
    error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Health {
    /// The health check the tip would get; None: the entry point's exit status alone decides.
    check: Option<String>,
    /// option (--health-check) or commit (.gitops/health in the tip).
    from: Option<&'static str>,
    /// --health-check names a file the tip does not have: the apply would fail.
    missing: bool,
    timeout: String,
    retries: u32,
    interval: String,
    on_failure: &'static str,
    /// With --on-failure revert: the commit a failure would take the machine back to.
    revert_to: Option<String>,
    retry_reverted: String,
}

#[derive(Debug, Serialize)]
struct SuspensionShown {
    by: String,
    at: String,
    until: String,
    reason: Option<String>,
    active: bool,
}

#[derive(Debug, Serialize)]
struct Reboot {
    /// The commit whose request it is, and where in it (--reboot-file).
    commit: String,
    file: String,
    decision: String,
    reason: String,
}

/// Fetch, decide and describe, under the read lock.
fn make(settings: &Settings, layout: &Layout, now: &dyn Fn() -> OffsetDateTime) -> Result<Plan> {
    let mut warnings = Vec::new();
    // Read, never loaded: `state::load` moves an unreadable file aside, which is the pass's to
    // do. The pass would then start from a fresh state, and so does the plan.
    let mut state = match state::read(layout) {
        Ok(state) => state.unwrap_or_default(),
        Err(e) => {
            let why = format!(
                "{}; the next pass moves it aside and starts from a fresh state, as this plan does",
                one_line(&e)
            );
            say!("gitops: warning: {why}");
            warnings.push(why);
            State::default()
        }
    };
    // A pass that was killed while applying is a failed attempt to the next pass.
    run::take_unfinished(&mut state, &crate::report::text::rfc3339(now()));
    let mut remote_commit = None;
    let Observed {
        fetched,
        tip,
        applied_id,
        relation,
        store,
        ..
    } = observe::observe(settings, layout, &mut state, &mut remote_commit, now)
        .map_err(|(_, e)| e)?;
    let action = observe::next_action(settings, &state, relation, &tip, now());
    let repo = match store {
        Some(repo) => repo,
        None => git::open_store(&layout.repo(), settings)?,
    };
    // The applied commit, when the store has it: a rewind's may be gone from the branch.
    let base = applied_id.filter(|a| repo.has_object(*a));
    let signature = match (&settings.trust, action) {
        (None, _) => Signature {
            verdict: "not-configured",
            signer: None,
            checked: None,
            error: None,
        },
        (Some(trust), Action::Apply { .. }) => {
            match crate::git::trust::verify(&repo, trust, applied_id, fetched.tip, now()) {
                Ok(verified) => Signature {
                    verdict: "trusted",
                    signer: Some(verified.signer),
                    checked: Some(verified.checked),
                    error: None,
                },
                Err(untrusted) => Signature {
                    verdict: "untrusted",
                    signer: None,
                    checked: None,
                    error: Some(crate::report::text::shown(&untrusted.to_string())),
                },
            }
        }
        (Some(_), _) => Signature {
            verdict: "not-checked",
            signer: None,
            checked: None,
            error: None,
        },
    };
    let suspension = match suspend::read(layout) {
        Ok(suspension) => suspension,
        Err(e) => {
            warnings.push(one_line(&e));
            None
        }
    };
    let suspended = suspension.as_ref().is_some_and(|s| s.active_at(now()));
    if let Some(s) = suspension.as_ref().filter(|_| suspended) {
        if s.capped(settings.max_suspend, now()).is_some() {
            let max = format_duration(settings.max_suspend);
            warnings.push(format!(
                "the suspension by {} lasts until {}, more than --max-suspend {max} from now: the next pass shortens it to end {max} after that pass",
                s.by, s.until
            ));
        }
    }
    let held_as = state.pending.as_ref().and_then(|p| p.outcome);
    // The watch, the rollout and a reverted change, asked as the pass asks them, before the
    // suspension: it holds back only an apply that would run.
    let gate = match action {
        Action::Apply { reason, .. } => Some(
            observe::gate(
                settings,
                &state,
                &repo,
                applied_id,
                fetched.tip,
                reason,
                observe::first_seen(state.waiting.as_ref(), &tip, now()),
                now(),
            )
            .map_err(|why| fail(Exit::Usage, why))?,
        ),
        _ => None,
    };
    let always = settings.apply == crate::config::ApplyPolicy::Always;
    let runs = match gate {
        None | Some((Gate::Run, _)) => true,
        // --apply always runs the applied commit while the tip waits.
        Some((Gate::Wait { .. }, _)) => always,
        Some((Gate::Skip | Gate::Held, _)) => false,
    };
    let untrusted = signature.verdict == "untrusted";
    let outcome = match outcome(action, untrusted, suspended && runs, held_as) {
        Outcome::Applied => match gate {
            Some((Gate::Held, _)) => held_as.unwrap_or(Outcome::Reverted),
            _ if !runs => Outcome::UpToDate,
            _ => Outcome::Applied,
        },
        outcome => outcome,
    };
    // --apply always while the tip waits: the pass runs the applied commit again, as
    // "always", its failed attempts counted on.
    let rerun = always && matches!(gate, Some((Gate::Wait { .. }, _)));
    let gate = gate.map(|(gate, facts)| gate_shown(settings, gate, facts));

    let tip_tree = tree_of(&repo, fetched.tip)?;
    let base_tree = match base {
        Some(id) => Some(tree_of(&repo, id)?),
        None => None,
    };
    let commits = match relation {
        Relation::Same => Commits::default(),
        _ => commits(&repo, fetched.tip, base),
    };
    let files = match relation {
        Relation::Same => Files {
            base: base.map(|b| b.to_string()),
            ..Files::default()
        },
        _ => files(&repo, base, base_tree, tip_tree)?,
    };
    let chosen = crate::fleet::entry::choose(&settings.entrypoints, &settings.identity, |p| {
        git::tree::entry_at(&repo, tip_tree, p)
            .ok()
            .flatten()
            .is_some()
    });
    let mut entrypoint = entry_point(&repo, &chosen.path, base_tree, tip_tree);
    entrypoint.why = clip(&crate::report::text::shown(&chosen.why));
    let health = health(
        &settings.health,
        git::tree::entry_at(&repo, tip_tree, DEFAULT_CHECK).is_ok_and(|e| e.is_some()),
        settings
            .health
            .health_check
            .as_deref()
            .is_some_and(|named| {
                git::tree::entry_at(&repo, tip_tree, named).is_ok_and(|e| e.is_some())
            }),
        applied_id.map(|a| a.to_string()).as_deref(),
    );
    // After the pass, the reboot plan is the applied commit's: the tip's once it is applied.
    let reboot_commit = match outcome {
        Outcome::Applied if rerun => applied_id,
        Outcome::Applied => Some(fetched.tip),
        // Up to date: the applied commit is the tip, or a later tip changed nothing here.
        _ => applied_id,
    };
    let reboot = reboot_commit.map(|commit| {
        reboot(
            settings,
            layout,
            &repo,
            &state,
            suspension.as_ref(),
            commit,
            now,
        )
    });
    let shown_commit = |id: ObjectId| CommitShown {
        commit: id.to_string(),
        subject: git::subject(&repo, id).map(|s| clip(&crate::report::text::shown(&s))),
    };
    let (decision, reason, attempt) = match action {
        Action::UpToDate => ("up-to-date", None, None),
        Action::Refuse => ("refuse", None, None),
        Action::HeldBack => ("held-back", None, None),
        Action::Apply { .. } if rerun => {
            let applied = applied_id.map(|a| a.to_string());
            let attempts = state
                .pending
                .as_ref()
                .filter(|p| applied.as_deref() == Some(p.commit.as_str()))
                .map_or(0, |p| p.attempts);
            (
                "apply",
                Some(reason_name(Reason::Always)),
                Some(attempts.saturating_add(1)),
            )
        }
        Action::Apply { attempt, reason } => ("apply", Some(reason_name(reason)), Some(attempt)),
    };
    Ok(Plan {
        decision,
        reason,
        attempt,
        outcome: outcome.as_str(),
        would_apply: outcome == Outcome::Applied,
        gate,
        repo_url: settings.repo_url.redacted.clone(),
        branch: crate::report::text::shown(&fetched.branch),
        tip: shown_commit(fetched.tip),
        applied: applied_id.map(|a| match base {
            Some(_) => shown_commit(a),
            None => CommitShown {
                commit: a.to_string(),
                subject: None,
            },
        }),
        pending: state.pending.as_ref().map(|p| PendingShown {
            commit: p.commit.clone(),
            attempts: p.attempts,
            // Recorded by a pass, but possibly by an older one that let more through.
            last_error: crate::report::text::shown(&p.last_error),
        }),
        commits,
        files,
        entrypoint,
        signature,
        health,
        suspension: suspension.map(|s| SuspensionShown {
            active: s.active_at(now()),
            by: crate::report::text::shown(&s.by),
            at: crate::report::text::shown(&s.at),
            until: crate::report::text::shown(&s.until),
            reason: s.reason.as_deref().map(crate::report::text::shown),
        }),
        reboot,
        stale: state.stale.as_ref().map(|s| run::stale_error(s, now())),
        warnings,
    })
}

/// What the pass's outcome would be, from its decision and the verdicts that can stop it. A
/// suspension is looked at first (the pass holds an apply back before it reads a signature),
/// and holds back whatever would run, `--apply always` too; then the signature. A commit held
/// back after a revert keeps the outcome its revert had (`held_as`).
fn outcome(action: Action, untrusted: bool, suspended: bool, held_as: Option<Outcome>) -> Outcome {
    match action {
        Action::UpToDate => Outcome::UpToDate,
        Action::Refuse => Outcome::Refused,
        Action::HeldBack => held_as.unwrap_or(Outcome::Reverted),
        Action::Apply { .. } if suspended => Outcome::Suspended,
        Action::Apply { .. } if untrusted => Outcome::Untrusted,
        Action::Apply { .. } => Outcome::Applied,
    }
}

fn reason_name(reason: Reason) -> &'static str {
    match reason {
        Reason::FirstApply => "first-apply",
        Reason::NewCommit => "new-commit",
        Reason::Retry => "retry",
        Reason::Always => "always",
        Reason::Rewind => "rewind",
    }
}

/// The health policy the tip would be applied under. `has_default`: the tip has
/// `.gitops/health`; `has_named`: it has the file --health-check names.
fn health(
    options: &HealthOptions,
    has_default: bool,
    has_named: bool,
    applied: Option<&str>,
) -> Health {
    let (check, from, missing) = match options.health_check.as_deref() {
        Some(named) => (Some(named.to_string()), Some("option"), !has_named),
        None if has_default => (Some(DEFAULT_CHECK.to_string()), Some("commit"), false),
        None => (None, None, false),
    };
    Health {
        check: check.map(|c| clip(&crate::report::text::shown(&c))),
        from,
        missing,
        timeout: format_duration(options.health_timeout),
        retries: options.health_retries,
        interval: format_duration(options.health_interval),
        on_failure: match options.on_failure {
            OnFailure::Stay => "stay",
            OnFailure::Revert => "revert",
        },
        revert_to: match options.on_failure {
            OnFailure::Revert => applied.map(str::to_string),
            OnFailure::Stay => None,
        },
        retry_reverted: match options.retry_reverted {
            RetryReverted::Never => "never".to_string(),
            RetryReverted::After(d) => format_duration(d),
        },
    }
}

/// The reboot plan of `commit`'s request (`--reboot-file` in its tree, read from the store),
/// evaluated against this machine now as the pass would after applying it; nothing is asked
/// of a fleet lock.
fn reboot(
    settings: &Settings,
    layout: &Layout,
    repo: &gix::Repository,
    state: &State,
    suspension: Option<&suspend::Suspension>,
    commit: ObjectId,
    now: &dyn Fn() -> OffsetDateTime,
) -> Reboot {
    use crate::reboot::{act, plan};
    let file = &settings.reboot.reboot_file;
    let shown = |decision: &str, reason: String| Reboot {
        commit: commit.to_string(),
        file: crate::report::text::shown(file),
        decision: decision.to_string(),
        reason: crate::report::text::shown(&reason),
    };
    let request = match request_in_store(repo, commit, file) {
        Ok(Some(request)) => request,
        Ok(None) => return shown("none", "no reboot is requested".into()),
        Err(why) => {
            return shown(
                "invalid",
                format!("the reboot request cannot be used, no reboot until it is fixed: {why}"),
            )
        }
    };
    let marker = act::read_marker(layout);
    match act::evaluate(
        Some(request),
        state,
        marker.as_ref(),
        suspension,
        &settings.reboot,
        now(),
    ) {
        Ok(evaluated) => shown(evaluated.decision.name(), evaluated.reason),
        Err(why) => shown(plan::Decision::None.name(), format!("unknown: {why}")),
    }
}

/// The reboot request in `commit`'s tree: None when it has none. As `act::request_in_tree`
/// reads it from a checked-out tree: a regular file, no symlink on the way, at most 64 KiB of
/// UTF-8.
fn request_in_store(
    repo: &gix::Repository,
    commit: ObjectId,
    file: &str,
) -> std::result::Result<Option<crate::reboot::request::Request>, String> {
    use crate::reboot::request;
    let tree = tree_of(repo, commit).map_err(|e| one_line(&e))?;
    let (mode, id) = match git::tree::entry_at(repo, tree, file) {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(None),
        Err(why) => {
            return Err(format!(
                "{file}: {why}; commit the request as a regular file"
            ))
        }
    };
    if mode.is_link() {
        return Err(format!(
            "{file} is a symlink in this commit: commit the request as a regular file"
        ));
    }
    if !matches!(mode.kind(), EntryKind::Blob | EntryKind::BlobExecutable) {
        return Err(format!(
            "{file} cannot be read (not a file): commit it as a small regular file"
        ));
    }
    let size = repo
        .find_header(id)
        .map(|h| h.size())
        .map_err(|e| format!("{file} cannot be read ({e})"))?;
    if size > request::MAX_FILE {
        return Err(format!(
            "{file} cannot be read (larger than 64 KiB): commit it as a small regular file"
        ));
    }
    let data = repo
        .find_object(id)
        .map(|o| o.detach().data)
        .map_err(|e| format!("{file} cannot be read ({e})"))?;
    let text = String::from_utf8(data).map_err(|_| format!("{file} is not UTF-8 text"))?;
    request::parse(&text)
        .map(Some)
        .map_err(|e| format!("{file}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_is_the_decision_unless_a_verdict_stops_it() {
        let apply = Action::Apply {
            attempt: 1,
            reason: Reason::NewCommit,
        };
        let failed = Some(Outcome::RevertFailed);
        #[rustfmt::skip]
        let table: &[(Action, bool, bool, Option<Outcome>, Outcome)] = &[
            // action          untrusted suspended held as  outcome
            (Action::UpToDate, false,    false,    None,    Outcome::UpToDate),
            (Action::UpToDate, false,    true,     None,    Outcome::UpToDate),
            (Action::Refuse,   false,    true,     None,    Outcome::Refused),
            (Action::Refuse,   true,     false,    None,    Outcome::Refused),
            (apply,            false,    false,    None,    Outcome::Applied),
            (apply,            true,     false,    None,    Outcome::Untrusted),
            (apply,            false,    true,     None,    Outcome::Suspended),
            (apply,            true,     true,     None,    Outcome::Suspended),
            (Action::HeldBack, false,    false,    None,    Outcome::Reverted),
            (Action::HeldBack, false,    true,     failed,  Outcome::RevertFailed),
        ];
        for (action, untrusted, suspended, held_as, want) in table {
            assert_eq!(
                outcome(*action, *untrusted, *suspended, *held_as),
                *want,
                "{action:?} untrusted={untrusted} suspended={suspended}"
            );
        }
    }

    fn options(args: &[&str]) -> HealthOptions {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            health: HealthOptions,
        }
        let mut argv = vec!["gitops"];
        argv.extend(args);
        <Cli as clap::Parser>::try_parse_from(argv).unwrap().health
    }

    #[test]
    fn the_health_policy_names_the_check_and_what_a_failure_does() {
        const A: &str = "1111111111111111111111111111111111111111";
        // options, has .gitops/health, has the named check, applied; then check, missing,
        // revert_to and words said.
        type Row<'a> = (
            &'a [&'a str],
            bool,
            bool,
            Option<&'a str>,
            Option<&'a str>,
            bool,
            Option<&'a str>,
            &'a str,
        );
        #[rustfmt::skip]
        let table: &[Row] = &[
            // options                         default named  applied  check             missing revert_to words
            (&[],                              false, false, Some(A), None,              false, None,    "none: the entry point's exit status alone decides; --on-failure stay"),
            (&[],                              true,  false, Some(A), Some(".gitops/health"), false, None, ".gitops/health (the commit's own), --health-timeout 2min, no retries"),
            (&["--health-check", "c/ok"],      true,  true,  Some(A), Some("c/ok"),      false, None,    "c/ok (--health-check)"),
            (&["--health-check", "c/no"],      true,  false, Some(A), Some("c/no"),      true,  None,    "which tiptiptiptipt does not have: the apply would fail"),
            (&["--on-failure", "revert"],      true,  false, Some(A), Some(".gitops/health"), false, Some(A), "goes back to 111111111111 and tiptiptiptipt is held back until the branch moves"),
            (&["--on-failure", "revert"],      true,  false, None,    Some(".gitops/health"), false, None, "with nothing applied to go back to"),
            (&["--on-failure", "revert", "--retry-reverted", "2h"], false, false, Some(A), None, false, Some(A), "(or --retry-reverted 2h passes)"),
            (&["--health-retries", "2", "--health-interval", "5s"], true, false, Some(A), Some(".gitops/health"), false, None, "2 retries 5s apart"),
        ];
        for (args, default, named, applied, check, missing, revert_to, words) in table {
            let h = health(&options(args), *default, *named, *applied);
            assert_eq!(h.check.as_deref(), *check, "{args:?}");
            assert_eq!(h.missing, *missing, "{args:?}");
            assert_eq!(h.revert_to.as_deref(), *revert_to, "{args:?}");
            let said = health_words(&h, "tiptiptiptipt");
            assert!(said.contains(words), "{args:?}: {said}");
        }
    }
}
