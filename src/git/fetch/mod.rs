//! Fetching the followed branch, bounded by --fetch-timeout, with a fix named for every failure.

use std::io::BufWriter;
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use gix::bstr::ByteSlice;
use gix::protocol::transport::client::blocking_io::Transport;
use gix::remote::Direction;
use gix::ObjectId;

use crate::config::Settings;
use crate::exit::{fail, Exit};

use super::store::{alloc_limit, open_store, remove_pack_leftovers, ssh_log, tofu_known_hosts};

mod transport;
mod why;

use transport::*;
use why::*;

/// The remote tip of the followed branch after a fetch.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub tip: ObjectId,
    pub branch: String,
}

/// Fetch only the followed branch (the remote's HEAD branch when none is configured), bounded
/// by `--fetch-timeout`. Every failure here exits 3. In a shallow store (--depth), a new tip
/// that the history at hand does not show descending from `applied` (or the store's record of
/// it) is fetched again with the whole history, so that a rewind is told from a descendant by
/// proof, never by what a shallow boundary happens to hide.
pub(super) fn fetch_into(
    store: &Path,
    settings: &Settings,
    applied: Option<ObjectId>,
) -> Result<Fetched> {
    let fetched = fetch_once(store, settings, History::AsConfigured)?;
    if !store.join("shallow").exists() {
        return Ok(fetched);
    }
    let mut applied: Vec<ObjectId> = applied
        .into_iter()
        .chain(super::store::recorded_applied(store).ok().flatten())
        .filter(|a| *a != fetched.tip)
        .collect();
    applied.dedup();
    let Some(unproven) = unproven_descent(store, settings, &applied, fetched.tip)? else {
        return Ok(fetched);
    };
    say!(
        "gitops: the shallow history does not show {} descending from the applied commit {}: fetching the whole history to know",
        short(&fetched.tip),
        short(&unproven)
    );
    fetch_once(store, settings, History::Whole)
}

fn short(id: &ObjectId) -> String {
    id.to_hex_with_len(12).to_string()
}

/// The first of `applied` that the store's history does not show `tip` descending from.
fn unproven_descent(
    store: &Path,
    settings: &Settings,
    applied: &[ObjectId],
    tip: ObjectId,
) -> Result<Option<ObjectId>> {
    if applied.is_empty() {
        return Ok(None);
    }
    let repo = open_store(store, settings)?;
    Ok(applied.iter().copied().find(|&a| {
        // An error (a parent beyond the boundary, the tip itself not sent) proves nothing either.
        !matches!(
            super::store::relation(&repo, Some(a), tip),
            Ok(super::store::Relation::Descends)
        )
    }))
}

/// How much history a fetch asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum History {
    /// --depth commits into a new store, then what the branch adds.
    AsConfigured,
    /// All of it: the shallow boundary removed.
    Whole,
}

fn fetch_once(store: &Path, settings: &Settings, history: History) -> Result<Fetched> {
    let shown = &settings.repo_url.redacted;
    let what = match &settings.branch {
        Some(b) => format!("branch {b} of {shown}"),
        None => format!("the default branch of {shown}"),
    };
    if settings
        .repo_url
        .credentials
        .as_ref()
        .is_some_and(|(_, password)| !password.is_empty())
    {
        say!(
            "gitops: warning: the repository URL {} carries a password; move it to --http-token-file",
            settings.repo_url.redacted
        );
    }
    if settings.transport.ssh_accept_new && settings.repo_url.scheme == gix::url::Scheme::Ssh {
        prepare_tofu_file(&tofu_known_hosts(&settings.state_dir))?;
    }
    remove_pack_leftovers(store);
    let log = ssh_log(store);
    // Made afresh by us (O_EXCL, O_NOFOLLOW): ssh, the shell around it and upload-pack only
    // append to it, so none of them can be led through a link planted under its name.
    let _ = std::fs::remove_file(&log);
    // Only the transports that write to it get one: a new inode is a cost the usual git://
    // or https no-op pass need not pay.
    if matches!(
        settings.repo_url.scheme,
        gix::url::Scheme::Ssh | gix::url::Scheme::File
    ) {
        let _ = crate::files::create_new(&log);
    }
    let deadline = Instant::now() + settings.fetch_timeout;
    // Over git:// every read of our own socket carries the deadline, so the pass needs no
    // second thread; the other transports block inside gix or a child process, so they run on
    // a thread that we stop waiting for at the deadline. A signal also reaches gix's own work
    // after the last read (indexing the pack, resolving deltas) through the signal flag.
    let outcome = if settings.repo_url.scheme == gix::url::Scheme::Git {
        Some(fetch_here(store, settings, deadline, None, history))
    } else {
        fetch_on_thread(store, settings, deadline, history)?
    };
    let result = match outcome {
        Some(Ok(fetched)) => Ok(fetched),
        Some(Err(e)) => {
            let words = transport_words(&log);
            if let Some(coded) = e.downcast_ref::<crate::exit::Coded>() {
                // Ours: it has its exit code and already says what to do. What the transport
                // said after we hung up on a too large pack is only noise.
                let hung_up = coded.to_string().starts_with(TOO_LARGE);
                let e = match words {
                    Some(words) if !hung_up => e.context(words),
                    _ => e,
                };
                Err(e.context(format!("could not fetch {what}")))
            } else {
                // gix's message says what went wrong; the operator also needs what to change.
                // The server's own words, when it said any, are the reason: gix only saw the
                // stream end ("failed to fill whole buffer").
                let ours = crate::pass::one_line(&e);
                let cause = match words {
                    Some(words) if words.starts_with("the server says") => {
                        if stream_ended(&ours) {
                            words
                        } else {
                            format!("{ours} ({words})")
                        }
                    }
                    Some(words) => format!("{words}: {ours}"),
                    None => ours,
                };
                let tofu = tofu_known_hosts(&settings.state_dir);
                let message = match fetch_fix(&cause) {
                    _ if settings.transport.ssh_accept_new && host_key_changed(&cause) => {
                        changed_host_key(&cause, &log, &tofu, &what)
                    }
                    // gix's allocation limit, which we set from --max-file-size.
                    _ if cause.contains("too large to fit in memory") => format!(
                        "could not fetch {what}: it holds an object larger than {} (--max-file-size{}), refused before it was read into memory; remove the file from the branch, or raise --max-file-size",
                        crate::config::show_size(alloc_limit(settings.max_file_size)),
                        if settings.max_file_size < alloc_limit(0) {
                            format!(", at least {} while fetching", crate::config::show_size(alloc_limit(0)))
                        } else {
                            String::new()
                        },
                    ),
                    Some(fix) => format!("could not fetch {what}: {cause}; {fix}"),
                    None => format!("could not fetch {what}: {cause}"),
                };
                Err(fail(Exit::FetchFailed, message))
            }
        }
        None => Err(fail(
            Exit::FetchFailed,
            format!(
                "could not fetch {what}: no answer within {}; check the network or raise --fetch-timeout",
                crate::config::format_duration(settings.fetch_timeout)
            ),
        )),
    };
    result
}

fn fetch_here(
    store: &Path,
    settings: &Settings,
    deadline: Instant,
    interrupt: Option<Arc<AtomicBool>>,
    history: History,
) -> Result<Fetched> {
    let repo = open_store(store, settings)?;
    let url = settings.repo_url.raw.as_str();
    let credentials = settings.transport.credentials(&settings.repo_url);
    fetch_inner(
        &repo,
        url,
        settings.branch.as_deref(),
        deadline,
        Limits {
            interrupt,
            max_repo_size: settings.transport.max_repo_size,
            depth: settings.transport.depth,
            history,
        },
        credentials,
    )
}

/// What bounds a fetch besides its deadline.
struct Limits {
    /// Set by the caller to stop the fetch (a signal reaches it without this).
    interrupt: Option<Arc<AtomicBool>>,
    max_repo_size: u64,
    /// How many commits a new store receives (--depth).
    depth: Option<std::num::NonZeroU32>,
    history: History,
}

/// Run the fetch on its own thread; `None` when it did not finish by the deadline.
fn fetch_on_thread(
    store: &Path,
    settings: &Settings,
    deadline: Instant,
    history: History,
) -> Result<Option<Result<Fetched>>> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let (store, settings, flag) = (store.to_path_buf(), settings.clone(), interrupt.clone());
    std::thread::Builder::new()
        .name("fetch".into())
        .spawn(move || {
            // A gix::Repository is not Send without gix's "parallel" feature: it is opened here.
            let _ = tx.send(fetch_here(&store, &settings, deadline, Some(flag), history));
        })
        .context("could not start the fetch thread")?;
    // In slices, so that a SIGTERM ends the wait as well as the deadline does.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(result) => return Ok(Some(result)),
            Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {
                if let Some(signal) = crate::signals::received() {
                    interrupt.store(true, Ordering::Relaxed);
                    stop_children(&rx);
                    return Ok(Some(Err(fail(
                        Exit::FetchFailed,
                        format!("gitops received {signal} during the fetch"),
                    ))));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Only a panic on the fetch thread drops the sender without a result.
                return Err(crate::exit::fail(
                    crate::exit::Exit::Internal,
                    "the fetch stopped without a result (an internal error: please report it)",
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                interrupt.store(true, Ordering::Relaxed);
                stop_children(&rx);
                return Ok(None);
            }
        }
    }
}

/// How long the fetch thread gets, once its children are killed, to see the end of their
/// output and reap them itself (gix kills and waits for its child when the connection drops).
const REAP_GRACE: Duration = Duration::from_secs(2);

/// End a fetch we stopped waiting for: the thread is blocked on a child (ssh, upload-pack)
/// that would otherwise outlive the pass, reparented to PID 1. Every process below us is the
/// fetch's (the entry point has not started): kill them all, let the thread reap them, and
/// reap whatever it did not.
fn stop_children(done: &mpsc::Receiver<Result<Fetched>>) {
    let children = descendants(std::process::id());
    for &pid in &children {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if children.is_empty() || done.recv_timeout(REAP_GRACE).is_ok() {
        return;
    }
    for &pid in &children {
        // Only our own children can be reaped; for the others this is ECHILD, harmlessly.
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
    }
}

/// Every process below `root`, from the parent pids in /proc (empty without /proc).
fn descendants(root: u32) -> Vec<i32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some(ppid) = parent_in_stat(&stat) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root as i32];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// The parent pid in a /proc/PID/stat line: "pid (comm) state ppid …", where comm may hold
/// spaces and parentheses, so the fields are counted from the last ')'.
fn parent_in_stat(stat: &str) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn fetch_inner(
    repo: &gix::Repository,
    url: &str,
    branch: Option<&str>,
    deadline: Instant,
    limits: Limits,
    credentials: Option<(String, String)>,
) -> Result<Fetched> {
    let spec = match branch {
        Some(b) => format!("+refs/heads/{b}:refs/remotes/origin/{b}"),
        None => "+HEAD:refs/remotes/origin/HEAD".to_string(),
    };
    let remote = repo
        .remote_at(url)?
        .with_refspecs(Some(spec.as_str()), Direction::Fetch)?
        .with_fetch_tags(gix::remote::fetch::Tags::None);
    let credentials_again = credentials.clone();
    let connection = connect(&remote, deadline, credentials)?;
    let prepare = connection.prepare_fetch(gix::progress::Discard, Default::default())?;
    let map = prepare.ref_map();
    let tip = map
        .mappings
        .iter()
        .find_map(|m| m.remote.as_id().map(ToOwned::to_owned));
    let resolved_branch = match branch {
        Some(b) => Some(b.to_string()),
        None => map.remote_refs.iter().find_map(|r| match r {
            gix::protocol::handshake::Ref::Symbolic {
                full_ref_name,
                target,
                ..
            } if full_ref_name == "HEAD" => target
                .to_str()
                .ok()
                .and_then(|t| t.strip_prefix("refs/heads/"))
                .map(str::to_string),
            _ => None,
        }),
    };
    let (Some(tip), Some(resolved_branch)) = (tip, resolved_branch) else {
        drop(prepare);
        return Err(explain_missing(
            &remote,
            branch,
            deadline,
            credentials_again,
        ));
    };
    // The common pass: the remote still points where our tracking ref does. Skipping receive()
    // skips a ref transaction (lock file, reflog, time-zone lookup) that would change nothing.
    let local = map.mappings.iter().find_map(|m| m.local.clone());
    let known = local
        .and_then(|name| repo.try_find_reference(name.as_bstr()).ok().flatten())
        .and_then(|r| r.target().try_id().map(ToOwned::to_owned));
    let shallow = match (limits.history, limits.depth, known) {
        (History::Whole, _, _) => gix::remote::fetch::Shallow::undo(),
        // Only a store that has never fetched the branch: the boundary of one that has moves
        // only as new commits arrive, or goes when the whole history is asked for.
        (History::AsConfigured, Some(depth), None) => {
            gix::remote::fetch::Shallow::DepthAtRemote(depth)
        }
        _ => gix::remote::fetch::Shallow::NoChange,
    };
    let prepare = prepare.with_shallow(shallow);
    if known != Some(tip) || limits.history == History::Whole {
        let budget = limits
            .max_repo_size
            .saturating_sub(super::repo_size::packs_size(repo.path()));
        let watch = super::repo_size::SizeWatch::new(budget, limits.interrupt);
        let received = prepare.receive(watch.clone(), watch.interrupt());
        if watch.exceeded() {
            // gix removed its temporary pack file on the way out: the store is as it was.
            return Err(fail(
                Exit::FetchFailed,
                format!(
                    "{TOO_LARGE} ({}); raise it if this is expected",
                    crate::config::show_size(limits.max_repo_size)
                ),
            ));
        }
        received?;
    }
    Ok(Fetched {
        tip,
        branch: resolved_branch,
    })
}

/// How the --max-repo-size refusal starts.
const TOO_LARGE: &str = "the repository is larger than --max-repo-size";

/// The branch did not resolve: list the remote's branches (only on this error path) to tell an
/// empty repository from a wrong branch name.
fn explain_missing(
    remote: &gix::Remote<'_>,
    branch: Option<&str>,
    deadline: Instant,
    credentials: Option<(String, String)>,
) -> anyhow::Error {
    let listing = connect(remote, deadline, credentials).and_then(|c| {
        let options = gix::remote::ref_map::Options {
            prefix_from_spec_as_filter_on_remote: false,
            ..Default::default()
        };
        Ok(c.ref_map(gix::progress::Discard, options)?)
    });
    let branches: Vec<String> = match listing {
        Ok((map, _)) => map
            .remote_refs
            .iter()
            .filter_map(|r| {
                let (name, _, _) = r.unpack();
                name.to_str()
                    .ok()?
                    .strip_prefix("refs/heads/")
                    .map(str::to_string)
            })
            .collect(),
        Err(e) => return e.context("could not list the remote's branches"),
    };
    match (branch, branches.is_empty()) {
        (_, true) => fail(
            Exit::FetchFailed,
            "the repository is empty: push a first commit with an entry point",
        ),
        (Some(b), false) => fail(
            Exit::FetchFailed,
            format!(
                "the remote has no branch {b:?} (it has: {}): push it or fix --branch",
                branches
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (None, false) => fail(
            Exit::FetchFailed,
            "the remote's HEAD names no existing branch: set --branch",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_pid_is_read_after_the_command_name() {
        let table = [
            ("123 (ssh) S 45 123 45 0 -1", Some(45)),
            ("9 (a) b (c) R 7 9 9", Some(7)),
            ("9 (x y) S 1 9", Some(1)),
            ("garbage", None),
        ];
        for (stat, ppid) in table {
            assert_eq!(parent_in_stat(stat), ppid, "{stat}");
        }
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(descendants(std::process::id()).contains(&(child.id() as i32)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
