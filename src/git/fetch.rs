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

/// The refusal of a server whose key is not the one trusted on first use: which key it offers
/// now, and the command that forgets the old one.
fn changed_host_key(cause: &str, log: &Path, file: &Path, what: &str) -> String {
    let host = cause
        .split("Host key for ")
        .nth(1)
        .and_then(|rest| rest.split(" has changed").next())
        .unwrap_or("HOST");
    let said = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = said.lines().map(str::trim).collect();
    // "The fingerprint for the ED25519 key sent by the remote host is" / "SHA256:…."
    let offered = lines
        .iter()
        .position(|l| l.starts_with("The fingerprint for the "))
        .and_then(|at| {
            let kind = lines[at]
                .strip_prefix("The fingerprint for the ")?
                .split(' ')
                .next()?;
            let print = lines.get(at + 1)?.trim_end_matches('.');
            Some(format!("{kind} key {print}"))
        })
        .unwrap_or_else(|| "another key".to_string());
    let file = file.display();
    format!(
        "could not fetch {what}: the host key of {host} has changed: the server now presents {offered}, not the key recorded on first use in {file}; if that is its real new key (check the fingerprint out of band), run ssh-keygen -R '{host}' -f {file} and the next pass records it, otherwise someone may be intercepting the connection"
    )
}

/// ssh's words for a server whose key differs from the one known_hosts has for it.
fn host_key_changed(cause: &str) -> bool {
    cause.contains("has changed and you have requested strict checking")
        || cause.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
}

/// The known_hosts of --ssh-accept-new is created by us (0600, never through a link) before ssh
/// appends to it, and refused when it is not ours alone: a line someone else wrote there is a
/// server key gitops would trust.
fn prepare_tofu_file(file: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let shown = file.display();
    match std::fs::symlink_metadata(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::files::create_new(file).map_err(|e| {
                fail(
                    Exit::Usage,
                    format!("could not create {shown} for --ssh-accept-new ({e}): check that the state directory is writable"),
                )
            })?;
            Ok(())
        }
        Err(e) => Err(fail(
            Exit::Usage,
            format!("cannot inspect {shown} ({e}): check the state directory"),
        )),
        Ok(meta) => {
            let me = nix::unistd::geteuid().as_raw();
            let mode = meta.mode() & 0o7777;
            if !meta.is_file() {
                Err(fail(
                    Exit::Usage,
                    format!("{shown} is not a regular file: remove it, and the next pass records the server's host key again"),
                ))
            } else if meta.uid() != me || mode & 0o022 != 0 {
                Err(fail(
                    Exit::Usage,
                    format!(
                        "{shown} belongs to uid {} with mode {mode:04o}, so others may have added host keys to it: check its lines, then chown it to uid {me} and chmod 600 it",
                        meta.uid()
                    ),
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// What to change, judged from the words of a failed gix fetch; `None` for the words our own
/// socket puts inside gix's errors, which already say it (a deadline names its option) or
/// need no change (a signal stopped us).
fn fetch_fix(cause: &str) -> Option<&'static str> {
    let has = |words: &[&str]| words.iter().any(|w| cause.contains(w));
    if has(&["during the fetch", "--fetch-timeout"]) {
        return None;
    }
    Some(
        if has(&[
            "No space left on device",
            "os error 28",
            "Disk quota exceeded",
        ]) {
            // Our side, whatever the URL: a pack that does not fit in the state directory.
            "the disk holding the state directory (--state-dir) is full: free space on it"
        } else if has(&["dubious ownership"]) {
            "the repository belongs to another user, and git serves only its owner's repositories: chown it to the user gitops runs as"
        } else if has(&["Host key verification failed", "REMOTE HOST IDENTIFICATION"]) {
            "pin the server's host key in --known-hosts (ssh-keyscan it, then check its fingerprint out of band)"
        } else if has(&["repository not exported", "no such repository"]) {
            // git daemon's answer for a path it does not serve, whatever the reason.
            "check the repository path in --repo-url"
        } else if has(&[
            "Connection refused",
            "could not connect",
            "could not resolve",
            "Name or service not known",
            "No route to host",
            "Network is unreachable",
            "timed out",
            "Connection reset",
        ]) {
            "check the host and port in --repo-url and that the Git server is up and reachable from here"
        } else if has(&[
            "Permission denied",
            "HTTP status 401",
            "HTTP status 403",
            "uthentication",
            "access denied",
            "Access denied",
        ]) {
            "check the deploy key (--ssh-key) or the URL's credentials, and that the server grants this machine read access"
        } else if has(&[
            "HTTP status 404",
            "not found",
            "Not Found",
            "does not exist",
            "not a git repository",
            "does not appear to be a git repository",
            "valid git directory",
            "No such file",
        ]) {
            "check the repository path in --repo-url"
        } else {
            "check --repo-url and that this machine may read the repository"
        },
    )
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

/// A socket whose reads fail once the deadline has passed, however the server trickles.
struct DeadlineStream {
    stream: TcpStream,
    deadline: Instant,
}

impl std::io::Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let timed_out = || {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer within --fetch-timeout; check the network or raise it",
            )
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        if let Some(signal) = crate::signals::received() {
            // Not ErrorKind::Interrupted: readers retry that one.
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                format!("gitops received {signal} during the fetch"),
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        match self.stream.read(buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(timed_out())
            }
            other => other,
        }
    }
}

/// Whether gix's error only says that the other side stopped talking, which the server's own
/// words explain better; any other error (our disk full, say) stays the cause.
fn stream_ended(cause: &str) -> bool {
    [
        "fill whole buffer",
        "nexpected end of file",
        "UnexpectedEof",
        "Broken pipe",
        "hung up",
    ]
    .iter()
    .any(|w| cause.contains(w))
}

/// What the other side said, from the transport log (ssh's `-E` messages, the stderr of ssh and
/// of a local upload-pack). The server's `fatal:`/`error:` lines win, as
/// "the server says: …"; otherwise ssh's last two lines ("Host key verification failed.",
/// "Permission denied (publickey)."), without the banner around them.
fn transport_words(log: &Path) -> Option<String> {
    let bytes = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('@'))
        .collect();
    let server: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("fatal:") || l.starts_with("error:") || l.starts_with("ERROR:"))
        .collect();
    if !server.is_empty() {
        let mut said: Vec<&str> = Vec::new();
        for line in server {
            if !said.contains(&line) {
                said.push(line);
            }
        }
        return Some(format!("the server says: {}", said.join(" ")));
    }
    let tail = &lines[lines.len().saturating_sub(2)..];
    if tail.is_empty() {
        return None;
    }
    let words = tail.join(" ");
    Some(if words.starts_with("ssh:") {
        words
    } else {
        format!("ssh: {words}")
    })
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

/// git:// gets a connection we build ourselves: gix writes each pkt-line as its own small write
/// and leaves Nagle on, which stalls every v2 request ~40 ms behind the server's delayed ACK.
/// TCP_NODELAY plus one buffered write per request removes the stall. Other schemes use gix's own.
fn connect<'a, 'repo>(
    remote: &'a gix::Remote<'repo>,
    deadline: Instant,
    credentials: Option<(String, String)>,
) -> Result<gix::remote::Connection<'a, 'static, 'repo, Box<dyn Transport + Send>>> {
    let (url, version) = remote.sanitized_url_and_version(Direction::Fetch)?;
    let connection = if url.scheme == gix::url::Scheme::Git {
        let host = url
            .host()
            .ok_or_else(|| anyhow!("the git:// URL names no host"))?;
        let port = url.port.unwrap_or(9418);
        let addresses: Vec<_> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .with_context(|| format!("could not resolve {host}"))?
            .collect();
        // Every address in turn (a dead IPv6 route must not hide a working IPv4 one), all
        // within the one deadline.
        let mut last_error = None;
        let mut connected = None;
        for address in &addresses {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(address, left) {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let stream = match (connected, last_error) {
            (Some(stream), _) => stream,
            (None, Some(e)) => {
                return Err(e).with_context(|| format!("could not connect to {host}:{port}"))
            }
            (None, None) => return Err(anyhow!("could not connect to {host}:{port} in time")),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
        let write = BufWriter::new(stream.try_clone()?);
        let read = DeadlineStream { stream, deadline };
        let transport = gix::protocol::transport::client::git::blocking_io::Connection::new(
            read,
            write,
            version,
            url.path.clone(),
            Some((host.to_string(), url.port)),
            gix::protocol::transport::client::git::ConnectMode::Daemon,
            false,
        );
        remote.to_connection_with_transport(Box::new(transport) as Box<dyn Transport + Send>)
    } else if url.scheme == gix::url::Scheme::File {
        let log = super::store::ssh_log(remote.repo().path());
        let transport = upload_pack(&url, version, &log)?;
        remote.to_connection_with_transport(Box::new(transport) as Box<dyn Transport + Send>)
    } else {
        if matches!(url.scheme, gix::url::Scheme::Http | gix::url::Scheme::Https) {
            // reqwest is built without a crypto provider of its own (Cargo.toml) and builds its
            // TLS config for plain http too, panicking without one: ring, set here, only for
            // the passes that go through reqwest.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        remote.connect(Direction::Fetch)?
    };
    let (user, password) = match credentials {
        Some((user, password)) => (Some(user), Some(password)),
        None => (None, None),
    };
    // Credentials come from the token file, the URL or nowhere: no helper, no prompt.
    Ok(connection.with_credentials(move |action| match action {
        gix::credentials::helper::Action::Get(ctx) => match (&user, &password) {
            (Some(username), Some(password)) => Ok(Some(gix::credentials::protocol::Outcome {
                identity: gix::sec::identity::Account {
                    username: username.clone(),
                    password: password.clone(),
                    oauth_refresh_token: None,
                },
                next: ctx.into(),
            })),
            _ => Err(gix::Error::from_error(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the server asks for credentials and none are configured: give a token with --http-token-file",
            ))),
        },
        _ => Ok(None),
    }))
}

/// What git's own file transport takes out of upload-pack's environment: a variable meant for
/// the caller's repository must not point upload-pack at another one.
const GIT_ENV_TO_REMOVE: &[&str] = &[
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_COMMON_DIR",
    "GIT_CONFIG_COUNT",
];

/// file:// gets an upload-pack we start ourselves: gix's own sends upload-pack's stderr to
/// /dev/null, which loses git's reason ("fatal: '…' does not appear to be a git repository",
/// "detected dubious ownership") and leaves only "failed to fill whole buffer". Here stderr goes
/// to the transport log, where `transport_words` finds it.
fn upload_pack(
    url: &gix::Url,
    version: gix::protocol::transport::Protocol,
    log: &Path,
) -> Result<
    gix::protocol::transport::client::git::blocking_io::Connection<
        UploadPack,
        std::process::ChildStdin,
    >,
> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::process::{Command, Stdio};
    let path = std::ffi::OsStr::from_bytes(url.path.as_slice());
    // Created here on a first pass (the store did not exist when the pass made it), and never
    // through a link.
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(log)
        .with_context(|| format!("could not create {}", log.display()))?;
    let spawn = |program: &str, subcommand: Option<&str>| {
        let mut command = Command::new(program);
        command
            .args(subcommand)
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.try_clone()?);
        for var in GIT_ENV_TO_REMOVE {
            command.env_remove(var);
        }
        if version != gix::protocol::transport::Protocol::V1 {
            command.env("GIT_PROTOCOL", format!("version={}", version as usize));
        }
        command.spawn()
    };
    // git-upload-pack is on PATH where git is installed the usual way; `git upload-pack`
    // covers the installs that keep it in git's exec-path only.
    let mut child = match spawn("git-upload-pack", None) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => spawn("git", Some("upload-pack")),
        other => other,
    }
    .map_err(|e| {
        fail(
            Exit::FetchFailed,
            format!("could not start git-upload-pack for a file:// URL ({e}): install git"),
        )
    })?;
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(anyhow!("git-upload-pack started without its pipes"));
    };
    Ok(
        gix::protocol::transport::client::git::blocking_io::Connection::new(
            UploadPack { stdout, child },
            stdin,
            version,
            url.path.clone(),
            None::<(String, Option<u16>)>,
            gix::protocol::transport::client::git::ConnectMode::Process,
            false,
        ),
    )
}

/// upload-pack's output, and the process itself: it is stopped and reaped with the connection,
/// so no pass leaves one behind.
struct UploadPack {
    stdout: std::process::ChildStdout,
    child: std::process::Child,
}

impl std::io::Read for UploadPack {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stdout.read(buf)
    }
}

impl Drop for UploadPack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fetch_failure_names_a_fix() {
        let table = [
            (
                "could not connect to 127.0.0.1:1: Connection refused (os error 111)",
                "host and port",
            ),
            (
                "could not resolve nonexistent.invalid: Name or service not known",
                "host and port",
            ),
            (
                "ssh: git@127.0.0.1: Permission denied (publickey).",
                "deploy key",
            ),
            ("Received HTTP status 401", "deploy key"),
            (
                "could not connect to 127.0.0.1:8403: Connection refused",
                "host and port",
            ),
            ("ssh: Host key verification failed.", "--known-hosts"),
            ("Received HTTP status 404", "repository path"),
            (
                "access denied or repository not exported: /x.git",
                "repository path",
            ),
            (
                "An IO error occurred: no such repository: /x.git",
                "repository path",
            ),
            (
                "\"/x\" is a valid git directory: No such file or directory",
                "repository path",
            ),
            ("something gix never said before", "--repo-url"),
            (
                "Failed to write the received pack: No space left on device (os error 28)",
                "disk holding the state directory",
            ),
            (
                "the server says: fatal: detected dubious ownership in repository at '/r'",
                "chown",
            ),
            (
                "the server says: fatal: '/x' does not appear to be a git repository",
                "repository path",
            ),
        ];
        for (cause, fix) in table {
            let said = fetch_fix(cause).unwrap_or_default();
            assert!(said.contains(fix), "{cause} → {said}");
        }
        for says_it_already in [
            "gitops received SIGTERM during the fetch",
            "no answer within --fetch-timeout; check the network or raise it",
        ] {
            assert_eq!(fetch_fix(says_it_already), None, "{says_it_already}");
        }
    }

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

    #[test]
    fn the_servers_words_come_before_sshs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("gitops-ssh.log");
        assert_eq!(transport_words(&log), None);
        std::fs::write(
            &log,
            "Warning: something\nfatal: '/x' does not appear to be a git repository\n",
        )
        .unwrap();
        assert_eq!(
            transport_words(&log).as_deref(),
            Some("the server says: fatal: '/x' does not appear to be a git repository")
        );
        std::fs::write(&log, "@@@@@@\ngit@h: Permission denied (publickey).\n").unwrap();
        assert_eq!(
            transport_words(&log).as_deref(),
            Some("ssh: git@h: Permission denied (publickey).")
        );
        std::fs::write(&log, b"fatal: caf\xE9\n").unwrap();
        assert_eq!(
            transport_words(&log).as_deref(),
            Some("the server says: fatal: caf\u{FFFD}")
        );
        assert!(stream_ended(
            "An IO error occurred when talking to the server: failed to fill whole buffer"
        ));
        assert!(!stream_ended("No space left on device (os error 28)"));
    }
}
