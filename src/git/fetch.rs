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

use super::store::{alloc_limit, clear_stale_locks, open_store, remove_pack_leftovers, ssh_log};

/// The remote tip of the followed branch after a fetch.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub tip: ObjectId,
    pub branch: String,
}

/// Fetch only the followed branch (the remote's HEAD branch when none is configured), bounded
/// by `--fetch-timeout`. Every failure here exits 3.
pub fn fetch(store: &Path, settings: &Settings) -> Result<Fetched> {
    let shown = &settings.repo_url.redacted;
    let what = match &settings.branch {
        Some(b) => format!("branch {b} of {shown}"),
        None => format!("the default branch of {shown}"),
    };
    clear_stale_locks(store);
    remove_pack_leftovers(store);
    let log = ssh_log(store);
    let _ = std::fs::remove_file(&log);
    let deadline = Instant::now() + settings.fetch_timeout;
    // Over git:// every read of our own socket carries the deadline, so the pass needs no
    // second thread; the other transports block inside gix or a child process, so they run on
    // a thread that we stop waiting for at the deadline.
    let outcome = if settings.repo_url.scheme == gix::url::Scheme::Git {
        Some(fetch_here(
            store,
            settings,
            deadline,
            &AtomicBool::new(false),
        ))
    } else {
        fetch_on_thread(store, settings, deadline)?
    };
    let result = match outcome {
        Some(Ok(fetched)) => Ok(fetched),
        Some(Err(e)) => {
            let e = match last_ssh_words(&log) {
                Some(words) if words.starts_with("ssh:") => e.context(words),
                Some(words) => e.context(format!("ssh: {words}")),
                None => e,
            };
            if e.downcast_ref::<crate::exit::Coded>().is_some() {
                // Ours: it has its exit code and already says what to do.
                Err(e.context(format!("could not fetch {what}")))
            } else {
                // gix's message says what went wrong; the operator also needs what to change.
                let cause = format!("{e:#}");
                let message = match fetch_fix(&cause) {
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
                "could not fetch {what}: no answer within {}s; check the network or raise --fetch-timeout",
                settings.fetch_timeout.as_secs()
            ),
        )),
    };
    result.map_err(|e| scrub(e, &settings.repo_url.secrets()))
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
        if has(&["Host key verification failed", "REMOTE HOST IDENTIFICATION"]) {
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
            "valid git directory",
            "No such file",
        ]) {
            "check the repository path in --repo-url"
        } else {
            "check --repo-url and that this machine may read the repository"
        },
    )
}

/// The last line of defence for credentials: an error that mentions one is rewritten with
/// the credential masked (keeping its exit code). The URL gix sees carries none, but a server
/// may echo what it was sent.
fn scrub(e: anyhow::Error, secrets: &[String]) -> anyhow::Error {
    let text = format!("{e:#}");
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return e;
    }
    let masked = secrets
        .iter()
        .fold(text, |t, s| t.replace(s.as_str(), "***"));
    fail(crate::exit::code_of(&e), masked)
}

fn fetch_here(
    store: &Path,
    settings: &Settings,
    deadline: Instant,
    interrupt: &AtomicBool,
) -> Result<Fetched> {
    let repo = open_store(store, settings)?;
    let url = settings.repo_url.raw.as_str();
    let credentials = settings.repo_url.credentials.clone();
    fetch_inner(
        &repo,
        url,
        settings.branch.as_deref(),
        deadline,
        interrupt,
        credentials,
    )
}

/// Run the fetch on its own thread; `None` when it did not finish by the deadline.
fn fetch_on_thread(
    store: &Path,
    settings: &Settings,
    deadline: Instant,
) -> Result<Option<Result<Fetched>>> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let (store, settings, flag) = (store.to_path_buf(), settings.clone(), interrupt.clone());
    std::thread::Builder::new()
        .name("fetch".into())
        .spawn(move || {
            // A gix::Repository is not Send without gix's "parallel" feature: it is opened here.
            let _ = tx.send(fetch_here(&store, &settings, deadline, &flag));
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

/// The last two lines ssh logged, which carry the reason ("Host key verification failed.",
/// "Permission denied (publickey)."), without the banner around them.
fn last_ssh_words(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('@'))
        .collect();
    let tail = &lines[lines.len().saturating_sub(2)..];
    (!tail.is_empty()).then(|| tail.join(" "))
}

fn fetch_inner(
    repo: &gix::Repository,
    url: &str,
    branch: Option<&str>,
    deadline: Instant,
    interrupt: &AtomicBool,
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
    if known != Some(tip) {
        prepare.receive(gix::progress::Discard, interrupt)?;
    }
    Ok(Fetched {
        tip,
        branch: resolved_branch,
    })
}

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
    // Credentials come from the URL or nowhere: no helper, no prompt.
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
                "the server asks for credentials and the URL carries none",
            ))),
        },
        _ => Ok(None),
    }))
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
    fn scrub_masks_credentials_and_keeps_the_exit_code() {
        let e = fail(
            Exit::FetchFailed,
            "Credentials provided for \"https://deploy:t0ken@h/r\" were not accepted",
        );
        let secrets = vec!["deploy".to_string(), "t0ken".to_string()];
        let scrubbed = scrub(e, &secrets);
        assert_eq!(crate::exit::code_of(&scrubbed), Exit::FetchFailed);
        let text = format!("{scrubbed:#}");
        assert!(
            !text.contains("t0ken") && !text.contains("deploy"),
            "{text}"
        );
        let clean = scrub(anyhow!("nothing secret"), &secrets);
        assert_eq!(format!("{clean:#}"), "nothing secret");
    }
}
