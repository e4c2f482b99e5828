//! `gitops plan`: what the next `gitops sync` would do, without doing it. The plan fetches and
//! decides as the pass does (`run::observe`, `run::next_action`, on a copy of the state that is
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
use super::run::{self, one_line, Observed};
use super::state::{self, Layout, Outcome, State};
use super::suspend;
use crate::config::{format_duration, Options, Settings};
use crate::exit::{fail, Exit};
use crate::git::{self, Relation};

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
    run::take_unfinished(&mut state);
    let mut remote_commit = None;
    let Observed {
        fetched,
        tip,
        applied_id,
        relation,
        store,
        ..
    } = run::observe(settings, layout, &mut state, &mut remote_commit, now).map_err(|(_, e)| e)?;
    let action = run::next_action(settings, &state, relation, &tip, now());
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
                    error: Some(run::shown(&untrusted.to_string())),
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
    let held_as = state.pending.as_ref().and_then(|p| p.outcome);
    let outcome = outcome(action, signature.verdict == "untrusted", suspended, held_as);

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
    let entrypoint = entry_point(&repo, &settings.entrypoint, base_tree, tip_tree);
    let health = health(
        &settings.health,
        lookup(&repo, tip_tree, DEFAULT_CHECK).is_ok_and(|e| e.is_some()),
        settings
            .health
            .health_check
            .as_deref()
            .is_some_and(|named| lookup(&repo, tip_tree, named).is_ok_and(|e| e.is_some())),
        applied_id.map(|a| a.to_string()).as_deref(),
    );
    // After the pass, the reboot plan is the applied commit's: the tip's once it is applied.
    let reboot_commit = match outcome {
        Outcome::Applied | Outcome::UpToDate => Some(fetched.tip),
        _ => applied_id,
    };
    let reboot = reboot_commit.map(|commit| reboot(settings, layout, &repo, &state, commit, now));
    let shown_commit = |id: ObjectId| CommitShown {
        commit: id.to_string(),
        subject: git::subject(&repo, id).map(|s| clip(&run::shown(&s))),
    };
    let (decision, reason, attempt) = match action {
        Action::UpToDate => ("up-to-date", None, None),
        Action::Refuse => ("refuse", None, None),
        Action::HeldBack => ("held-back", None, None),
        Action::Apply { attempt, reason } => ("apply", Some(reason_name(reason)), Some(attempt)),
    };
    Ok(Plan {
        decision,
        reason,
        attempt,
        outcome: outcome.as_str(),
        would_apply: outcome == Outcome::Applied,
        repo_url: settings.repo_url.redacted.clone(),
        branch: run::shown(&fetched.branch),
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
            last_error: p.last_error.clone(),
        }),
        commits,
        files,
        entrypoint,
        signature,
        health,
        suspension: suspension.map(|s| SuspensionShown {
            active: s.active_at(now()),
            by: run::shown(&s.by),
            at: run::shown(&s.at),
            until: run::shown(&s.until),
            reason: s.reason.as_deref().map(run::shown),
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
        check: check.map(|c| clip(&run::shown(&c))),
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

fn tree_of(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree_id())
        .map_err(|e| {
            fail(
                Exit::Internal,
                format!(
                    "the tree of {} cannot be read from the object store ({e}): the store may be damaged, and gitops sync fetches it again when it cannot write a tree out of it",
                    commit.to_hex_with_len(12)
                ),
            )
        })?;
    Ok(tree.detach())
}

/// The entry at `path` in the tree `tree`: its mode and object. Err: a directory on the way is
/// a symlink (the checkout would lead outside the tree there), said as the end of a sentence.
fn lookup(
    repo: &gix::Repository,
    tree: ObjectId,
    path: &str,
) -> std::result::Result<Option<(EntryMode, ObjectId)>, String> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let mut current = tree;
    for (index, part) in parts.iter().enumerate() {
        let Ok(tree) = repo.find_tree(current) else {
            return Ok(None);
        };
        let Some(entry) = tree.find_entry(part.as_bytes()) else {
            return Ok(None);
        };
        let (mode, id) = (entry.mode(), entry.object_id());
        if index + 1 == parts.len() {
            return Ok(Some((mode, id)));
        }
        if mode.is_link() {
            return Err(format!("{part} on the way to it is a symlink"));
        }
        if !mode.is_tree() {
            return Ok(None);
        }
        current = id;
    }
    Ok(None)
}

/// The commits of `tip` that `base` does not have, the newest first; all of the branch when
/// there is no base. Bounded: counted up to `MAX_COMMITS_COUNTED`, listed up to
/// `MAX_COMMITS_SHOWN`. A walk that fails part-way (a shallow boundary) ends the count there.
fn commits(repo: &gix::Repository, tip: ObjectId, base: Option<ObjectId>) -> Commits {
    let walk = |from: ObjectId, hidden: Option<ObjectId>, list: bool| {
        let mut found = Commits::default();
        let mut platform =
            repo.rev_walk([from])
                .sorting(gix::revision::walk::Sorting::ByCommitTime(
                    gix::traverse::commit::simple::CommitTimeOrder::NewestFirst,
                ));
        if let Some(hidden) = hidden {
            platform = platform.with_hidden([hidden]);
        }
        let Ok(walk) = platform.all() else {
            return found;
        };
        for info in walk {
            let Ok(info) = info else { break };
            if found.total == MAX_COMMITS_COUNTED {
                found.more = true;
                break;
            }
            found.total += 1;
            if list && found.list.len() < MAX_COMMITS_SHOWN {
                found.list.push(CommitShown {
                    commit: info.id.to_string(),
                    subject: git::subject(repo, info.id).map(|s| clip(&run::shown(&s))),
                });
            }
        }
        found
    };
    let mut found = walk(tip, base, true);
    // The base is not in the tip's history: a rewind. What the branch lost is news too.
    if let Some(base) = base {
        if !matches!(git::relation(repo, Some(base), tip), Ok(Relation::Descends)) {
            found.dropped = Some(walk(base, Some(tip), false).total);
        }
    }
    found
}

/// One side of a changed path: its mode and object.
type Side = Option<(EntryMode, ObjectId)>;

/// The files that differ between the base's tree (nothing on a first apply) and the tip's,
/// sorted by path, with their line counts as far as `COUNT_BUDGET` reaches.
fn files(
    repo: &gix::Repository,
    base: Option<ObjectId>,
    base_tree: Option<ObjectId>,
    tip_tree: ObjectId,
) -> Result<Files> {
    let empty = repo.empty_tree();
    let old = match base_tree {
        Some(id) => repo.find_tree(id)?,
        None => empty,
    };
    let new = repo.find_tree(tip_tree)?;
    let mut recorder = gix::diff::tree::Recorder::default();
    gix::diff::tree(
        gix::objs::TreeRefIter::from_bytes(&old.data, repo.object_hash()),
        gix::objs::TreeRefIter::from_bytes(&new.data, repo.object_hash()),
        &mut gix::diff::tree::State::default(),
        &repo.objects,
        &mut recorder,
    )
    .map_err(|e| {
        fail(
            Exit::Internal,
            format!("the trees cannot be compared ({e}): the store may be damaged, and gitops sync fetches it again when it cannot write a tree out of it"),
        )
    })?;
    use gix::diff::tree::recorder::Change;
    // Directories are walked into (their files are changes of their own) and left out.
    let file = |mode: EntryMode, id: ObjectId| (!mode.is_tree()).then_some((mode, id));
    let mut changes: Vec<(gix::bstr::BString, Side, Side)> = recorder
        .records
        .into_iter()
        .filter_map(|change| {
            let (path, old, new) = match change {
                Change::Addition {
                    entry_mode,
                    oid,
                    path,
                    ..
                } => (path, None, file(entry_mode, oid)),
                Change::Deletion {
                    entry_mode,
                    oid,
                    path,
                    ..
                } => (path, file(entry_mode, oid), None),
                Change::Modification {
                    previous_entry_mode,
                    previous_oid,
                    entry_mode,
                    oid,
                    path,
                } => (
                    path,
                    file(previous_entry_mode, previous_oid),
                    file(entry_mode, oid),
                ),
            };
            (old.is_some() || new.is_some()).then_some((path, old, new))
        })
        .collect();
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    let mut found = Files {
        base: base.map(|b| b.to_string()),
        total: changes.len(),
        ..Files::default()
    };
    let mut budget = COUNT_BUDGET;
    for (path, old, new) in changes {
        let counted = count(repo, old, new, &mut budget);
        let change = change_name(old, new);
        let (insertions, deletions, note) = match counted {
            Counted::Lines { added, removed } => (Some(added), Some(removed), None),
            Counted::Not(note) => (None, None, Some(note)),
        };
        found.insertions += insertions.unwrap_or(0);
        found.deletions += deletions.unwrap_or(0);
        if note.is_some() {
            found.uncounted += 1;
        }
        if found.list.len() < MAX_FILES_SHOWN {
            found.list.push(FileChange {
                path: clip(&printable_bytes(&path)),
                change,
                insertions,
                deletions,
                note,
            });
        }
    }
    Ok(found)
}

fn change_name(old: Side, new: Side) -> &'static str {
    match (old, new) {
        (None, _) => "added",
        (_, None) => "deleted",
        (Some((a, _)), Some((b, _))) if a.kind() != b.kind() && !both_files(a, b) => "type-changed",
        (Some((a, x)), Some((b, y))) if a != b && x == y => "mode-changed",
        _ => "modified",
    }
}

/// A plain file and an executable one are both files: an exec bit is a mode change.
fn both_files(a: EntryMode, b: EntryMode) -> bool {
    let file = |m: EntryMode| matches!(m.kind(), EntryKind::Blob | EntryKind::BlobExecutable);
    file(a) && file(b)
}

/// Line counts of one file, or why there are none.
enum Counted {
    Lines { added: u64, removed: u64 },
    Not(String),
}

fn count(repo: &gix::Repository, old: Side, new: Side, budget: &mut u64) -> Counted {
    let submodule = |side: Side| side.is_some_and(|(m, _)| m.is_commit());
    if submodule(old) || submodule(new) {
        return Counted::Not("submodule".into());
    }
    if let (Some((_, a)), Some((_, b))) = (old, new) {
        if a == b {
            return Counted::Lines {
                added: 0,
                removed: 0,
            };
        }
    }
    let size = |side: Side| {
        side.map_or(Ok(0), |(_, id)| {
            repo.find_header(id).map(|h| h.size()).map_err(|_| ())
        })
    };
    let (Ok(old_size), Ok(new_size)) = (size(old), size(new)) else {
        return Counted::Not("unreadable".into());
    };
    if old_size.max(new_size) > MAX_COUNTED_BLOB {
        return Counted::Not(format!("large, {old_size} -> {new_size} bytes"));
    }
    let total = old_size + new_size;
    if total > *budget {
        return Counted::Not("not counted".into());
    }
    *budget -= total;
    let read = |side: Side| -> std::result::Result<Vec<u8>, ()> {
        match side {
            None => Ok(Vec::new()),
            Some((_, id)) => repo
                .find_object(id)
                .map(|o| o.detach().data)
                .map_err(|_| ()),
        }
    };
    let (Ok(a), Ok(b)) = (read(old), read(new)) else {
        return Counted::Not("unreadable".into());
    };
    if is_binary(&a) || is_binary(&b) {
        return Counted::Not(format!("binary, {old_size} -> {new_size} bytes"));
    }
    let (added, removed) = line_counts(&a, &b);
    Counted::Lines { added, removed }
}

fn is_binary(data: &[u8]) -> bool {
    data[..data.len().min(BINARY_PROBE)].contains(&0)
}

fn line_counts(old: &[u8], new: &[u8]) -> (u64, u64) {
    use gix::diff::blob::{Algorithm, Diff, InternedInput};
    let input = InternedInput::new(old, new);
    let diff = Diff::compute(Algorithm::Histogram, &input);
    (
        u64::from(diff.count_additions()),
        u64::from(diff.count_removals()),
    )
}

/// The entry point in the base and in the tip, and its diff.
fn entry_point(
    repo: &gix::Repository,
    path: &str,
    base_tree: Option<ObjectId>,
    tip_tree: ObjectId,
) -> EntryPoint {
    let old = base_tree.and_then(|t| lookup(repo, t, path).ok().flatten());
    let new = lookup(repo, tip_tree, path).ok().flatten();
    let kind = new.map(|(mode, _)| match mode.kind() {
        EntryKind::Blob => "file",
        EntryKind::BlobExecutable => "executable",
        EntryKind::Link => "symlink",
        EntryKind::Tree => "directory",
        EntryKind::Commit => "submodule",
    });
    let mut shown = EntryPoint {
        path: clip(&run::shown(path)),
        change: match (old, new) {
            (None, None) => "missing",
            (Some(a), Some(b)) if a == b => "unchanged",
            _ => change_name(old, new),
        },
        kind,
        diff: None,
        truncated: false,
        note: None,
    };
    if matches!(shown.change, "missing" | "unchanged" | "mode-changed") {
        return shown;
    }
    let text = |side: Side| -> std::result::Result<Vec<u8>, String> {
        let Some((mode, id)) = side else {
            return Ok(Vec::new());
        };
        if mode.is_tree() || mode.is_commit() {
            return Err(format!(
                "a {}",
                if mode.is_tree() {
                    "directory"
                } else {
                    "submodule"
                }
            ));
        }
        let size = repo
            .find_header(id)
            .map(|h| h.size())
            .map_err(|_| "unreadable".to_string())?;
        if size > MAX_COUNTED_BLOB {
            return Err(format!("large, {size} bytes"));
        }
        let data = repo
            .find_object(id)
            .map(|o| o.detach().data)
            .map_err(|_| "unreadable".to_string())?;
        if is_binary(&data) {
            return Err(format!("binary, {size} bytes"));
        }
        Ok(data)
    };
    match (text(old), text(new)) {
        (Ok(a), Ok(b)) => {
            let (lines, truncated) = unified(&a, &b, CONTEXT, MAX_DIFF_LINES);
            shown.diff = Some(lines);
            shown.truncated = truncated;
        }
        (Err(why), _) | (_, Err(why)) => shown.note = Some(why),
    }
    shown
}

/// A unified diff of two texts, `context` lines around each change, hunks that would overlap
/// merged as `git diff` does; every line printable and cut to `MAX_LINE_CHARS`, at most
/// `max_lines` lines (then the bool is true).
fn unified(old: &[u8], new: &[u8], context: u32, max_lines: usize) -> (Vec<String>, bool) {
    use gix::diff::blob::{Algorithm, Diff, InternedInput};
    let input = InternedInput::new(old, new);
    let mut diff = Diff::compute(Algorithm::Histogram, &input);
    diff.postprocess_lines(&input);
    let before: Vec<&[u8]> = input.before.iter().map(|t| input.interner[*t]).collect();
    let after: Vec<&[u8]> = input.after.iter().map(|t| input.interner[*t]).collect();
    let hunks: Vec<(Range<u32>, Range<u32>)> = diff.hunks().map(|h| (h.before, h.after)).collect();
    let mut out = Vec::new();
    let mut truncated = false;
    let mut push = |out: &mut Vec<String>, line: String| {
        if out.len() >= max_lines {
            truncated = true;
            return false;
        }
        out.push(line);
        true
    };
    let line = |mark: char, text: &[u8]| {
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        clip(&format!("{mark}{}", printable_bytes(text)))
    };
    let mut start = 0;
    while start < hunks.len() {
        // The hunks whose contexts touch go into one.
        let mut end = start + 1;
        while end < hunks.len()
            && hunks[end].0.start.saturating_sub(hunks[end - 1].0.end) <= 2 * context
        {
            end += 1;
        }
        let (first, last) = (&hunks[start], &hunks[end - 1]);
        let lead = first.0.start.min(context);
        let from_before = first.0.start - lead;
        let from_after = first.1.start.saturating_sub(lead);
        let to_before = (last.0.end + context).min(before.len() as u32);
        let trail = to_before - last.0.end;
        let to_after = (last.1.end + trail).min(after.len() as u32);
        let header = format!(
            "@@ -{} +{} @@",
            range_shown(from_before, to_before),
            range_shown(from_after, to_after)
        );
        if !push(&mut out, header) {
            break;
        }
        let mut at = from_before;
        let mut full = false;
        'hunks: for (b, a) in &hunks[start..end] {
            for i in at..b.start {
                if !push(&mut out, line(' ', before[i as usize])) {
                    full = true;
                    break 'hunks;
                }
            }
            for i in b.clone() {
                if !push(&mut out, line('-', before[i as usize])) {
                    full = true;
                    break 'hunks;
                }
            }
            for i in a.clone() {
                if !push(&mut out, line('+', after[i as usize])) {
                    full = true;
                    break 'hunks;
                }
            }
            at = b.end;
        }
        if !full {
            for i in at..to_before {
                if !push(&mut out, line(' ', before[i as usize])) {
                    full = true;
                    break;
                }
            }
        }
        if full {
            break;
        }
        start = end;
    }
    (out, truncated)
}

/// `start,count` as a hunk header writes it, from 1 (`0,0` for nothing).
fn range_shown(from: u32, to: u32) -> String {
    let count = to - from;
    match count {
        0 => format!("{from},0"),
        1 => format!("{}", from + 1),
        _ => format!("{},{count}", from + 1),
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
    commit: ObjectId,
    now: &dyn Fn() -> OffsetDateTime,
) -> Reboot {
    use crate::reboot::{act, plan};
    let file = &settings.reboot.reboot_file;
    let shown = |decision: &str, reason: String| Reboot {
        commit: commit.to_string(),
        file: run::shown(file),
        decision: decision.to_string(),
        reason: run::shown(&reason),
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
    let (mode, id) = match lookup(repo, tree, file) {
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

/// Bytes from the repository as they may be shown: UTF-8 as `run::shown` shows text (control
/// characters written `\xNN`), any byte that is not UTF-8 written `\xNN` too.
fn printable_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&run::printable(chunk.valid()));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// At most `MAX_LINE_CHARS` characters, "…" where it was cut.
fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_LINE_CHARS {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(MAX_LINE_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn described(commit: &CommitShown) -> String {
    match &commit.subject {
        Some(subject) => format!("{} \"{subject}\"", short(&commit.commit)),
        None => short(&commit.commit).to_string(),
    }
}

/// The plan for a person: the headline (what the next sync would do), then what it is made of.
fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let tip = short(&plan.tip.commit);
    let headline = match plan.outcome {
        "applied" => format!(
            "the next sync would apply {tip} ({}, attempt {}): exit 10",
            match plan.reason {
                Some("first-apply") => "first apply",
                Some("new-commit") => "new commit",
                Some("retry") => "retry of a failed commit",
                Some("always") => "--apply always",
                Some("rewind") => "rewind allowed by --allow-rewind",
                _ => "apply",
            },
            plan.attempt.unwrap_or(1)
        ),
        "up-to-date" => format!("up to date at {tip}: the next sync would run nothing"),
        "refused" => format!(
            "the next sync would refuse {tip}: {} no longer descends from the applied commit {} (force-push or rollback); nothing would run (sync exits 4; --allow-rewind would apply it)",
            plan.branch,
            plan.applied.as_ref().map(|a| short(&a.commit)).unwrap_or_default()
        ),
        "untrusted" => format!(
            "the next sync would refuse {tip} as untrusted: nothing would run (sync exits 5)"
        ),
        "suspended" => format!(
            "the next sync would hold {tip} back: applies are suspended; nothing would run"
        ),
        "reverted" => format!(
            "the next sync would hold {tip} back: it failed and was reverted; nothing would run until the branch moves (sync exits 1; --retry-reverted tries it again)"
        ),
        "revert-failed" => format!(
            "the next sync would hold {tip} back: it failed and so did its revert; nothing would run until the branch moves (sync exits 1)"
        ),
        other => format!("the next sync's outcome: {other}"),
    };
    line(format!("gitops plan: {headline}"));
    line(format!(
        "repository:  {} (branch {})",
        plan.repo_url, plan.branch
    ));
    match &plan.applied {
        Some(applied) => line(format!("applied:     {}", described(applied))),
        None => line("applied:     nothing yet".to_string()),
    }
    line(format!("tip:         {}", described(&plan.tip)));
    if let Some(p) = &plan.pending {
        line(format!(
            "pending:     {} after {} failed attempt{}: {}",
            short(&p.commit),
            p.attempts,
            if p.attempts == 1 { "" } else { "s" },
            p.last_error
        ));
    }
    let c = &plan.commits;
    if c.total > 0 || c.dropped.is_some() {
        let more = if c.more { "more than " } else { "" };
        let whose = match &plan.applied {
            Some(_) => "new",
            None => "on the branch",
        };
        line(format!("commits:     {more}{} {whose}", c.total));
        for commit in &c.list {
            line(format!("  {}", described(commit)));
        }
        if c.list.len() < c.total {
            line(format!("  … and {more}{} more", c.total - c.list.len()));
        }
        if let Some(dropped) = c.dropped {
            line(format!(
                "  the branch no longer has {dropped} commit{} of the applied history",
                if dropped == 1 { "" } else { "s" }
            ));
        }
    }
    let f = &plan.files;
    if f.total > 0 {
        let against = match &f.base {
            Some(_) => "",
            None => " (against an empty tree)",
        };
        let uncounted = match f.uncounted {
            0 => String::new(),
            n => format!(", {n} not counted"),
        };
        line(format!(
            "files:       {} changed, {} insertion{}(+), {} deletion{}(-){uncounted}{against}",
            f.total,
            f.insertions,
            if f.insertions == 1 { "" } else { "s" },
            f.deletions,
            if f.deletions == 1 { "" } else { "s" },
        ));
        let width = f
            .list
            .iter()
            .map(|c| c.path.chars().count())
            .max()
            .unwrap_or(0)
            .min(50);
        for change in &f.list {
            line(format!("  {}", stat_line(change, width)));
        }
        if f.list.len() < f.total {
            line(format!("  … and {} more files", f.total - f.list.len()));
        }
    }
    let e = &plan.entrypoint;
    let kind = e.kind.map(|k| format!(", {k}")).unwrap_or_default();
    let change = match e.change {
        "missing" | "deleted" => format!(
            "{}: the tip has no entry point, so the apply would fail",
            e.change
        ),
        other => other.to_string(),
    };
    line(format!("entry point: {} ({change}{kind})", e.path));
    if let Some(note) = &e.note {
        line(format!("  no diff: {note}"));
    }
    for diff_line in e.diff.iter().flatten() {
        line(format!("  {diff_line}"));
    }
    if e.truncated {
        line(format!(
            "  … the diff goes on (shown: {MAX_DIFF_LINES} lines)"
        ));
    }
    let s = &plan.signature;
    line(format!(
        "signature:   {}",
        match (s.verdict, &s.signer, &s.error) {
            ("trusted", Some(signer), _) => format!(
                "trusted: signed by {} ({} key {}){}",
                signer.principal,
                signer.method,
                signer.fingerprint,
                match s.checked {
                    Some(n) if n > 1 => format!("; {n} commits verified"),
                    _ => String::new(),
                }
            ),
            ("untrusted", _, Some(error)) => format!("untrusted: {error}"),
            ("not-checked", _, _) => "not checked: nothing would be applied".to_string(),
            _ => "not checked (no --allowed-signers or --gpg-keyring)".to_string(),
        }
    ));
    if plan.decision == "apply" {
        line(format!("health:      {}", health_words(&plan.health, tip)));
    }
    match &plan.suspension {
        Some(s) if s.active => line(format!(
            "suspended:   by {} since {} until {}{}: the pass fetches and runs nothing",
            s.by,
            s.at,
            s.until,
            s.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )),
        Some(s) => line(format!(
            "suspended:   no (the suspension by {} ended at {})",
            s.by, s.until
        )),
        None => line("suspended:   no".to_string()),
    }
    if let Some(r) = &plan.reboot {
        line(format!(
            "reboot:      {} ({} of {}{})",
            crate::reboot::plan::shown(&r.decision, &r.reason),
            r.file,
            short(&r.commit),
            if plan.would_apply {
                ", once applied"
            } else {
                ""
            }
        ));
    }
    if let Some(stale) = &plan.stale {
        line(format!("stale:       {stale}"));
    }
    for warning in &plan.warnings {
        line(format!("warning:     {warning}"));
    }
    out
}

/// One line of the diff stat: `M path | +3 -1`.
fn stat_line(change: &FileChange, width: usize) -> String {
    let mark = match change.change {
        "added" => 'A',
        "deleted" => 'D',
        "type-changed" => 'T',
        _ => 'M',
    };
    let counts = match (&change.note, change.insertions, change.deletions) {
        (Some(note), _, _) => note.clone(),
        (None, Some(0), Some(0)) if change.change == "mode-changed" => "mode".to_string(),
        (None, Some(i), Some(d)) => match (i, d) {
            (0, 0) => "0".to_string(),
            (i, 0) => format!("+{i}"),
            (0, d) => format!("-{d}"),
            (i, d) => format!("+{i} -{d}"),
        },
        _ => String::new(),
    };
    let pad = width.saturating_sub(change.path.chars().count());
    format!("{mark} {}{} | {counts}", change.path, " ".repeat(pad))
}

/// The health policy in words, for the tip `tip`.
fn health_words(h: &Health, tip: &str) -> String {
    let check = match (&h.check, h.from, h.missing) {
        (Some(check), _, true) => {
            format!("{check} (--health-check), which {tip} does not have: the apply would fail")
        }
        (Some(check), from, false) => format!(
            "{check} ({}), --health-timeout {}, {}",
            if from == Some("option") {
                "--health-check"
            } else {
                "the commit's own"
            },
            h.timeout,
            match h.retries {
                0 => "no retries".to_string(),
                n => format!("{n} retries {} apart", h.interval),
            }
        ),
        (None, _, _) => "none: the entry point's exit status alone decides".to_string(),
    };
    let failure = match (h.on_failure, &h.revert_to) {
        ("revert", Some(to)) => format!(
            "--on-failure revert: if it fails, the machine goes back to {} and {tip} is held back until the branch moves{}",
            short(to),
            match h.retry_reverted.as_str() {
                "never" => String::new(),
                after => format!(" (or --retry-reverted {after} passes)"),
            }
        ),
        ("revert", None) => format!(
            "--on-failure revert, with nothing applied to go back to: if it fails, {tip} stays pending and is retried every pass"
        ),
        _ => format!(
            "--on-failure stay: if it fails, {tip} stays pending and is retried every pass"
        ),
    };
    format!("{check}; {failure}")
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

    #[test]
    fn the_unified_diff_has_context_merged_hunks_and_a_bound() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n";
        let new = "1\n2\nthree\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\nfifteen\n";
        let (lines, truncated) = unified(old.as_bytes(), new.as_bytes(), 3, 100);
        assert!(!truncated);
        assert_eq!(
            lines,
            [
                "@@ -1,6 +1,6 @@",
                " 1",
                " 2",
                "-3",
                "+three",
                " 4",
                " 5",
                " 6",
                "@@ -12,4 +12,4 @@",
                " 12",
                " 13",
                " 14",
                "-15",
                "+fifteen",
            ]
        );
        // Changes 6 lines apart share their context: one hunk.
        let new = "1\n2\nthree\n4\n5\n6\n7\n8\nnine\n10\n";
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
        let (lines, _) = unified(old.as_bytes(), new.as_bytes(), 3, 100);
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("@@")).count(),
            1,
            "{lines:?}"
        );
        assert_eq!(lines[0], "@@ -1,10 +1,10 @@");
        // A new file, all added; and an empty one.
        let (lines, _) = unified(b"", b"a\nb\n", 3, 100);
        assert_eq!(lines, ["@@ -0,0 +1,2 @@", "+a", "+b"]);
        assert_eq!(
            unified(b"same\n", b"same\n", 3, 100).0,
            Vec::<String>::new()
        );
        // Bounded, and says so.
        let big: String = (0..1000).map(|i| format!("{i}\n")).collect();
        let (lines, truncated) = unified(b"", big.as_bytes(), 3, 50);
        assert!(truncated && lines.len() == 50);
    }

    #[test]
    fn hostile_bytes_are_shown_escaped_and_cut() {
        #[rustfmt::skip]
        let table: &[(&[u8], &str)] = &[
            (b"plain", "plain"),
            (b"\x1b]0;pwned\x07\x1b[2J", "\\x1b]0;pwned\\x07\\x1b[2J"),
            (b"a\rb", "a\\x0db"),
            (b"caf\xc3\xa9 \xff\xfe", "café \\xff\\xfe"),
            ("\u{9b}31m".as_bytes(), "\\x9b31m"),
        ];
        for (bytes, want) in table {
            assert_eq!(printable_bytes(bytes), *want, "{bytes:?}");
        }
        let long = "x".repeat(5000);
        assert_eq!(clip(&long).chars().count(), MAX_LINE_CHARS);
        let (lines, _) = unified(b"", b"\x1b[31mred\n", 3, 10);
        assert_eq!(lines[1], "+\\x1b[31mred");
    }

    #[test]
    fn the_diff_stat_line_says_what_changed_and_how_much() {
        let change = |change, insertions, deletions, note: Option<&str>| FileChange {
            path: "run.sh".into(),
            change,
            insertions,
            deletions,
            note: note.map(String::from),
        };
        #[rustfmt::skip]
        let table = [
            (change("modified", Some(3), Some(1), None), "M run.sh     | +3 -1"),
            (change("added", Some(9), Some(0), None), "A run.sh     | +9"),
            (change("deleted", Some(0), Some(2), None), "D run.sh     | -2"),
            (change("mode-changed", Some(0), Some(0), None), "M run.sh     | mode"),
            (change("type-changed", None, None, Some("binary, 3 -> 9 bytes")), "T run.sh     | binary, 3 -> 9 bytes"),
        ];
        for (change, want) in table {
            assert_eq!(stat_line(&change, 10), want);
        }
        assert_eq!(line_counts(b"a\nb\nc\n", b"a\nB\nc\nd\n"), (2, 1));
        assert!(is_binary(b"\x7fELF\0\0") && !is_binary(b"#!/bin/sh\n"));
    }
}
