//! Where the remote stands against what is applied, and the decision a pass takes from it:
//! shared by the pass and `gitops plan`, so the two never decide differently.

use time::OffsetDateTime;

use super::commit::{APPLIED_TREE_WRITE_FAILED, TREE_WRITE_FAILED};
use super::decide::{decide, Action, Reason};
use super::health;
use super::run::{committed_at_of, Staged};
use super::state::{Layout, Outcome, State};
use crate::config::Settings;
use crate::exit::{fail, Exit};
use crate::fleet::{self, gate::Gate};
use crate::git::{self, Relation};

/// Where the remote stands against what is applied: what a pass decides from, and what
/// `gitops plan` shows.
pub(super) struct Observed {
    pub fetched: git::Fetched,
    /// The fetched tip, as hex.
    pub tip: String,
    /// state.json's applied commit.
    pub in_state: Option<gix::ObjectId>,
    /// The store's record of the applied commit (refs/gitops/applied).
    pub recorded: Option<gix::ObjectId>,
    /// The applied commit the tip is compared with: state.json's, or the store's record.
    pub applied_id: Option<gix::ObjectId>,
    /// A later tip that concerned nothing this machine watches (state.seen): the tip must
    /// descend from it, and is the same when it is that one.
    pub seen: Option<gix::ObjectId>,
    pub relation: Relation,
    /// The tip's committer time, when the stale check read it from the store.
    pub tip_committed_at: Option<String>,
    /// The store, when finding the above needed it open.
    pub store: Option<gix::Repository>,
}

/// Fetch, and relate the tip to the applied commit. Sets state's branch and stale tip, and
/// `remote_commit` as soon as the fetch worked.
pub(super) fn observe(
    settings: &Settings,
    layout: &Layout,
    state: &mut State,
    remote_commit: &mut Option<String>,
    now: &dyn Fn() -> OffsetDateTime,
) -> Staged<Observed> {
    let fetch_failed = |e| (Outcome::FetchFailed, e);
    let in_state = state
        .applied
        .as_ref()
        .and_then(|a| gix::ObjectId::from_hex(a.commit.as_bytes()).ok());
    // state.json's commit goes with the fetch: a store rebuilt because it was damaged records
    // it again, so a rewind is refused after a heal as before it.
    // After a pass that failed on the store's side of things (its fetch, or writing a tree out
    // of it), the store gets the closer look (every pack hashed whole): damage the quick look
    // every pass pays for cannot see would otherwise fail every pass from then on.
    let suspect = state.last_pass.as_ref().is_some_and(|p| {
        p.outcome == Outcome::FetchFailed
            || p.error
                .as_deref()
                .is_some_and(|e| e.starts_with(APPLIED_TREE_WRITE_FAILED))
    }) || state
        .pending
        .as_ref()
        .is_some_and(|p| p.last_error.contains(TREE_WRITE_FAILED));
    let fetched = git::fetch(&layout.repo(), settings, in_state, suspect).map_err(fetch_failed)?;
    let tip = fetched.tip.to_string();
    *remote_commit = Some(tip.clone());
    state.branch = Some(fetched.branch.clone());
    // The store is opened (again: the fetch ran on its own thread) only when a pass needs it:
    // the usual pass, nothing new, never does.
    let mut store = None;
    let open_store = || -> Staged<gix::Repository> {
        git::open_store(&layout.repo(), settings).map_err(fetch_failed)
    };

    // The commit the tip must descend from: state.json's, or the store's record when state.json
    // lost it or is an older copy.
    let recorded = match git::recorded_applied(&layout.repo()) {
        Ok(recorded) => recorded,
        // Unreadable is not "none": with state.json lost too, any older commit would pass.
        Err(why) if settings.allow_rewind => {
            say!(
                "gitops: warning: the store's record of the applied commit ({}) {why}; --allow-rewind: it is written again by this pass",
                git::APPLIED_REF
            );
            None
        }
        Err(why) => {
            return Err((
                Outcome::Refused,
                fail(
                    Exit::Refused,
                    format!(
                        "the store's record of the applied commit ({}) {why}, so going back to an older commit cannot be detected; pass --allow-rewind once to apply the branch as it is and record it again",
                        layout.repo().join(git::APPLIED_REF).display()
                    ),
                ),
            ))
        }
    };
    // Whether the record descends from state.json's commit: asked only when the two differ.
    let record_is_newer = match (in_state, recorded) {
        (Some(a), Some(r)) if a != r => {
            let repo = store.insert(open_store()?);
            matches!(git::relation(repo, Some(a), r), Ok(Relation::Descends))
        }
        _ => false,
    };
    let applied_id = super::decide::floor(in_state, recorded, record_is_newer);
    let from_record = applied_id != in_state;
    if from_record {
        let r = applied_id.map(|r| r.to_string()).unwrap_or_default();
        say!(
            "gitops: warning: state.json does not record the last applied commit, the store does ({}, {}): the branch must descend from it",
            r.get(..12).unwrap_or_default(),
            git::APPLIED_REF
        );
    }
    // Only while state.json's applied commit is the one it was seen from: an apply since, or
    // a record taken from the store, leaves it behind.
    let seen = state
        .current_seen()
        .filter(|_| !from_record)
        .and_then(|s| gix::ObjectId::from_hex(s.commit.as_bytes()).ok());
    let floor = seen.or(applied_id);
    let mut relation = if floor == Some(fetched.tip) {
        Relation::Same
    } else {
        let repo = store.insert(open_store()?);
        git::relation(repo, floor, fetched.tip).map_err(fetch_failed)?
    };
    // A tip skipped under other options (--watch widened or dropped, another --host or
    // --group) may change what the machine reads now: decided again, as a new commit, or it
    // would wait for the next commit. It still descends from the applied commit, which it was
    // seen from.
    if relation == Relation::Same
        && seen.is_some()
        && seen != applied_id
        && !state.seen.as_ref().is_some_and(|s| {
            fleet::watch::still_skipped(&settings.watch, s.scope.as_deref(), &scope_key(settings))
        })
    {
        relation = Relation::Descends;
    }
    // The store's commit, unknown to state.json, is applied again: nothing records its outcome.
    if from_record && relation == Relation::Same {
        relation = Relation::Fresh;
    }
    // The tip's committer time, when the stale check read it from the store: the apply records it.
    let mut tip_committed_at = None;
    state.stale = match settings.max_commit_age {
        Some(max_age) => {
            let seen_tip = state.seen.as_ref().filter(|s| s.commit == tip);
            let committed_at = match (state.applied.as_ref(), seen_tip) {
                (Some(a), _) if a.commit == tip => a.committed_at.clone(),
                (_, Some(s)) if s.committed_at.is_some() => s.committed_at.clone(),
                _ => {
                    let repo = match &store {
                        Some(repo) => repo,
                        None => store.insert(open_store()?),
                    };
                    tip_committed_at = committed_at_of(repo, fetched.tip);
                    tip_committed_at.clone()
                }
            };
            super::decide::stale(&tip, committed_at, max_age, now())
        }
        None => None,
    };
    Ok(Observed {
        fetched,
        tip,
        in_state,
        recorded,
        applied_id,
        seen,
        relation,
        tip_committed_at,
        store,
    })
}

/// The pass's decision from what `observe` found. `gitops plan` asks it too, through here, so
/// that the plan and the pass never decide differently.
pub(super) fn next_action(
    settings: &Settings,
    state: &State,
    relation: Relation,
    tip: &str,
    now: OffsetDateTime,
) -> Action {
    let held = health::held_back(state.pending.as_ref(), settings.health.retry_reverted, now);
    decide(
        relation,
        tip,
        state.pending.as_ref(),
        held,
        settings.apply,
        settings.allow_rewind,
    )
}

/// Whether this machine runs `tip` now (`--watch`, `.gitops/rollout`), for an apply
/// `next_action` decided for `reason`. Reads the two trees' entries at the watched paths only:
/// as many tree lookups as the paths are deep, whatever the size of the repository. With the
/// gate, the facts it was decided from (`gitops plan` shows them). Err: the tip's rollout
/// cannot be read, said as a sentence for the operator.
#[allow(clippy::too_many_arguments)]
pub(super) fn gate(
    settings: &Settings,
    state: &State,
    repo: &gix::Repository,
    applied: Option<gix::ObjectId>,
    tip: gix::ObjectId,
    reason: Reason,
    first_seen: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(Gate, fleet::gate::Facts), String> {
    let gated =
        applied.is_some() && matches!(reason, Reason::NewCommit | Reason::Retry | Reason::Rewind);
    let always = settings.apply == crate::config::ApplyPolicy::Always;
    let run = fleet::gate::Facts {
        gated: false,
        watched_changed: None,
        rollout: None,
        own_only: false,
        held_unchanged: false,
        always,
    };
    if !gated {
        return Ok((Gate::Run, run));
    }
    let tree_of = |commit: gix::ObjectId| {
        repo.find_commit(commit)
            .ok()
            .and_then(|c| c.tree_id().ok())
            .map(|t| t.detach())
    };
    // A tree that cannot be read: the apply says why.
    let Some((old, new)) = applied.and_then(tree_of).zip(tree_of(tip)) else {
        return Ok((Gate::Run, run));
    };
    let who = &settings.identity;
    let paths = machine_paths(settings, repo, new);
    let watched_changed = paths.as_ref().map(|paths| {
        fleet::watch::first_change(
            paths,
            |p| git::tree::entry_at(repo, old, p),
            |p| git::tree::entry_at(repo, new, p),
        )
        .is_some()
    });
    let rollout = match watched_changed {
        // Skipped whatever the rollout says: not read.
        Some(false) => None,
        _ => rollout(settings, repo, old, new, tip, paths.as_deref(), first_seen, now).map_err(|why| {
            format!(
                "the rollout of {} cannot be read ({}): {why}; fix it with a new commit (a commit that changes {} reaches every machine at once)",
                tip.to_hex_with_len(12),
                fleet::rollout::FILE,
                fleet::rollout::FILE
            )
        })?,
    };
    let own_only = rollout.is_some()
        && who
            .host
            .as_deref()
            .is_some_and(|host| only_own_changed(repo, old, new, host));
    // A reverted commit stays held back while the branch only moves elsewhere: in a fleet's
    // repository other hosts' commits keep coming, and each would otherwise bring the same
    // failing change back to this machine, to fail and be reverted again.
    let held = health::held_back(state.pending.as_ref(), settings.health.retry_reverted, now);
    let failed = state
        .pending
        .as_ref()
        .filter(|_| held)
        .and_then(|p| gix::ObjectId::from_hex(p.commit.as_bytes()).ok())
        .filter(|p| *p != tip)
        .and_then(tree_of);
    let held_unchanged = match (&paths, failed) {
        (Some(paths), Some(failed)) => fleet::watch::first_change(
            paths,
            |p| git::tree::entry_at(repo, failed, p),
            |p| git::tree::entry_at(repo, new, p),
        )
        .is_none(),
        _ => false,
    };
    let facts = fleet::gate::Facts {
        gated,
        watched_changed,
        rollout,
        own_only,
        held_unchanged,
        always,
    };
    Ok((fleet::gate::decide(&facts, now), facts))
}

/// Whether the two trees differ only under hosts/<host>/: their root entries but `hosts`, then
/// hosts/'s entries but `<host>`, compared. Two tree reads each side, whatever the size of
/// the commit; anything that cannot be read is a difference.
fn only_own_changed(
    repo: &gix::Repository,
    old: gix::ObjectId,
    new: gix::ObjectId,
    host: &str,
) -> bool {
    let entries = |tree: gix::ObjectId,
                   except: &str|
     -> Option<Vec<(Vec<u8>, gix::objs::tree::EntryMode, gix::ObjectId)>> {
        let tree = repo.find_tree(tree).ok()?;
        let decoded = tree.decode().ok()?;
        Some(
            decoded
                .entries
                .iter()
                .filter(|e| e.filename != except.as_bytes())
                .map(|e| (e.filename.to_vec(), e.mode, e.oid.to_owned()))
                .collect(),
        )
    };
    let hosts_of = |tree: gix::ObjectId| match git::tree::entry_at(repo, tree, "hosts") {
        Ok(Some((mode, id))) if mode.is_tree() => Some(id),
        _ => None,
    };
    let (Some(old_hosts), Some(new_hosts)) = (hosts_of(old), hosts_of(new)) else {
        return false;
    };
    let same = |a: Option<_>, b: Option<_>| a.is_some() && a == b;
    same(entries(old, "hosts"), entries(new, "hosts"))
        && same(entries(old_hosts, host), entries(new_hosts, host))
}

/// The paths of the tree `tree` that concern this machine, what the gate compares and a sparse
/// tree holds: the watched ones, its entry point and those that would take its place,
/// .gitops/ and a named health check. None: the whole tree.
pub(super) fn machine_paths(
    settings: &Settings,
    repo: &gix::Repository,
    tree: gix::ObjectId,
) -> Option<Vec<String>> {
    let mut paths = fleet::watch::scope(
        &settings.watch,
        &settings.identity,
        &settings.entrypoints,
        |p| git::tree::entry_at(repo, tree, p).is_ok_and(|e| e.is_some()),
    )?;
    if let Some(check) = &settings.health.health_check {
        let check = check.trim_end_matches('/').to_string();
        if !paths.contains(&check) {
            paths.push(check);
        }
    }
    Some(paths)
}

/// This machine's `watch::scope_key`, from its settings.
pub(super) fn scope_key(settings: &Settings) -> String {
    fleet::watch::scope_key(
        &settings.watch,
        &settings.identity,
        &settings.entrypoints,
        settings.health.health_check.as_deref(),
    )
}

/// When this machine first saw `tip` waiting for its wave: the wait it recorded for that
/// commit, else now.
pub(super) fn first_seen(
    waiting: Option<&super::state::Waiting>,
    tip: &str,
    now: OffsetDateTime,
) -> OffsetDateTime {
    waiting
        .filter(|w| w.commit == tip)
        .and_then(|w| w.since.as_deref())
        .and_then(|at| {
            OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()
        })
        // A record from the future (a clock set back since) is no evidence of anything.
        .filter(|at| *at <= now)
        .unwrap_or(now)
}

/// The most hosts a rollout ranks a machine among: beyond it, a hostile hosts/ would only cost
/// time.
const MAX_INVENTORY: usize = 100_000;

/// The largest hosts/ (or groups/) tree object read for the inventory: 100,000 entries of
/// 64-byte names with their modes and ids.
const MAX_INVENTORY_BYTES: u64 = 10 << 20;

/// Where the tip stands in its rollout for this machine; None when it has no .gitops/rollout.
/// `paths`: what the machine watches (see `fleet::watch::scope`), None: the whole tree.
#[allow(clippy::too_many_arguments)]
fn rollout(
    settings: &Settings,
    repo: &gix::Repository,
    old: gix::ObjectId,
    new: gix::ObjectId,
    tip: gix::ObjectId,
    paths: Option<&[String]>,
    first_seen: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<Option<fleet::gate::Rollout>, String> {
    use fleet::rollout::{self, FILE, MAX_FILE_BYTES};
    let Some((mode, id)) = git::tree::entry_at(repo, new, FILE)? else {
        return Ok(None);
    };
    if git::tree::entry_at(repo, old, FILE).ok().flatten() != Some((mode, id)) {
        return Ok(Some(fleet::gate::Rollout {
            changes_rollout: true,
            wave: 0,
            waves: 1,
            due: now,
        }));
    }
    if !mode.is_blob() {
        return Err(format!("{FILE} is not a file"));
    }
    let size = repo.find_header(id).map_err(|e| e.to_string())?.size();
    if size > MAX_FILE_BYTES as u64 {
        return Err(format!(
            "{FILE} is {size} bytes, more than the {MAX_FILE_BYTES} it may have"
        ));
    }
    let blob = repo.find_blob(id).map_err(|e| e.to_string())?;
    let text = std::str::from_utf8(&blob.data).map_err(|_| format!("{FILE} is not UTF-8 text"))?;
    let plan = rollout::parse(text)?;
    let who = &settings.identity;
    let inventory = inventory(repo, new, rollout::inventory_dir(plan.by));
    let place = rollout::place(
        plan.by,
        who.host.as_deref(),
        &inventory,
        rollout::machine_id().as_deref(),
        &who.groups,
    );
    let wave = rollout::wave(&plan, place, inventory.len())?;
    // A date no clock holds (a hostile or broken commit's) is the nearest one that can be held,
    // as any other date is taken at its word: read as "now", it would move with every pass and a
    // later wave would wait for ever.
    let committed_at = git::commit_time(repo, paced_by(repo, tip, new, paths))
        .map(|t| {
            OffsetDateTime::from_unix_timestamp(t).unwrap_or(match t < 0 {
                true => time::PrimitiveDateTime::MIN.assume_utc(),
                false => time::PrimitiveDateTime::MAX.assume_utc(),
            })
        })
        .unwrap_or(now)
        // A date ahead of the machine's clock (a committer's clock set wrong, or a hostile
        // date) would hold every wave, canaries too, until then: the rollout starts when this
        // machine first saw the tip at the latest. An explicit rollout-start is a schedule and
        // is kept.
        .min(first_seen);
    Ok(Some(fleet::gate::Rollout {
        changes_rollout: false,
        wave,
        waves: plan.waves.len(),
        due: rollout::due_at(&plan, wave, committed_at),
    }))
}

/// The most commits `paced_by` looks back: beyond it, the tip's own date (the later, careful
/// start) is taken.
const MAX_PACE_WALK: usize = 1000;

/// The commit whose date starts the tip's rollout here: back along the tip's first parents, the
/// first commit whose parent's watched `paths` differ from the tip's (in `tip_tree`), that is the
/// one that gave the machine's files what the tip has. A commit since that changes nothing the
/// machine reads does not start its wave again: in a fleet's repository such commits keep
/// coming, and a later wave would otherwise never get a change. The tip itself when the whole
/// tree is watched, or when the walk cannot tell (the later start is the careful one).
fn paced_by(
    repo: &gix::Repository,
    tip: gix::ObjectId,
    tip_tree: gix::ObjectId,
    paths: Option<&[String]>,
) -> gix::ObjectId {
    let Some(paths) = paths else {
        return tip;
    };
    let mut commit = tip;
    for _ in 0..MAX_PACE_WALK {
        let Ok(found) = repo.find_commit(commit) else {
            return tip;
        };
        let Some(parent) = found.parent_ids().next().map(|p| p.detach()) else {
            // The root commit gave the files what they are.
            return commit;
        };
        let Some(parent_tree) = repo
            .find_commit(parent)
            .ok()
            .and_then(|c| c.tree_id().ok())
            .map(|t| t.detach())
        else {
            return commit;
        };
        let changed = fleet::watch::first_change(
            paths,
            |p| git::tree::entry_at(repo, parent_tree, p),
            |p| git::tree::entry_at(repo, tip_tree, p),
        );
        if changed.is_some() {
            return commit;
        }
        commit = parent;
    }
    tip
}

/// The hosts (or groups) the repository lists: the directories under `dir` (hosts/, groups/)
/// whose names can be a host's.
fn inventory(repo: &gix::Repository, tree: gix::ObjectId, dir: &str) -> Vec<String> {
    let Ok(Some((mode, id))) = git::tree::entry_at(repo, tree, dir) else {
        return Vec::new();
    };
    // A listing larger than this is not an inventory but a hostile tree: its decode alone
    // would cost every pass. The machine is then placed by its machine id.
    let small = repo
        .find_header(id)
        .is_ok_and(|h| h.size() <= MAX_INVENTORY_BYTES);
    let Some(hosts) = (mode.is_tree() && small)
        .then(|| repo.find_tree(id).ok())
        .flatten()
    else {
        return Vec::new();
    };
    let Ok(decoded) = hosts.decode() else {
        return Vec::new();
    };
    decoded
        .entries
        .iter()
        .filter(|e| e.mode.is_tree())
        .filter_map(|e| std::str::from_utf8(e.filename).ok())
        .filter(|name| fleet::identity::valid_name(name))
        .take(MAX_INVENTORY)
        .map(str::to_string)
        .collect()
}
