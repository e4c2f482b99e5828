//! A commit made real: its tree written out of the store, the checkout link pointed at it, its
//! entry point and health check run.

use std::os::fd::RawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

use super::apply;
use super::health;
use super::state::Layout;
use crate::config::Settings;
use crate::exit::{fail, Exit, ResultExt};
use crate::git::{self, tree as checkout};
use crate::report::text::one_line;

/// Point the checkout link at `tree`. A failure is a configuration error: where the link goes
/// is the operator's choice, nothing in a commit can fix it.
pub(super) fn switch_checkout(settings: &Settings, tree: &Path) -> Result<()> {
    checkout::switch_link(&settings.checkout, tree).map_err(|e| {
        if e.downcast_ref::<crate::exit::Coded>().is_some() {
            e
        } else {
            e.context(crate::exit::Coded::new(
                Exit::Usage,
                format!(
                    "the checkout path {} cannot be used (choose a --checkout in a directory gitops can create and write)",
                    settings.checkout.display()
                ),
            ))
        }
    })
}

/// With nothing to apply, the checkout link must still show the applied tree: a new --checkout,
/// or a link removed or repointed by hand, is set right now rather than at the next commit.
/// The applied tree itself is written again from the store, which the pass has checked, when it
/// is missing (trees/ cleaned by hand) or is not a directory of ours (replaced while the state
/// directory was open to others).
pub(super) fn repair_checkout(
    settings: &Settings,
    layout: &Layout,
    applied: &str,
    umask: nix::sys::stat::Mode,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let tree = layout.trees().join(applied);
    let me = nix::unistd::geteuid().as_raw();
    let meta = std::fs::symlink_metadata(&tree).ok();
    let ours = meta.as_ref().is_some_and(|m| m.is_dir() && m.uid() == me);
    // Written with other --watch or --sparse settings (or other files to hold): the options
    // as they are now decide what the checkout shows, not the next commit.
    let reshaped = ours
        && meta
            .as_ref()
            .and_then(|m| checkout::flavor_of(&layout.trees(), m.ino()))
            .is_some_and(|f| f != flavor(settings, umask));
    if !ours || reshaped {
        let repo = git::open_store(&layout.repo(), settings)?;
        write_commit_tree(settings, layout, &repo, applied, umask)
            .or_exit(Exit::ApplyFailed, || {
                format!("{APPLIED_TREE_WRITE_FAILED} {} again", tree.display())
            })?;
        match reshaped {
            true => say!(
                "gitops: the applied tree {} was written for other --watch or --sparse settings; wrote it again",
                tree.display()
            ),
            false => say!(
                "gitops: the applied tree {} was missing or not gitops's own; wrote it again",
                tree.display()
            ),
        }
    }
    let Some(was) = checkout::link_problem(&settings.checkout, &tree) else {
        return Ok(());
    };
    switch_checkout(settings, &tree)?;
    say!(
        "gitops: the checkout link {} {was}; pointed it at the applied tree {}",
        settings.checkout.display(),
        tree.display()
    );
    Ok(())
}

/// Write the tree of `commit` fresh into `trees/<commit>`. It gets the modes an administrator's
/// `git clone` would give (0644/0755 under umask 022), so what the entry point copies out of it
/// (`cp motd /etc/motd`) is not left 0600; the 0700 state directory above it keeps it private
/// all the same.
pub(super) fn write_commit_tree(
    settings: &Settings,
    layout: &Layout,
    repo: &gix::Repository,
    commit: &str,
    umask: nix::sys::stat::Mode,
) -> Result<std::path::PathBuf> {
    let id = gix::ObjectId::from_hex(commit.as_bytes())?;
    let max = settings.max_file_size;
    let only = sparse_paths(settings, repo, id);
    let flavor = flavor(settings, umask);
    let ours = nix::sys::stat::umask(umask);
    let prepared = checkout::prepare(
        &layout.trees(),
        commit,
        &flavor,
        |dir| {
            git::write_tree(repo, id, dir, max, only.as_deref()).and_then(|()| {
                let mode = 0o777 & !umask.bits();
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                    .with_context(|| format!("could not set the mode of {}", dir.display()))
            })
        },
        |dir, base| match only {
            // The diff would bring in the others' files: a sparse tree is small, written afresh.
            Some(_) => anyhow::bail!("a sparse tree is written afresh"),
            None => checkout::update_tree(repo, base, id, dir, max),
        },
    );
    nix::sys::stat::umask(ours);
    prepared
}

/// What shapes a tree besides its commit, as its manifest records it: a tree written under
/// another (a spare, or the applied tree after the options changed) is not used as it is. A
/// sparse tree's paths follow from the commit and the options that name them, so the options
/// stand for the paths, and telling needs no store.
fn flavor(settings: &Settings, umask: nix::sys::stat::Mode) -> String {
    let bits = umask.bits();
    match settings.watch.sparse {
        true => format!(
            "umask {bits:o} sparse {}",
            super::observe::scope_key(settings)
        ),
        false => format!("umask {bits:o}"),
    }
}

/// With `--sparse`, the paths of `commit` a tree holds: the machine's (`observe::machine_paths`).
fn sparse_paths(
    settings: &Settings,
    repo: &gix::Repository,
    commit: gix::ObjectId,
) -> Option<Vec<String>> {
    if !settings.watch.sparse {
        return None;
    }
    let tree = repo.find_commit(commit).ok()?.tree_id().ok()?.detach();
    super::observe::machine_paths(settings, repo, tree)
}

/// How the failure to write a commit's tree out of the store starts.
pub(super) const TREE_WRITE_FAILED: &str = "could not write the tree of";
/// The same for the applied tree, written again on a pass with nothing to apply.
pub(super) const APPLIED_TREE_WRITE_FAILED: &str = "could not write the applied tree";

/// The store looked at closely after a read from it failed and, when damaged, fetched again:
/// the fresh store when its tip is still `tip` (a newer one is the next pass's to apply).
pub(super) fn heal_store(
    settings: &Settings,
    layout: &Layout,
    applied: Option<gix::ObjectId>,
    tip: gix::ObjectId,
) -> Option<gix::Repository> {
    match git::after_read_failure(&layout.repo(), settings, applied) {
        Ok(Some(fetched)) if fetched.tip == tip => git::open_store(&layout.repo(), settings).ok(),
        Ok(_) => None,
        Err(e) => {
            say!("gitops: warning: {}", one_line(&e));
            None
        }
    }
}

/// The commit being applied and where its run goes.
pub(super) struct Target<'a> {
    pub commit: &'a str,
    /// The commit the machine had before: the applied one, or for a revert the failed one.
    pub previous: &'a str,
    /// Why the entry point runs, as GITOPS_REASON tells it: apply, retry, revert or always.
    pub reason: &'static str,
    pub branch: &'a str,
    pub log: &'a Path,
    pub umask: nix::sys::stat::Mode,
    pub lock_fd: RawFd,
}

/// How far an apply got, whatever it returned.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// The checkout link was pointed at the commit's tree: from then on the machine may hold
    /// some of the commit, and a revert has something to undo.
    pub switched: bool,
    /// The entry point chosen in the commit's tree, and why.
    pub entrypoint: Option<crate::fleet::entry::Choice>,
    /// How long the entry point ran, in ms.
    pub apply_ms: Option<u64>,
}

/// Write the tree, point the checkout at it, run the entry point and the health check.
pub(super) fn apply_commit(
    settings: &Settings,
    layout: &Layout,
    repo: &gix::Repository,
    target: &Target<'_>,
    progress: &mut Progress,
) -> Result<()> {
    let (tip, branch, log) = (target.commit, target.branch, target.log);
    let tree = write_commit_tree(settings, layout, repo, tip, target.umask)
        // Whatever stopped the write (a path gix refuses, a full disk, a file too large, a signal),
        // this commit did not apply: an apply failure, retried, with the reason in its log.
        .or_exit(Exit::ApplyFailed, || {
            format!("{TREE_WRITE_FAILED} {}", &tip[..tip.len().min(12)])
        })
        .inspect_err(|e| {
            apply::note_in_log(log, &one_line(e));
        })?;
    switch_checkout(settings, &tree).inspect_err(|e| {
        apply::note_in_log(log, &one_line(e));
    })?;
    progress.switched = true;
    let chosen = crate::fleet::entry::choose(&settings.entrypoints, &settings.identity, |p| {
        std::fs::symlink_metadata(tree.join(p)).is_ok()
    });
    let line = format!("entry point {}: {}", chosen.path, chosen.why);
    say!("gitops: {line}");
    apply::note_in_log(log, &line);
    let chosen = progress.entrypoint.insert(chosen);
    let who = &settings.identity;
    let mut env = vec![
        ("GITOPS_COMMIT", tip.to_string()),
        ("GITOPS_PREVIOUS_COMMIT", target.previous.to_string()),
        ("GITOPS_REASON", target.reason.to_string()),
        ("GITOPS_REPO_URL", settings.repo_url.redacted.clone()),
        ("GITOPS_BRANCH", branch.to_string()),
        ("GITOPS_CHECKOUT", settings.checkout.display().to_string()),
        ("GITOPS_HOST", who.host.clone().unwrap_or_default()),
        ("GITOPS_GROUPS", who.groups_text()),
    ];
    // The alias may carry the same credentials; the entry point gets what status shows.
    if std::env::var_os("REPO_URL").is_some() {
        env.push(("REPO_URL", settings.repo_url.redacted.clone()));
    }
    let run = apply::Run {
        checkout: &settings.checkout,
        tree: &tree,
        entrypoint: &chosen.path,
        env,
        timeout: settings.apply_timeout,
        log,
        umask: target.umask,
        lock_fd: Some(target.lock_fd),
        role: apply::ENTRY_POINT,
    };
    let started = std::time::Instant::now();
    let ran = apply::run(&run);
    progress.apply_ms = Some(started.elapsed().as_millis().try_into().unwrap_or(u64::MAX));
    ran?.map_err(|why| fail(Exit::ApplyFailed, why))?;
    // The entry point's exit status says it ran; the health check, that the machine works.
    match health::chosen(&settings.health, &tree) {
        // A check named by --health-check that the commit reverted to predates: that commit
        // applied without it, and a revert must not fail for want of a file it never had.
        Some(program)
            if target.reason == "revert"
                && std::fs::symlink_metadata(tree.join(program)).is_err() =>
        {
            let line = format!(
                "the health check {program} is not in {}, which applied without it: the revert is checked by its entry point alone",
                &target.commit[..target.commit.len().min(12)]
            );
            say!("gitops: {line}");
            apply::note_in_log(log, &line);
            Ok(())
        }
        Some(program) => health::check(&settings.health, program, &run)?
            .map_err(|why| fail(Exit::ApplyFailed, why)),
        None => Ok(()),
    }
}

/// Go back to `applied` after the commit of `failed` failed with `why`: its tree written again
/// out of the store, the link pointed back at it, its entry point (GITOPS_REASON=revert) and
/// health check run again, into the failed apply's log. Once: whatever it returns, nothing
/// more is tried in this pass. A tree the store cannot give whole gets the store `heal`ed and
/// is written once more (nothing of the revert has run yet); the healed store comes back with
/// the result, for the rest of the pass to read.
#[allow(clippy::too_many_arguments)]
pub(super) fn revert(
    settings: &Settings,
    layout: &Layout,
    repo: &gix::Repository,
    applied: &str,
    failed: &Target<'_>,
    why: &anyhow::Error,
    heal: impl FnOnce() -> Option<gix::Repository>,
    now: time::OffsetDateTime,
) -> (Result<()>, Option<gix::Repository>) {
    let short = |c: &str| c.get(..12).unwrap_or(c).to_string();
    let line = format!(
        "{} failed ({}); reverting to the last applied commit {}",
        short(failed.commit),
        one_line(why),
        short(applied)
    );
    say!("gitops: {line}");
    apply::note_in_log(failed.log, &line);
    let target = Target {
        commit: applied,
        previous: failed.commit,
        reason: "revert",
        branch: failed.branch,
        log: failed.log,
        umask: failed.umask,
        lock_fd: failed.lock_fd,
    };
    // A revert runs the applied commit's code again, so it is held to today's signers as every
    // commit a pass runs is (--apply always checks the applied commit again too): a key whose
    // line was removed since it signed (a stolen one) gets nothing run again.
    if let Some(trust) = &settings.trust {
        let checked = gix::ObjectId::from_hex(applied.as_bytes())
            .map_err(anyhow::Error::from)
            .and_then(|id| {
                git::trust::verify(repo, trust, None, id, now)
                    .map_err(|untrusted| fail(Exit::Untrusted, untrusted.to_string()))
            });
        if let Err(e) = checked {
            apply::note_in_log(failed.log, &format!("the revert failed: {}", one_line(&e)));
            return (Err(e), None);
        }
    }
    let mut progress = Progress::default();
    let mut result = apply_commit(settings, layout, repo, &target, &mut progress);
    // The failed commit's tree may have been the spare brought up to date, reading only the
    // blobs it changed; the applied tree is written whole, and is the first read of the rest:
    // damage there (bit rot the quick look does not hash) is healed as for the commit's own.
    let mut healed = None;
    if result
        .as_ref()
        .is_err_and(|e| e.to_string().starts_with(TREE_WRITE_FAILED))
    {
        if let Some(fresh) = heal() {
            result = apply_commit(settings, layout, &fresh, &target, &mut progress);
            healed = Some(fresh);
        }
    }
    let result = result
        .inspect_err(|e| {
            apply::note_in_log(failed.log, &format!("the revert failed: {}", one_line(e)));
        })
        .inspect(|()| {
            apply::note_in_log(failed.log, &format!("reverted to {}", short(applied)));
        });
    (result, healed)
}

/// Create this apply's log file, new (O_EXCL, O_NOFOLLOW): a file or link already there under
/// that name, planted or from a pass in the same second, is never written through; the next
/// free name is taken instead.
pub(super) fn create_log(logs: &Path, stamp: &str, commit: &str) -> Result<std::path::PathBuf> {
    let mut last = None;
    for n in 1..=100 {
        let path = match n {
            1 => apply::log_path(logs, stamp, commit),
            n => apply::log_path(logs, stamp, &format!("{commit}-{n}")),
        };
        match crate::files::create_new(&path) {
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(path),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("could not create the apply log {}", path.display()))
            }
        }
    }
    let taken = last.map(|p| p.display().to_string()).unwrap_or_default();
    Err(anyhow::anyhow!(
        "could not create an apply log: {taken} and 99 other names are taken; remove old files from {}",
        logs.display()
    ))
}
